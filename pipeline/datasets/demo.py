"""The demo dataset: a synthetic genre collection, generated once, then read like a folder.

Ten genres, each one (harmony, rhythm) pair. Every harmony class is shared
by three or four genres and every rhythm by two, so a classifier needs both
the harmonic and the percussive side to tell them apart:

=========  ==============  ===================  ==========
genre      harmony         rhythm               tempo BPM
=========  ==============  ===================  ==========
pop        major triads    backbeat             94-128
indie      minor triads    backbeat             94-128
disco      seventh chords  four-on-the-floor    106-126
house      minor triads    four-on-the-floor    110-128
jazz       seventh chords  swing (triplet ride) 90-132
country    major triads    swing (triplet ride) 90-124
funk       seventh chords  breakbeat            88-114
hiphop     minor triads    breakbeat            82-104
ambient    major triads    none (no drums)      70-104
lounge     seventh chords  none (no drums)      70-104
=========  ==============  ===================  ==========

- Same drums, different harmony: pop/indie (major vs minor), disco/house
  (sevenths vs minor triads), funk/hiphop, jazz/country, lounge/ambient.
- Same harmony, different rhythm: pop/country/ambient, indie/house/hiphop,
  disco/jazz/funk/lounge.
- Key (all 12), progression (four per harmony class), inversion, tempo,
  instrument timbre (six presets shared by all genres), brightness, drum kit,
  mix balance, noise (18-40 dB SNR) and level (-12..-3 dBFS peak) are random,
  so no single trivial cue separates classes. Tempo ranges overlap.
- Each genre has ``artists_per_genre`` synthetic artists; an artist fixes a
  timbre, bass timbre, brightness, kit, tempo centre, chord rate and mix
  balance, and clip ``i`` of a genre is by artist ``i % artists_per_genre``.
  The artist is the clip's ``group`` ("<genre>.a<k>"), so artist-disjoint
  splits (scheme "artist") show how much a model leans on the artist's sound.

A check of the design (generator v3, defaults: 10 genres x 30 clips x 10 s,
logistic regression, artist-grouped 5-fold CV, chance 10%): per-clip
histograms of chord qualities matched on chroma alone reach 45%, a mean
tempogram alone 44%, the two together 68%. Neither side suffices.
Generating the defaults takes about 6 s of CPU and 127 MB of WAV.

Files: ``<folder>/<genre>/<genre>.<NNNNN>.wav``, mono 16-bit PCM at
22,050 Hz, plus ``demo.json`` (parameters, generator version, every file
with its size), written last: a folder with a matching ``demo.json`` whose
files are all present at their sizes is complete and is not regenerated.
Generation is deterministic: the same parameters give the same bytes (each
clip's generator is seeded with (seed, genre, clip); each artist's with
(seed, genre, 1000 + artist)).

``root=None`` puts the folder in ``$XDG_CACHE_HOME/harmonic-feature-store``
(default ``~/.cache/harmonic-feature-store``) as ``demo-<parameter hash>``.
A given ``root`` is either a demo folder (it holds ``demo.json``, whose
parameters must match) or a cache folder that receives ``demo-<hash>``.

A remote root (s3://, gs://, http(s)://: see :mod:`pipeline.sources`) must be
a complete demo folder, generated on some machine and uploaded as it is
(``demo.json`` included); it is checked, never generated into.

Split schemes: "random" (default; stratified 60/20/20, seeded with
``split_seed``), "artist" (stratified, artist-disjoint), "folds" (10
stratified folds) and "artist-folds" (artist-grouped stratified folds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from pipeline.config import canonical_hash
from pipeline.datasets.base import ClipRecord, Manifest, manifest_root
from pipeline.datasets.demo_synth import GENRES, draw_artist, synthesize
from pipeline.datasets.splits import (DEFAULT_N_FOLDS, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION,
                                      assign_scheme, check_seed)
from pipeline.errors import ConfigError, DatasetError
from pipeline.sources import RemotePath, is_remote, source_path

logger = logging.getLogger(__name__)

#: Bumped whenever the synthesis changes, so cached folders of an older generator are not reused.
GENERATOR_VERSION = 3
SAMPLE_RATE = 22050
MARKER = "demo.json"
SPLIT_SCHEMES: tuple[str, ...] = ("random", "artist", "folds", "artist-folds")


@dataclasses.dataclass(frozen=True)
class DemoParams:
    """Everything that determines the demo audio.

    seed : seed of all synthesis draws.
    clips_per_genre : clips generated per genre.
    clip_seconds : length of every clip in seconds.
    artists_per_genre : synthetic artists per genre (the ``group``).
    genres : which of :data:`~pipeline.datasets.demo_synth.GENRES` to make.
    """

    seed: int = 0
    clips_per_genre: int = 30
    clip_seconds: float = 10.0
    artists_per_genre: int = 5
    genres: tuple[str, ...] = tuple(GENRES)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        for name in ("clips_per_genre", "artists_per_genre"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"demo {name}={value!r} must be a positive integer")
        if (isinstance(self.clip_seconds, bool) or not isinstance(self.clip_seconds, (int, float))
                or not 1.0 <= self.clip_seconds <= 120.0):
            raise ConfigError(f"demo clip_seconds={self.clip_seconds!r} must be a number of seconds in [1, 120]")
        object.__setattr__(self, "clip_seconds", float(self.clip_seconds))
        genres = tuple(self.genres)
        object.__setattr__(self, "genres", genres)
        unknown = [g for g in genres if g not in GENRES]
        if unknown or not genres or len(set(genres)) != len(genres):
            raise ConfigError(f"demo genres={list(genres)!r} must be distinct names from {', '.join(GENRES)}")

    def to_dict(self) -> dict[str, object]:
        return {"generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}}

    def digest(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical parameter JSON."""
        return canonical_hash(self.to_dict())[:12]


