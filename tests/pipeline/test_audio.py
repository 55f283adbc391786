"""The audio front end: every format decodes, bad files raise typed errors naming the file."""

from __future__ import annotations

import io
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


def _by_soundfile(path, clip_seconds, excerpt="centre"):
    return audio._decode_excerpt(path, audio._inspect(path)[0], clip_seconds, excerpt)


def _by_pyav(path, clip_seconds, excerpt="centre", **kw):
    facts, _ = audio._inspect(path)
    return audio._decode_pyav(path, clip_seconds, excerpt, facts=facts,
                              length=audio._known_length(path, facts), why="test", **kw)


def test_pyav_fallback_decodes_the_same_centre_excerpt(tmp_path):
    path = _ramp_file(tmp_path / "long.flac", 60.0, 8000, subtype="PCM_24")
    by_sf = _by_soundfile(path, 10.0)
    by_av = _by_pyav(path, 10.0)
    assert by_sf.decoder == "soundfile" and by_av.decoder == "pyav"
    assert by_av.total_frames == by_sf.total_frames == 60 * 8000
    np.testing.assert_allclose(by_av.mono, by_sf.mono, atol=1e-6)
    # Decoding from the start and skipping (streams without timestamps) agrees too.
    unseeked = _by_pyav(path, 10.0, seek=False)
    np.testing.assert_array_equal(unseeked.mono, by_av.mono)


def test_a_failed_pyav_seek_decodes_from_the_start(tmp_path, monkeypatch):
    """ffmpeg answers a seek in some FLAC files with EPERM (av.error.PermissionError)."""
    import av

    path = _ramp_file(tmp_path / "long.flac", 60.0, 8000, subtype="PCM_24")
    expected = _by_pyav(path, 10.0).mono

    def refuse(container, offset, stream):
        raise av.error.PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(audio, "_seek", refuse)
    np.testing.assert_array_equal(_by_pyav(path, 10.0).mono, expected)


