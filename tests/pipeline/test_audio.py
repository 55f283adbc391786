"""The audio front end: every format decodes, bad files raise typed errors naming the file."""

from __future__ import annotations

import logging
import pickle
import struct
import time

import numpy as np
import pytest
import soundfile

from pipeline.dsp import audio
from pipeline.dsp.audio import load_clip
from pipeline.errors import (AudioDecodeError, AudioError, ConfigError, InvalidSamplesError,
                             PipelineError, TooShortError)
from tests.audio_fixtures import dominant_frequency, tone, write_signal, write_tone

SR = 22050


def _load(path, **kw):
    kw.setdefault("clip_seconds", 6.0)
    return load_clip(path, **kw)


# --------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------
@pytest.mark.parametrize("ext, subtype, rate", [
    ("wav", "PCM_U8", 22050),
    ("wav", "PCM_16", 22050),
    ("wav", "PCM_24", 44100),
    ("wav", "PCM_32", 48000),
    ("wav", "FLOAT", 22050),
    ("wav", "DOUBLE", 16000),
    ("au", "PCM_16", 22050),
    ("flac", "PCM_24", 44100),
    ("ogg", "VORBIS", 44100),
    ("opus", "OPUS", 48000),
    ("mp3", "MPEG_LAYER_III", 44100),
])
def test_each_format_decodes_to_the_tone(tmp_path, ext, subtype, rate):
    path = write_tone(tmp_path / f"tone.{ext}", 4.0, rate, subtype=subtype, freq=440.0)
    clip = _load(path)
    assert clip.samples.dtype == np.float32
    assert clip.samples.shape == (6 * SR,)
    assert clip.source_sample_rate == rate
    # Lossy codecs add priming/padding; the length must still be ~4 s.
    assert abs(clip.valid_samples - 4 * SR) < 0.06 * SR
    assert abs(clip.source_seconds - 4.0) < 0.06
    assert not clip.samples[clip.valid_samples:].any()
    body = clip.samples[SR // 2: 3 * SR]
    assert dominant_frequency(body, SR) == pytest.approx(440.0, rel=2e-3)
    assert np.sqrt(np.mean(body ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_wave_format_extensible(tmp_path):
    path = write_tone(tmp_path / "ext.wav", 4.0, 44100, channels=3, format="WAVEX", subtype="PCM_24")
    with open(path, "rb") as fh:
        head = fh.read(64)
    # fmt chunk's format tag 0xFFFE = WAVE_FORMAT_EXTENSIBLE
    assert struct.unpack("<H", head[20:22])[0] == 0xFFFE
    clip = _load(path)
    assert clip.source_channels == 3
    assert dominant_frequency(clip.samples[SR:3 * SR], SR) == pytest.approx(440.0, rel=2e-3)


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_downmixed_to_the_channel_mean(tmp_path, channels):
    path = write_tone(tmp_path / "multi.wav", 4.0, SR, channels=channels, subtype="FLOAT")
    clip = _load(path)
    expected = tone(4.0, SR, channels=channels).mean(axis=1)
    assert clip.source_channels == channels
    np.testing.assert_allclose(clip.samples[: clip.valid_samples], expected, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampling_gives_the_right_length_and_frequency(tmp_path, rate):
    path = write_tone(tmp_path / f"r{rate}.wav", 5.0, rate, subtype="FLOAT", freq=1000.0)
    clip = _load(path)
    assert clip.valid_samples == 5 * SR
    assert dominant_frequency(clip.samples[SR:4 * SR], SR) == pytest.approx(1000.0, rel=1e-4)


def test_resample_quality_is_passed_to_soxr(tmp_path):
    path = write_tone(tmp_path / "q.wav", 4.0, 44100, subtype="FLOAT", freq=1000.0)
    hq = _load(path, resample_quality="HQ").samples
    lq = _load(path, resample_quality="QQ").samples
    assert not np.array_equal(hq, lq)


# --------------------------------------------------------------------------
# Excerpt, padding, length
# --------------------------------------------------------------------------
def _ramp_file(path, seconds, rate, **kw):
    """A slow ramp from -0.9 to 0.9: every sample value says where it is in the file."""
    n = int(seconds * rate)
    return write_signal(path, np.linspace(-0.9, 0.9, n, dtype=np.float32), rate, **kw)


def _ramp_value(t, seconds):
    return -0.9 + 1.8 * t / seconds


def test_long_file_decodes_only_the_centre_quickly(tmp_path, monkeypatch):
    seconds = 600.0
    path = _ramp_file(tmp_path / "long.wav", seconds, 8000, subtype="PCM_16")
    requested = []
    real_read = soundfile.SoundFile.read

    def spy_read(self, frames=-1, **kw):
        requested.append(frames)
        return real_read(self, frames, **kw)

    monkeypatch.setattr(soundfile.SoundFile, "read", spy_read)
    t0 = time.process_time()  # CPU time: robust to other processes on the machine
    clip = load_clip(path, clip_seconds=30.0)
    elapsed = time.process_time() - t0
    assert clip.valid_samples == 30 * SR
    assert clip.source_seconds == pytest.approx(seconds)
    # The centre: 285 s to 315 s (away from the resampler's edge transient).
    assert clip.samples[SR] == pytest.approx(_ramp_value(286.0, seconds), abs=2e-3)
    assert clip.samples[29 * SR] == pytest.approx(_ramp_value(314.0, seconds), abs=2e-3)
    # 30 s of a 10-minute file: ~10 ms of CPU here; decoding and resampling
    # the whole file would take ~20x as long.
    assert elapsed < 0.5
    # Bounded memory: only the 30 s excerpt was read, never the whole file.
    assert requested == [30 * 8000]


def test_excerpt_start(tmp_path):
    path = _ramp_file(tmp_path / "long.wav", 60.0, 8000, subtype="FLOAT")
    clip = load_clip(path, clip_seconds=10.0, excerpt="start")
    assert clip.samples[SR] == pytest.approx(_ramp_value(1.0, 60.0), abs=2e-3)


def test_pyav_fallback_decodes_the_same_centre_excerpt(tmp_path):
    path = _ramp_file(tmp_path / "long.flac", 60.0, 8000, subtype="PCM_24")
    by_sf = audio._decode_excerpt(path, 10.0, "centre")
    by_av = audio._decode_pyav(path, 10.0, "centre", why="test")
    assert by_sf.decoder == "soundfile" and by_av.decoder == "pyav"
    assert by_av.total_frames == by_sf.total_frames == 60 * 8000
    np.testing.assert_allclose(by_av.mono, by_sf.mono, atol=1e-6)
    # Decoding from the start and skipping (streams without timestamps) agrees too.
    unseeked = audio._decode_pyav(path, 10.0, "centre", why="test", seek=False)
    np.testing.assert_array_equal(unseeked.mono, by_av.mono)


def test_short_clip_is_padded_and_valid_length_recorded(tmp_path):
    path = write_tone(tmp_path / "short.wav", 4.0, SR)
    clip = load_clip(path, clip_seconds=30.0)
    assert clip.samples.shape == (30 * SR,)
    assert clip.valid_samples == 4 * SR
    assert not clip.samples[4 * SR:].any()
    assert np.abs(clip.samples[: 4 * SR]).max() > 0.4


def test_too_short_clip_raises(tmp_path):
    path = write_tone(tmp_path / "tiny.wav", 2.0, SR)
    with pytest.raises(TooShortError, match="too short") as info:
        load_clip(path, clip_seconds=30.0, min_seconds=3.0)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------
# MP3 length cross-check (the libsndfile trap)
# --------------------------------------------------------------------------
def test_cut_mp3_with_stale_header_falls_back_to_pyav(tmp_path, caplog):
    """An MP3 cut without re-encoding keeps the whole track's Xing header:
    libsndfile believes it and stops early. The packet scan disagrees."""
    full = write_tone(tmp_path / "full.mp3", 10.0, 44100, channels=2)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    with soundfile.SoundFile(str(cut)) as sf:
        claimed = sf.frames / sf.samplerate
    assert claimed == pytest.approx(10.0, abs=0.1)  # the trap is real here
    with caplog.at_level(logging.WARNING, logger="pipeline.dsp.audio"):
        clip = load_clip(cut, clip_seconds=10.0)
    assert clip.decoder == "pyav"
    assert "PyAV" in caplog.text
    assert 4.5 < clip.source_seconds < 5.5
    assert abs(clip.valid_samples / SR - clip.source_seconds) < 0.05
    assert dominant_frequency(clip.samples[SR:4 * SR], SR) == pytest.approx(440.0, rel=2e-3)


def test_soundfile_stopping_early_falls_back_to_pyav(tmp_path, monkeypatch, caplog):
    path = write_tone(tmp_path / "t.flac", 5.0, SR)
    real_read = soundfile.SoundFile.read

    def short_read(self, frames=-1, **kw):
        return real_read(self, frames // 2, **kw)

    monkeypatch.setattr(soundfile.SoundFile, "read", short_read)
    with caplog.at_level(logging.WARNING, logger="pipeline.dsp.audio"):
        clip = _load(path)
    assert clip.decoder == "pyav"
    assert clip.valid_samples == 5 * SR
    assert "stopped" in caplog.text


# --------------------------------------------------------------------------
# Bad input: each kind raises its typed error naming the file
# --------------------------------------------------------------------------
def _raises(kind, path, match):
    with pytest.raises(kind, match=match) as info:
        _load(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    return info.value


def test_nan_samples(tmp_path):
    y = tone(4.0, SR)
    y[SR] = np.nan
    path = write_signal(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    _raises(InvalidSamplesError, path, "NaN")


def test_inf_samples(tmp_path):
    y = tone(4.0, SR)
    y[100] = np.inf
    path = write_signal(tmp_path / "inf.wav", y, SR, subtype="DOUBLE")
    _raises(InvalidSamplesError, path, "Inf")


@pytest.mark.parametrize("name", ["empty.wav", "empty.mp3", "empty.au"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _raises(AudioDecodeError, path, "empty")


def test_missing_file(tmp_path):
    _raises(AudioDecodeError, tmp_path / "nope.wav", "cannot be read")


@pytest.mark.parametrize("ext", ["wav", "au"])
def test_header_only_file(tmp_path, ext):
    path = write_signal(tmp_path / f"header.{ext}", np.zeros(0, np.float32), SR)
    assert path.stat().st_size > 0
    _raises(AudioDecodeError, path, "no audio samples")


def _flac_metadata_end(data: bytes) -> int:
    """Offset of the first audio frame: after the metadata block marked last."""
    pos = 4  # b"fLaC"
    while True:
        header = data[pos]
        pos += 4 + int.from_bytes(data[pos + 1:pos + 4], "big")
        if header & 0x80:
            return pos


def test_header_only_flac(tmp_path):
    path = write_tone(tmp_path / "header.flac", 4.0, SR)
    data = path.read_bytes()
    path.write_bytes(data[: _flac_metadata_end(data)])
    _raises(AudioDecodeError, path, "no audio|truncated")


def test_header_only_file_claiming_data(tmp_path):
    path = write_tone(tmp_path / "claims.wav", 4.0, SR)
    path.write_bytes(path.read_bytes()[:44])
    _raises(AudioDecodeError, path, "truncated")


@pytest.mark.parametrize("ext", ["wav", "au", "flac"])
def test_truncated_file(tmp_path, ext):
    path = write_tone(tmp_path / f"trunc.{ext}", 6.0, SR, subtype="PCM_24" if ext == "flac" else None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(AudioDecodeError, path, "truncated")


def test_slightly_miscounted_wav_header_is_not_truncation(tmp_path):
    path = write_tone(tmp_path / "pad.wav", 4.0, SR)
    path.write_bytes(path.read_bytes()[:-4])  # two frames short of the declared size
    clip = _load(path)
    assert abs(clip.valid_samples - 4 * SR) <= 2


def test_mp3_with_only_a_tag_and_no_audio(tmp_path):
    """Like FMA's empty tracks: an ID3v2 tag and nothing after it."""
    path = tmp_path / "099134.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x02\x00" + b"\x00" * 256)
    _raises(AudioDecodeError, path, "not a decodable audio file")


@pytest.mark.parametrize("name", ["text.mp3", "text.wav", "text.flac", "text.ogg", "text.au"])
def test_text_file_with_audio_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not audio, just text renamed to look like it\n" * 40)
    _raises(AudioDecodeError, path, "not a decodable audio file")


def test_bad_arguments_raise_config_errors(tmp_path):
    path = write_tone(tmp_path / "t.wav", 4.0, SR)
    for kw in ({"sample_rate": 0}, {"clip_seconds": -1.0}, {"excerpt": "middle"},
               {"resample_quality": "best"}, {"min_seconds": 60.0}):
        with pytest.raises(ConfigError):
            load_clip(path, **kw)


@pytest.mark.parametrize("error", [
    AudioDecodeError("/data/x.mp3", "empty file"),
    InvalidSamplesError("/data/x.wav", "NaN"),
    TooShortError("/data/x.au", "too short"),
])
def test_audio_errors_survive_pickling(error):
    """They cross Dask process boundaries."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.path, back.reason, str(back)) == (error.path, error.reason, str(error))
    assert isinstance(back, (AudioError, PipelineError, ValueError))


@pytest.mark.parametrize("ext, codec, rate, channels", [
    ("mp3", "libmp3lame", 44100, 2),
    ("opus", "libopus", 48000, 1),
])
def test_files_encoded_by_ffmpeg_decode(tmp_path, ext, codec, rate, channels):
    """Another encoder's container details (ffmpeg's LAME and Ogg muxers)."""
    from tests.audio_fixtures import _write_with_pyav

    path = tmp_path / f"ff.{ext}"
    _write_with_pyav(path, tone(4.0, rate, freq=660.0, channels=channels), rate, codec)
    clip = _load(path)
    assert clip.source_channels == channels
    assert abs(clip.valid_samples - 4 * SR) < 0.06 * SR
    assert dominant_frequency(clip.samples[SR:3 * SR], SR) == pytest.approx(660.0, rel=2e-3)