@dataclasses.dataclass(frozen=True)
class DemoClip:
    """One planned clip: id, relative path, genre and artist group."""

    clip_id: str
    path: str
    genre: str
    group: str
    genre_index: int
    index: int


def plan(params: DemoParams) -> list[DemoClip]:
    """The clips ``params`` describes, sorted by genre then number."""
    clips = []
    for genre in sorted(params.genres):
        g = list(GENRES).index(genre)  # fixed index: adding genres never changes another's audio
        for i in range(params.clips_per_genre):
            clip_id = f"{genre}.{i:05d}"
            clips.append(DemoClip(clip_id, f"{genre}/{clip_id}.wav", genre,
                                  f"{genre}.a{i % params.artists_per_genre}", g, i))
    return clips


def render_clip(params: DemoParams, clip: DemoClip) -> np.ndarray:
    """The int16 samples [shape=(round(clip_seconds * 22050),)] of one planned clip."""
    spec = GENRES[clip.genre]
    artist = draw_artist(spec, np.random.default_rng([params.seed, clip.genre_index,
                                                      1000 + clip.index % params.artists_per_genre]))
    rng = np.random.default_rng([params.seed, clip.genre_index, clip.index])
    return synthesize(spec, artist, rng, seconds=params.clip_seconds, sr=SAMPLE_RATE)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/harmonic-feature-store`` or ``~/.cache/harmonic-feature-store``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "harmonic-feature-store"


def is_complete(folder: Path | RemotePath, params: DemoParams) -> bool:
    """True when ``folder`` holds a marker for ``params`` and every file it lists, at its size
    (where the listing gives sizes: an HTTP listing does not)."""
    marker = folder / MARKER
    try:
        data = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if data.get("params") != params.to_dict():
        return False
    files = data.get("files", {})
    if sorted(files) != sorted(c.path for c in plan(params)):
        return False
    for rel, size in files.items():
        try:
            found = (folder / rel).stat().st_size
        except OSError:
            return False
        if found is not None and found != size:
            return False
    return True


def remote_demo_folder(root: str, params: DemoParams, storage_options: Mapping[str, Any] | None) -> RemotePath:
    """The uploaded demo folder at ``root``, checked complete for ``params``."""
    folder = source_path(root, storage_options)
    if not (folder / MARKER).is_file():
        raise DatasetError(f"demo root {folder} holds no {MARKER}: a remote demo root must be a complete "
                           "generated demo folder; generate one locally (pipeline build --dataset demo ... or "
                           "load_manifest('demo', DIR)) and upload the demo-<hash> folder as it is")
    if not is_complete(folder, params):
        raise DatasetError(f"demo folder {folder} is incomplete or was generated with other parameters than "
                           f"{params.to_dict()}; pass its parameters, or upload the whole folder again")
    return folder


