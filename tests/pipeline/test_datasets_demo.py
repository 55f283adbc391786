"""The demo dataset: deterministic generation, the cache folder, decodable audio, its splits."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import soundfile

from pipeline.datasets import load_manifest
from pipeline.datasets.demo import MARKER, DemoParams, default_cache_dir, plan, render_clip
from pipeline.datasets.demo_synth import GENRES, HARMONIES, RHYTHMS
from pipeline.errors import ConfigError

#: A tiny demo: 10 genres x 2 clips x 4 s.
TINY = {"clips_per_genre": 2, "clip_seconds": 4.0, "artists_per_genre": 2}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, load_manifest("demo", root, **TINY)


def test_genre_design_needs_harmony_and_rhythm():
    assert len(GENRES) >= 8
    pairs = [(g.harmony, g.rhythm) for g in GENRES.values()]
    assert len(set(pairs)) == len(pairs)
    # Every harmony and every rhythm is shared by at least two genres.
    assert min(Counter(h for h, _ in pairs).values()) >= 2
    assert min(Counter(r for _, r in pairs).values()) >= 2
    assert {h for h, _ in pairs} == set(HARMONIES) and {r for _, r in pairs} == set(RHYTHMS)


def test_manifest_and_audio(tiny_demo):
    root, m = tiny_demo
    assert m.dataset == "demo" and len(m) == 20 and m.labels == tuple(sorted(GENRES))
    assert m.root.parent == root and m.root.name.startswith("demo-")
    assert m.clips[0].clip_id == "ambient.00000" and m.clips[0].path == "ambient/ambient.00000.wav"
    assert {c.group for c in m.clips if c.label == "jazz"} == {"jazz.a0", "jazz.a1"}
    for clip in m.clips[::7]:
        info = soundfile.info(str(m.absolute_path(clip)))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 1, 4 * 22050, "PCM_16")
        y, _ = soundfile.read(m.absolute_path(clip), dtype="float32")
        assert np.isfinite(y).all() and 0.2 < np.abs(y).max() < 0.75  # peak -12..-3 dBFS


def test_cached_folder_is_reused_and_repaired(tmp_path):
    opts = {**TINY, "genres": ["disco", "house"]}
    m = load_manifest("demo", tmp_path, **opts)
    root = tmp_path
    first = m.absolute_path(m.clips[3])
    stamp = first.stat().st_mtime_ns
    again = load_manifest("demo", root, **opts)
    assert again.root == m.root and first.stat().st_mtime_ns == stamp
    marker = json.loads((m.root / MARKER).read_text())
    assert marker["params"]["clips_per_genre"] == 2 and len(marker["files"]) == 4
    # A lost file makes the folder incomplete: it is regenerated, identically.
    content = first.read_bytes()
    first.unlink()
    repaired = load_manifest("demo", root, **opts)
    assert first.read_bytes() == content and repaired.clips == m.clips
    # The demo folder itself may be passed as root.
    assert load_manifest("demo", m.root, **opts).root == m.root
    with pytest.raises(ConfigError, match="was generated with"):
        load_manifest("demo", m.root, clips_per_genre=3, clip_seconds=4.0)


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path, tiny_demo):
    _, m = tiny_demo
    other = load_manifest("demo", tmp_path, **TINY)
    assert other.root != m.root or other.root.parent != m.root.parent
    for clip in m.clips:
        assert m.absolute_path(clip).read_bytes() == other.absolute_path(clip).read_bytes()
    params = DemoParams(seed=1, **TINY)
    clip = plan(params)[0]
    assert not np.array_equal(render_clip(params, clip), render_clip(DemoParams(seed=0, **TINY), clip))


def test_default_cache_dir_from_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "harmonic-feature-store"
    m = load_manifest("demo", None, clips_per_genre=1, clip_seconds=3.0, genres=["jazz", "pop"])
    assert m.root.parent == tmp_path / "harmonic-feature-store" and m.labels == ("jazz", "pop")
    assert (m.root / MARKER).is_file()


def test_split_schemes(tmp_path):
    # More clips than tiny, but 1 s long and 4 genres to stay fast.
    opts = {"clips_per_genre": 10, "clip_seconds": 1.0, "artists_per_genre": 5,
            "genres": ["pop", "indie", "funk", "lounge"]}
    root = tmp_path
    m = load_manifest("demo", root, **opts)
    assert Counter(c.split for c in m.clips) == {"train": 24, "val": 8, "test": 8}
    by_artist = load_manifest("demo", root, split="artist", **opts)
    sides: dict[str, set[str]] = {}
    for clip in by_artist.clips:
        sides.setdefault(clip.group, set()).add(clip.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {s for v in sides.values() for s in v} == {"train", "val", "test"}
    folds = load_manifest("demo", root, split="folds", **opts)
    assert folds.n_folds == 10 and Counter(c.fold for c in folds.clips) == {f: 4 for f in range(10)}
    with pytest.raises(ConfigError, match="random, artist, folds, artist-folds"):
        load_manifest("demo", root, split="fault-filtered", **opts)


@pytest.mark.parametrize("bad", [{"clips_per_genre": 0}, {"clip_seconds": 0.1}, {"genres": ["polka"]},
                                 {"seed": -1}])
def test_bad_parameters(tmp_path, bad):
    with pytest.raises(ConfigError):
        load_manifest("demo", tmp_path, **bad)
