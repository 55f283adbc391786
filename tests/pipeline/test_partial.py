"""Long PCM objects fetched in part: the layout read from the header, the sparse file the
decoders read, and the rule that a partial fetch can change a decode's speed, never its result."""

from __future__ import annotations

import io
import struct

import fsspec
import numpy as np
import pytest
import soundfile as sf

from pipeline.build import clip_outcomes, excerpt_plan
from pipeline.config import AudioConfig, PipelineConfig
from pipeline.dsp.audio import load_clip
from pipeline.dsp.partial import PartialObject, pcm_layout
from pipeline.errors import PartialReadError
from pipeline.isolation import ClipLimits
from pipeline.sources import RANGE_READ_BYTES, ExcerptPlan, fetch_many

SR = 22050


def _wav(seconds: float, *, channels: int = 1, subtype: str = "PCM_16", trailing: bytes = b"") -> bytes:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, np.stack([y] * channels, axis=1) if channels > 1 else y, SR, subtype=subtype, format="WAV")
    data = buf.getvalue()
    if trailing:  # a chunk after the samples (a LIST of tags, as taggers write)
        data = data + b"LIST" + struct.pack("<I", len(trailing)) + trailing
        data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
    return data


def _au(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * SR)), SR, subtype="PCM_16", format="AU")
    return buf.getvalue()


def test_pcm_layout_of_wav_and_au_and_none_for_compressed():
    wav = _wav(2.0, channels=2)
    layout = pcm_layout(wav[:4096], len(wav))
    assert (layout.frame_bytes, layout.rate, layout.frames) == (4, SR, int(2.0 * SR))
    assert wav[layout.data_start - 8:layout.data_start - 4] == b"data"
    au = _au(1.0)
    layout = pcm_layout(au[:4096], len(au))
    assert (layout.frame_bytes, layout.frames) == (2, SR)
    float_wav = _wav(1.0, subtype="FLOAT")
    assert pcm_layout(float_wav, len(float_wav)).frame_bytes == 4
    assert pcm_layout(b"ID3\x04" + bytes(100), 104) is None  # MP3
    assert pcm_layout(b"fLaC" + bytes(100), 104) is None
    adpcm = bytearray(_wav(1.0))
    adpcm[20:22] = struct.pack("<H", 2)  # format tag 2: MS ADPCM, compressed
    assert pcm_layout(bytes(adpcm), len(adpcm)) is None


def test_a_sparse_file_reads_what_was_fetched_and_marks_the_rest():
    partial = PartialObject("x.wav", 100, ((0, b"a" * 10), (50, b"b" * 10)))
    fh = partial.open()
    assert fh.read(10) == b"a" * 10 and not fh.holes_read
    fh.seek(50)
    assert fh.read(10) == b"b" * 10 and not fh.holes_read
    fh.seek(-5, io.SEEK_END)
    assert fh.tell() == 95 and fh.read() == bytes(5) and fh.holes_read
    assert partial.fetched_bytes == 20


def _excerpt_only(data: bytes, clip_seconds: float) -> PartialObject:
    layout = pcm_layout(data[:RANGE_READ_BYTES], len(data))
    want = int(np.ceil(clip_seconds * layout.rate))
    first = (layout.frames - want) // 2
    start = layout.data_start + first * layout.frame_bytes
    end = start + want * layout.frame_bytes
    return PartialObject("long.wav", len(data), ((0, data[:4096]), (start, data[start:end])))


def test_a_clip_decoded_from_header_and_excerpt_equals_the_whole_file():
    data = _wav(90.0, channels=2)
    partial = _excerpt_only(data, 30.0)
    assert partial.fetched_bytes < len(data) / 2.5
    whole = load_clip(data, clip_seconds=30.0, name="long.wav")
    part = load_clip(partial, clip_seconds=30.0)
    assert part.samples.tobytes() == whole.samples.tobytes()
    assert (part.source_seconds, part.source_sample_rate, part.valid_samples) == (
        whole.source_seconds, whole.source_sample_rate, whole.valid_samples)


def test_a_decode_that_needs_unfetched_bytes_says_so_instead_of_answering():
    data = _wav(90.0)
    partial = _excerpt_only(data, 10.0)  # the excerpt of a 10 s clip: a 30 s decode reads past it
    with pytest.raises(PartialReadError, match="fetch it whole"):
        load_clip(partial, clip_seconds=30.0)


@pytest.fixture
def memory_bucket():
    fs = fsspec.filesystem("memory")
    root = "/hfs-partial"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_fetch_many_takes_header_and_excerpt_of_long_pcm_only(memory_bucket):
    fs, root = memory_bucket
    long_wav, short_wav, long_other = _wav(300.0), _wav(5.0), b"ID3\x04" + bytes(3 << 20)
    for name, data in (("long.wav", long_wav), ("short.wav", short_wav), ("long.mp3", long_other)):
        fs.pipe(f"{root}/{name}", data)
    uris = [f"memory://{root}/{n}" for n in ("long.wav", "short.wav", "long.mp3")]
    got = fetch_many(uris, excerpt=ExcerptPlan(30.0, "centre"))
    assert isinstance(got[0], PartialObject) and got[0].size == len(long_wav)
    # the first 2 MiB (which hold most clips whole, in one request) and the 30 s excerpt: 3.4 of 13.2 MB
    assert got[0].fetched_bytes < RANGE_READ_BYTES + 31 * SR * 2 < len(long_wav) / 3
    assert got[1] == short_wav and got[2] == long_other  # small, or not PCM: whole
    assert fetch_many(uris[:1]) == [long_wav]  # no excerpt given: whole


def _decode(audio, config, name=None):
    clip = load_clip(audio, sample_rate=config.audio.sample_rate, clip_seconds=config.audio.clip_seconds,
                     name=name)
    return clip.samples.tobytes()


def test_clip_outcomes_refetch_an_object_whose_decode_read_past_the_fetched_bytes(memory_bucket, monkeypatch):
    fs, root = memory_bucket
    config = PipelineConfig(audio=AudioConfig(clip_seconds=30.0))
    plain, tagged = _wav(300.0), _wav(300.0, trailing=b"INFOISFT" + bytes(1 << 16))
    fs.pipe(f"{root}/plain.wav", plain)
    fs.pipe(f"{root}/tagged.wav", tagged)
    fetched: list[object] = []
    real = fetch_many

    def counting(uris, **kwargs):
        out = real(uris, **kwargs)
        fetched.extend(out)
        return out

    monkeypatch.setattr("pipeline.build.shard_task.fetch_many", counting)
    clips = [(f"memory://{root}/plain.wav", "plain.wav", (config,)),
             (f"memory://{root}/tagged.wav", "tagged.wav", (config,))]
    outcomes = clip_outcomes(clips, _decode, limits=ClipLimits(isolate=False), excerpt=excerpt_plan(config))
    assert all(o.ok for o in outcomes), [o.reason for o in outcomes]
    assert outcomes[0].value == _decode(plain, config) and outcomes[1].value == _decode(tagged, config)
    kinds = [type(x).__name__ for x in fetched]
    # both fetched in part first; the tagged one (its LIST chunk lies past the samples) once more, whole
    assert kinds == ["PartialObject", "PartialObject", "bytes"]