def generate(folder: str | Path, params: DemoParams) -> Path:
    """Write the demo audio for ``params`` into ``folder`` (created), marker last.

    Files are written into a temporary sibling folder that is renamed into
    place at the end, so an interrupted run never leaves a folder that looks
    complete, and two processes racing on one cache folder both end with it
    complete.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        planned = plan(params)
        sizes: dict[str, int] = {}
        for clip in planned:
            target = tmp / clip.path
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, render_clip(params, clip), SAMPLE_RATE, subtype="PCM_16", format="WAV")
            sizes[clip.path] = target.stat().st_size
        marker = {"dataset": "demo", "params": params.to_dict(), "files": sizes,
                  "groups": {c.clip_id: c.group for c in planned}}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
        if folder.exists():
            if is_complete(folder, params):  # another process finished first
                return folder
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError as exc:
            # Another process renamed its copy into place between our check and rename.
            if not is_complete(folder, params):
                raise DatasetError(f"cannot move the generated demo audio into {folder}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("generated %d demo clips in %s", params.clips_per_genre * len(params.genres), folder)
    return folder


def demo_folder(root: str | Path | None, params: DemoParams) -> Path:
    """The complete demo folder for ``params``, generated if needed (see the module docstring)."""
    base = default_cache_dir() if root is None else Path(root).expanduser()
    if (base / MARKER).is_file():
        # root is itself a demo folder: it must hold exactly these parameters.
        try:
            found = json.loads((base / MARKER).read_text()).get("params")
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"demo marker {base / MARKER} is unreadable: {exc}; delete {base} "
                               "to regenerate") from exc
        if found != params.to_dict():
            raise ConfigError(f"demo folder {base} was generated with {found}, not {params.to_dict()}; "
                              "pass its parameters, or a different --root")
        if not is_complete(base, params):
            logger.warning("demo folder %s is incomplete; regenerating it", base)
            generate(base, params)
        return base
    if base.exists() and not base.is_dir():
        raise DatasetError(f"demo root {base} is not a folder; pass a folder to hold the generated audio")
    folder = base / f"demo-{params.digest()}"
    if not is_complete(folder, params):
        logger.info("generating the demo dataset into %s", folder)
        generate(folder, params)
    return folder


def load_demo(root: str | Path | None = None, *, split: str = "random", seed: int = 0,
              clips_per_genre: int = 30, clip_seconds: float = 10.0, artists_per_genre: int = 5,
              genres: tuple[str, ...] | list[str] | None = None, split_seed: int = 0,
              val_fraction: float = DEFAULT_VAL_FRACTION, test_fraction: float = DEFAULT_TEST_FRACTION,
              n_folds: int = DEFAULT_N_FOLDS, storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Manifest of the demo dataset, generating its audio first when needed.

    Parameters
    ----------
    root : path or URI, optional
        Cache folder (or an existing demo folder); ``None`` for the user
        cache. A remote URI must be a complete uploaded demo folder.
    split : {"random", "artist", "folds", "artist-folds"}
    seed, clips_per_genre, clip_seconds, artists_per_genre, genres
        Generation parameters (:class:`DemoParams`); ``genres`` None for all ten.
    split_seed, val_fraction, test_fraction, n_folds
        Split assignment.
    storage_options : mapping, optional
        fsspec options of a remote root (endpoint, credentials).
    """
    params = DemoParams(seed=seed, clips_per_genre=clips_per_genre, clip_seconds=clip_seconds,
                        artists_per_genre=artists_per_genre,
                        genres=tuple(genres) if genres is not None else tuple(GENRES))
    if is_remote(root):
        folder = remote_demo_folder(str(root), params, storage_options)
    else:
        folder = demo_folder(root, params)
    planned = plan(params)
    labels = [c.genre for c in planned]
    groups = [c.group for c in planned]
    splits, folds, k = assign_scheme(split, labels, groups, seed=split_seed, val_fraction=val_fraction,
                                     test_fraction=test_fraction, n_folds=n_folds)
    clips = tuple(ClipRecord(clip_id=c.clip_id, path=c.path, label=c.genre, split=s, fold=f, group=c.group)
                  for c, s, f in zip(planned, splits, folds))
    return Manifest(dataset="demo", root=manifest_root(folder), labels=tuple(sorted(params.genres)), clips=clips,
                    split_scheme=split, n_folds=k,
                    source=(f"synthetic demo genres (generator v{GENERATOR_VERSION}, seed {seed}, "
                            f"{clips_per_genre} clips/genre, {params.clip_seconds:g} s); {split} split "
                            f"(seed {split_seed})"))