def test_lengths_cross_backends_in_seconds(tmp_path, monkeypatch):
    """libsndfile decodes an Opus file from an 8 kHz source at 8 kHz, ffmpeg at 48 kHz: the
    fallback must not take libsndfile's 240,000 frames as 48 kHz frames (5 s of 30 s)."""
    path = write_tone(tmp_path / "from8k.opus", 30.0, 8000, subtype="OPUS")
    real_read = soundfile.SoundFile.read

    def short_read(self, frames=-1, **kw):
        return real_read(self, frames // 2, **kw)

    monkeypatch.setattr(soundfile.SoundFile, "read", short_read)
    clip = load_clip(path, clip_seconds=30.0)
    assert clip.decoder == "pyav" and clip.source_sample_rate == 48000
    assert clip.source_seconds == pytest.approx(30.0, abs=0.03)
    assert clip.valid_samples == pytest.approx(30 * SR, abs=0.03 * SR)


@pytest.mark.parametrize("where", ["open", "read", "seek"])
def test_any_libsndfile_exception_falls_back_to_pyav(tmp_path, monkeypatch, where):
    path = write_tone(tmp_path / "t.flac", 40.0, 8000)

    def boom(*args, **kw):
        raise ValueError("something libsndfile-internal")

    target = {"open": "__init__", "read": "read", "seek": "seek"}[where]
    monkeypatch.setattr(soundfile.SoundFile, target, boom)
    clip = load_clip(path, clip_seconds=10.0)
    assert clip.decoder == "pyav" and clip.valid_samples == 10 * SR


def test_any_pyav_exception_while_decoding_is_classified(tmp_path, monkeypatch):
    """A backend error from every frame leaves nothing decoded: an AudioError, not a crash."""
    path = tmp_path / "t.wma"
    from tests.odd_audio import _encode_av, _tone

    _encode_av(path, _tone(4.0, 44100), 44100, "wmav2", "asf", bit_rate=128_000)

    def boom(self, frame):
        raise ValueError("Conversion from 'xyz' format to numpy array is not supported.")

    monkeypatch.setattr(audio._FrameConverter, "__call__", boom)
    with pytest.raises(AudioDecodeError) as info:
        _load(path)
    assert info.value.category == "not audio"


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
    assert info.value.category == "too short"
    assert info.value.reason.startswith("2.00 s of audio, at least 3 s")
    assert str(info.value) == f"{path}: too short: {info.value.reason}"


# --------------------------------------------------------------------------
# MP3 length: the Xing header against the file (the libsndfile trap)
# --------------------------------------------------------------------------
def test_mp3_cut_short_under_its_xing_header_is_truncated(tmp_path):
    """Bytes cut off an MP3 keep its Xing header, which now declares more frames and
    bytes than the file holds: libsndfile believes it, the file is truncated."""
    full = write_tone(tmp_path / "full.mp3", 10.0, 44100, channels=2)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    with soundfile.SoundFile(str(cut)) as sf:
        claimed = sf.frames / sf.samplerate
    assert claimed == pytest.approx(10.0, abs=0.1)  # the trap is real here
    error = _raises(AudioDecodeError, cut, "truncated", category="truncated")
    assert "declares 10.00 s" in error.reason
    decoded = float(error.reason.split("only ")[1].split(" s")[0])
    assert 4.5 < decoded < 5.5


def _remux_clip(tmp_path, seconds=20.0, start=7.0, length=6.0):
    from tests.odd_audio import _encode_av, _remux_mp3, _tone

    full = tmp_path / "full.mp3"
    _encode_av(full, _tone(seconds, 44100, channels=2), 44100, "libmp3lame", "mp3", bit_rate=192_000)
    clip = tmp_path / "clip.mp3"
    _remux_mp3(full, clip, start, length)
    return clip


def test_fma_style_clip_decodes_without_a_packet_scan(tmp_path, monkeypatch):
    """FMA cut its clips with ffmpeg -acodec copy: the muxer writes a fresh Info header
    whose byte count matches the file, so the header is trusted and nothing is scanned."""
    clip_path = _remux_clip(tmp_path)
    scans = []
    monkeypatch.setattr(audio, "_scan_seconds", lambda path: scans.append(path))
    clip = load_clip(clip_path, clip_seconds=30.0)
    assert scans == []
    assert clip.decoder == "soundfile"
    assert abs(clip.valid_samples / SR - 6.0) < 0.06
    assert dominant_frequency(clip.samples[SR:4 * SR], SR) == pytest.approx(440.0, rel=2e-3)


def test_mp3_without_a_header_is_measured_by_the_packet_scan(tmp_path):
    from tests.odd_audio import _encode_av, _tone

    path = tmp_path / "plain.mp3"
    _encode_av(path, _tone(8.0, 44100, channels=2), 44100, "libmp3lame", "mp3",
               options={"write_xing": "0"})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    clip = load_clip(path, clip_seconds=30.0)
    assert abs(clip.valid_samples / SR - 4.0) < 0.1


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
def _raises(kind, path, match, *, category=None):
    with pytest.raises(kind, match=match) as info:
        _load(path)
    error = info.value
    assert str(path) in str(error)
    assert error.path == str(path)
    assert str(error) == f"{path}: {error.category}: {error.reason}"
    assert not error.reason.startswith(error.category)
    if category is not None:
        assert error.category == category
    # libsndfile calls any file it cannot parse "not a regular file (possibly a pipe?)"
    assert "regular file" not in error.reason and "libsndfile:" not in error.reason
    return error


def test_nan_samples(tmp_path):
    y = tone(4.0, SR)
    y[SR] = np.nan
    path = write_signal(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    _raises(InvalidSamplesError, path, "NaN", category="corrupt samples")


def test_inf_samples(tmp_path):
    y = tone(4.0, SR)
    y[100] = np.inf
    path = write_signal(tmp_path / "inf.wav", y, SR, subtype="DOUBLE")
    _raises(InvalidSamplesError, path, "Inf")


@pytest.mark.parametrize("name", ["empty.wav", "empty.mp3", "empty.au"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _raises(AudioDecodeError, path, "0 bytes", category="empty")


def test_missing_file(tmp_path):
    _raises(AudioDecodeError, tmp_path / "nope.wav", "cannot be read", category="unreadable")


@pytest.mark.parametrize("ext", ["wav", "au"])
def test_header_only_file(tmp_path, ext):
    path = write_signal(tmp_path / f"header.{ext}", np.zeros(0, np.float32), SR)
    assert path.stat().st_size > 0
    _raises(AudioDecodeError, path, "only a header", category="empty")


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
    _raises(AudioDecodeError, path, "declares 4.00 s", category="empty")


def test_header_only_file_claiming_data(tmp_path):
    path = write_tone(tmp_path / "claims.wav", 4.0, SR)
    path.write_bytes(path.read_bytes()[:44])
    _raises(AudioDecodeError, path, "only a header", category="empty")


@pytest.mark.parametrize("ext", ["wav", "au", "flac"])
def test_truncated_file(tmp_path, ext):
    path = write_tone(tmp_path / f"trunc.{ext}", 6.0, SR, subtype="PCM_24" if ext == "flac" else None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    error = _raises(AudioDecodeError, path, "declares 6.00 s", category="truncated")
    assert "only 3." in error.reason or "only 2.9" in error.reason


def test_slightly_miscounted_wav_header_is_not_truncation(tmp_path):
    path = write_tone(tmp_path / "pad.wav", 4.0, SR)
    path.write_bytes(path.read_bytes()[:-4])  # two frames short of the declared size
    clip = _load(path)
    assert abs(clip.valid_samples - 4 * SR) <= 2


def test_mp3_with_only_a_tag_and_no_audio(tmp_path):
    """Like FMA's empty tracks: an ID3v2 tag and nothing after it."""
    path = tmp_path / "099134.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x02\x00" + b"\x00" * 256)
    _raises(AudioDecodeError, path, "ID3v2 tag", category="empty")


@pytest.mark.parametrize("name", ["text.mp3", "text.wav", "text.flac", "text.ogg", "text.au"])
def test_text_file_with_audio_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not audio, just text renamed to look like it\n" * 40)
    _raises(AudioDecodeError, path, "text", category="not audio")


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


# --------------------------------------------------------------------------
# In memory: bytes and file objects (audio fetched from object storage)
# --------------------------------------------------------------------------
class _Stream(io.RawIOBase):
    """A read-only, non-seekable binary stream (a socket, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("ext, subtype, rate", [
    ("wav", "PCM_16", 22050), ("au", "PCM_16", 22050), ("flac", "PCM_24", 44100),
    ("ogg", "VORBIS", 44100), ("opus", "OPUS", 48000), ("mp3", "MPEG_LAYER_III", 44100),
])
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "fileobj", "stream"])
def test_in_memory_audio_decodes_exactly_as_the_file(tmp_path, ext, subtype, rate, kind):
    path = write_tone(tmp_path / f"tone.{ext}", 8.0, rate, subtype=subtype, freq=440.0)
    data = path.read_bytes()
    source = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
              "fileobj": io.BytesIO(data), "stream": _Stream(data)}[kind]
    want = _load(path, clip_seconds=5.0)  # an excerpt: every decoder seeks
    got = _load(source, clip_seconds=5.0, name=f"genres/x/tone.{ext}")
    assert (got.valid_samples, got.source_sample_rate, got.decoder) == (
        want.valid_samples, want.source_sample_rate, want.decoder)
    assert got.source_seconds == want.source_seconds
    np.testing.assert_array_equal(got.samples, want.samples)
    if kind == "fileobj":
        assert not source.closed  # the caller's object is left open


def test_in_memory_pyav_fallback_decodes_exactly_as_the_file(tmp_path, monkeypatch):
    path = write_tone(tmp_path / "tone.mp3", 8.0, 44100, freq=440.0)
    want = _load(path, clip_seconds=5.0)

    def refuse(*args, **kwargs):
        raise soundfile.LibsndfileError(0, "refused by the test")

    monkeypatch.setattr(soundfile, "SoundFile", refuse)
    from_file = _load(path, clip_seconds=5.0)
    from_bytes = _load(path.read_bytes(), clip_seconds=5.0, name="a/tone.mp3")
    assert from_file.decoder == from_bytes.decoder == "pyav"
    np.testing.assert_array_equal(from_bytes.samples, from_file.samples)


def test_in_memory_errors_name_the_given_name(tmp_path):
    with pytest.raises(AudioDecodeError) as info:
        load_clip(b"", name="s3://bucket/genres/blues/blues.00000.au")
    assert str(info.value) == "s3://bucket/genres/blues/blues.00000.au: empty: 0 bytes; re-download the file or exclude it"
    with pytest.raises(AudioDecodeError) as info:
        load_clip(b"hello, world\n" * 100, name="rock/a.wav")
    assert info.value.category == "not audio" and info.value.path == "rock/a.wav"
    with pytest.raises(AudioDecodeError) as info:
        load_clip(b"hello, world\n" * 100)
    assert info.value.path == "<in-memory audio>"
    named = io.BytesIO(b"")
    named.name = "from/a/file.wav"
    with pytest.raises(AudioDecodeError, match="^from/a/file.wav: empty"):
        load_clip(named)


def test_in_memory_source_of_another_type_is_a_config_error():
    with pytest.raises(ConfigError, match="must be a path, bytes or a binary file object"):
        load_clip(12345)


def test_header_facts_from_bytes_and_file_objects(tmp_path):
    from pipeline.dsp import containers

    path = write_tone(tmp_path / "t.wav", 2.0, 22050, subtype="PCM_16")
    data = path.read_bytes()
    cut = data[: len(data) // 2]
    assert containers.probe(data) == containers.probe(path) == containers.probe(io.BytesIO(data))
    facts = containers.probe(cut)
    assert facts.declared_seconds == pytest.approx(2.0) and facts.present_seconds == pytest.approx(1.0, abs=1e-3)
