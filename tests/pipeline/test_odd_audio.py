"""Odd files from the field (tests/odd_audio.py): each decodes to its true length or fails
with its category, never with another exception; and the header parsers behind that."""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.dsp import containers
from pipeline.dsp.audio import _packet_seconds, load_clip
from pipeline.errors import FAILURE_CATEGORIES, AudioError
from pipeline.sources import fetch_many
from tests.odd_audio import OddFile, make_odd_files, reference_seconds, riff_wave

SR = 22050


@functools.cache
def _odd_set() -> tuple[Path, tuple[OddFile, ...]]:
    """The factory's files, written once per test session (a few seconds)."""
    folder = Path(tempfile.mkdtemp(prefix="odd_audio_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder, tuple(make_odd_files(folder))


def _odd_files() -> list[OddFile]:
    return list(_odd_set()[1])


def _decode_odd(path: Path, source: str, clip_seconds: float):
    """``load_clip`` of ``path`` given as a path, as its bytes (fetched as a build fetches remote
    clips: a file that cannot be read fails there, as "unreadable") or as an open file object."""
    if source == "path":
        return load_clip(path, sample_rate=SR, clip_seconds=clip_seconds, min_seconds=3.0)
    (data,) = fetch_many([str(path)])
    if isinstance(data, AudioError):
        raise data
    if source == "fileobj":
        data = io.BytesIO(data)
    return load_clip(data, sample_rate=SR, clip_seconds=clip_seconds, min_seconds=3.0, name=str(path))


@pytest.mark.parametrize("source", ["path", "bytes", "fileobj"])
@pytest.mark.parametrize("clip_seconds", [30.0, 3.5], ids=["whole", "excerpt"])
@pytest.mark.parametrize("odd", _odd_files(), ids=lambda f: f.name)
def test_odd_file_decodes_to_its_length_or_fails_with_its_category(odd, clip_seconds, source):
    """"excerpt" (3.5 s of the centre) makes every decoder seek; in memory as from a file."""
    folder, _ = _odd_set()
    path = folder / odd.name
    try:
        clip = _decode_odd(path, source, clip_seconds)
    except AudioError as error:
        assert error.category == odd.expect, f"{odd.kind}: {error}"
        assert str(error) == f"{path}: {error.category}: {error.reason}"
        assert not error.reason.startswith(error.category)
        assert "regular file" not in error.reason  # libsndfile's false claim about MP3s
        return
    assert odd.expect == "ok", f"{odd.kind}: decoded {clip.valid_samples / SR:.2f} s, expected {odd.expect}"
    seconds = odd.seconds if odd.seconds is not None else reference_seconds(path)
    ends_early = clip.note.startswith("ends early: ")
    if clip_seconds >= seconds:  # decoded to its end: a cut there is seen (an excerpt may not reach it)
        assert ends_early == odd.ends_early, f"{odd.kind}: note {clip.note!r}"
    else:
        assert odd.ends_early or not clip.note, f"{odd.kind}: note {clip.note!r}"
    want = min(seconds, clip_seconds)
    tolerance = 0.1 if odd.lossy else 2 / SR
    assert abs(clip.valid_samples / SR - want) <= tolerance, odd.kind
    assert clip.samples.shape == (int(round(clip_seconds * SR)),)
    assert np.isfinite(clip.samples).all()
    assert np.abs(clip.samples[: clip.valid_samples]).max() > 0.05  # real signal, not silence


def test_the_factory_covers_every_bad_audio_category():
    expects = {f.expect for f in _odd_files()}
    assert {"ok", "empty", "not audio", "truncated", "corrupt samples", "unreadable",
            "too short"} <= expects
    assert expects <= set(FAILURE_CATEGORIES) | {"ok"}
    names = [f.name for f in _odd_files()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("odd", [f for f in _odd_files() if f.expect == "ok" and f.seconds is not None
                                 and "damaged" not in f.name], ids=lambda f: f.name)
def test_reference_seconds_agrees_with_the_factory(odd):
    folder, _ = _odd_set()
    assert reference_seconds(folder / odd.name) == pytest.approx(odd.seconds, abs=0.1 if odd.lossy else 1e-6)


# --------------------------------------------------------------------------
# Header parsers
# --------------------------------------------------------------------------
def _facts(name: str) -> containers.ContainerFacts:
    folder, _ = _odd_set()
    return containers.probe(folder / name)


def test_crc8_of_a_flac_frame_header():
    # CRC-8/SMBUS check value of "123456789" (poly 0x07, init 0).
    assert containers.crc8(b"123456789") == 0xF4


def test_flac_frame_header_of_a_real_first_frame(tmp_path):
    path = tmp_path / "t.flac"
    soundfile.write(str(path), np.zeros(20000, np.float32), 44100, subtype="PCM_16")
    data = path.read_bytes()
    at = data.index(b"\xff\xf8")
    assert containers.flac_frame_header(data, at, 4096) == (0, 4096)
    corrupt = bytearray(data)
    corrupt[at + 2] ^= 0x10  # a different block-size code: the CRC-8 no longer matches
    assert containers.flac_frame_header(bytes(corrupt), at, 4096) is None


def test_flac_declared_and_present_lengths():
    whole = _facts("flac_stale_seektable.flac")
    assert (whole.declared_seconds, whole.present_seconds) == (6.0, 6.0)
    cut = _facts("flac_truncated.flac")
    assert cut.declared_seconds == 6.0 and 3.0 < cut.present_seconds < 3.5
    assert _facts("flac_header_only.flac").no_audio_bytes
    assert "past the end" in _facts("flac_block_overruns_file.flac").problem


def test_wav_facts_name_odd_formats():
    facts = _facts("pcm_36bit.wav")
    assert "36 bits" in facts.problem and facts.declared_seconds == pytest.approx(4.0)
    vorbis = _facts("vorbis_in_wav.ogg")
    assert vorbis.container == "WAV" and "0x674F (Vorbis in WAV)" in vorbis.description
    streaming = _facts("streaming_size.wav")
    assert streaming.declared_seconds is None and streaming.present_seconds == pytest.approx(4.0)
    cut = _facts("wav_truncated.wav")
    assert (cut.declared_seconds, cut.present_seconds) == (pytest.approx(4.0), pytest.approx(2.4))


def test_wav_extensible_subformat_is_read(tmp_path):
    path = tmp_path / "x.wav"
    soundfile.write(str(path), np.zeros((1000, 3), np.float32), 48000, format="WAV", subtype="FLOAT")
    facts = containers.probe(path)
    assert facts.description.startswith("RIFF/WAVE IEEE float, 32-bit, 3 ch, 48000 Hz")


def test_aiff_extended_float_rate():
    assert containers._extended_float(bytes.fromhex("400EAC44000000000000")) == 44100.0
    assert containers._extended_float(bytes.fromhex("400DAC44000000000000")) == 22050.0


def test_au_declared_size():
    cut = _facts("au_truncated.au")
    assert cut.declared_seconds == pytest.approx(4.0) and cut.present_seconds == pytest.approx(2.0, abs=1e-3)


def test_ogg_lengths_from_granule_positions():
    opus = _facts("opus_8k_source.opus")
    assert opus.declared_seconds == pytest.approx(30.0, abs=0.01) and opus.length_trusted
    assert "encoded from 8000 Hz" in opus.description
    cut = _facts("vorbis_truncated.ogg")
    assert cut.declared_seconds > cut.present_seconds + 0.5


def test_ogg_pages_marks_the_page_cut_by_the_end():
    page = b"OggS\x00\x04" + struct.pack("<qIII", 4800, 7, 3, 0) + bytes([2, 255, 10]) + bytes(265)
    pages = containers.ogg_pages(page + page[:100])
    assert [(p[1], p[2], p[3], p[4]) for p in pages] == [(4, 4800, 7, True), (4, 4800, 7, False)]


def test_mp3_xing_header_against_the_file_size():
    fma = _facts("mp3_fma_clip.mp3")
    assert fma.length_trusted and fma.declared_seconds == pytest.approx(6.0, abs=0.05)
    cut = _facts("mp3_xing_truncated.mp3")
    assert not cut.length_trusted and cut.declared_seconds == pytest.approx(12.0, abs=0.05)
    plain = _facts("mp3_no_header_cut.mp3")
    assert plain.container == "MP3" and plain.declared_seconds is None
    assert _facts("mp3_fma_clip_past_the_end.mp3").no_audio_bytes


def test_mpeg_frame_header():
    frame = containers.mpeg_frame(bytes.fromhex("fffb9064"), 0)  # MPEG-1 L3, 128 kb/s, 44.1 kHz
    assert (frame.version, frame.rate, frame.channels, frame.length, frame.samples) == (3, 44100, 2, 417, 1152)
    assert containers.mpeg_frame(b"\xff\xfb\xf0\x00", 0) is None  # bitrate index 15 is invalid


def test_id3v2_size_and_describe_bytes():
    assert containers.id3v2_size(b"ID3\x04\x00\x00\x00\x00\x02\x00") == 266
    assert containers.id3v2_size(b"RIFF....") == 0
    assert containers.describe_bytes(b"hello, world\n" * 10).startswith("text")
    assert containers.describe_bytes(b"\x89PNG\r\n\x1a\n") == "a PNG image"


def test_riff_wave_helper_writes_what_libsndfile_reads(tmp_path):
    path = tmp_path / "h.wav"
    path.write_bytes(riff_wave(1, 1, 8000, 16, np.arange(800, dtype="<i2").tobytes()))
    with soundfile.SoundFile(str(path)) as sf:
        assert (sf.samplerate, sf.frames) == (8000, 800)


def test_flac_without_a_declared_total_decodes_what_is_there(tmp_path):
    """STREAMINFO's total samples may be 0 (unknown, a streaming encoder): nothing declares."""
    path = tmp_path / "stream.flac"
    soundfile.write(str(path), 0.5 * np.sin(np.arange(4 * 44100) / 20.0), 44100, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = 8 + 10  # STREAMINFO body: the 36-bit total sits in its bytes 13..17
    packed = int.from_bytes(data[at:at + 8], "big") & ~((1 << 36) - 1)
    data[at:at + 8] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    facts = containers.probe(path)
    assert facts.declared_seconds is None and facts.present_seconds == pytest.approx(4.0, abs=0.1)
    clip = load_clip(path, clip_seconds=30.0)
    assert abs(clip.valid_samples / SR - 4.0) < 0.01


class _Packet:
    def __init__(self, pts, duration):
        self.pts, self.duration = pts, duration


class _Stream:
    start_time, time_base = 0, Fraction(1, 1000)

    def __init__(self, duration=None):
        self.duration = duration


class _Container:
    def __init__(self, packets, duration=None):
        self._packets, self.duration = packets, duration

    def demux(self, stream):
        return iter(self._packets)


def test_packet_scan_without_packet_durations():
    """WMA Pro's ASF packets carry timestamps but no durations; some carry neither."""
    timed = [_Packet(pts, 0) for pts in range(0, 4000, 40)] + [_Packet(None, 0)]
    assert _packet_seconds(_Container(timed), _Stream()) == pytest.approx(3.96)
    untimed = [_Packet(None, None)] * 10
    assert _packet_seconds(_Container(untimed), _Stream(duration=4000)) == pytest.approx(4.0)
    assert _packet_seconds(_Container(untimed, duration=2_500_000), _Stream()) == pytest.approx(2.5)
    assert _packet_seconds(_Container(untimed), _Stream()) is None
