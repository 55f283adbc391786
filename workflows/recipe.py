"""Declarative experiment recipes: TOML files validated into frozen dataclasses.

A recipe names one experiment of the paper (model comparison, ablation,
cross-validation, noise robustness, latency), the dataset and split it runs
on, the feature-pipeline configuration of its store and the training
settings. Shipped recipes live in ``workflows/recipes/*.toml``; a path to any
other TOML file works too.

Command-line overrides (``--set train.epochs=5``) are applied to the raw
mapping *before* validation, with the same checks as the file: an unknown
section or key, or an unknown model name, raises
:class:`~pipeline.errors.ConfigError` listing the valid choices.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from model.config import TrainConfig
from pipeline import validate
from pipeline.config import PipelineConfig
from pipeline.datasets import DATASETS
from pipeline.errors import ConfigError

#: Experiment kinds the runner knows, one per table or figure of the paper.
KINDS: tuple[str, ...] = ("comparison", "ablation", "cross-validation", "noise", "latency")


def known_models() -> tuple[str, ...]:
    """Names of the model presets the trainer provides (:mod:`model.networks`' registry), so that
    a recipe can never name a preset the trainer lacks."""
    from model.networks import model_names  # torch: loaded when a recipe is validated, not on import

    return tuple(model_names())


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """Size of the synthetic ``demo`` dataset (used only when dataset.name is "demo").

    clips_per_genre : clips generated per genre.
    clip_seconds : length of each generated clip in seconds; also the
        store's ``audio.clip_seconds`` unless the recipe sets that itself.
    seed : generator seed (same seed, same audio).
    """

    clips_per_genre: int = 20
    clip_seconds: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        validate.integer("recipe dataset.demo.clips_per_genre", self.clips_per_genre, minimum=1)
        validate.number("recipe dataset.demo.clip_seconds", self.clip_seconds, positive=True)
        validate.integer("recipe dataset.demo.seed", self.seed, minimum=0)


@dataclasses.dataclass(frozen=True)
class DatasetSection:
    """Which clips: adapter name, root folder, split scheme and an optional limit.

    root : "" means the adapter's default (demo: a cache folder of generated audio).
    split : "" means the adapter's default scheme.
    limit : build only the first N clips of the manifest (0: all); smoke runs.
    """

    name: str = "demo"
    root: str = ""
    split: str = ""
    limit: int = 0
    demo: DemoOptions = dataclasses.field(default_factory=DemoOptions)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(
                f"recipe dataset.name={self.name!r} is not a known dataset; valid: {', '.join(DATASETS)}"
            )
        validate.text("recipe dataset.root", self.root)
        validate.text("recipe dataset.split", self.split)
        validate.integer("recipe dataset.limit", self.limit, minimum=0)
        adapter = DATASETS[self.name]
        if self.split and self.split not in adapter.split_schemes:
            raise ConfigError(
                f"recipe dataset.split={self.split!r} is not a split scheme of {self.name!r}; "
                f"valid: {', '.join(adapter.split_schemes)}"
            )
        if adapter.root_required and not self.root:
            raise ConfigError(
                f"dataset {self.name!r} needs its root folder: pass --root DIR (or --set dataset.root=DIR)"
            )

    @property
    def split_scheme(self) -> str:
        """The split scheme used: ``split``, or the adapter's default (GTZAN:
        fault-filtered; FMA: official; demo: random)."""
        return self.split or DATASETS[self.name].default_split


@dataclasses.dataclass(frozen=True)
class BuildSection:
    """How the store is built (or found).

    store : store URI; "" puts it under the run's store folder, named by
        dataset, split and config hash so that recipes share matching stores.
    workers : as ``pipeline build --workers``: N local Dask worker processes,
        0 builds serially in this process (no Dask: debugging, tiny stores);
        left out, one per CPU core.
    scheduler : address of an existing Dask scheduler ("" = a local cluster).
    max_failures : failed clips tolerated, a count (>= 1) or a fraction (< 1).
    """

    store: str = ""
    workers: int | None = None
    scheduler: str = ""
    max_failures: float = 0.05

    def __post_init__(self) -> None:
        validate.text("recipe build.store", self.store)
        if self.workers is not None:
            validate.integer("recipe build.workers", self.workers, minimum=0)
        validate.text("recipe build.scheduler", self.scheduler)
        validate.number("recipe build.max_failures", self.max_failures, minimum=0)


#: Trainer options a recipe does not set itself: the runner gives each stage its
#: model (from ``models``), its folds (cross-validation) and the progress bar.
_RUNNER_TRAIN_OPTIONS = frozenset({"model", "train_folds", "val_folds", "progress"})


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """The models to train, and the trainer's settings for every one of them.

    The ``[train]`` table holds ``models`` and any field of
    :class:`model.config.TrainConfig` (epochs, batch_size, lr, patience,
    seed, device, threads, loader_workers, ...): ``settings`` is that config,
    with the trainer's own defaults and checks, so a recipe and ``pipeline
    train`` cannot disagree about a default.

    models : preset names (see :func:`known_models`).
    """

    models: tuple[str, ...] = ("dfn",)
    settings: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        models = validate.text_list("recipe train.models", self.models)
        object.__setattr__(self, "models", models)
        valid = known_models()
        for name in models:
            if name not in valid:
                raise ConfigError(
                    f"recipe train.models names unknown model {name!r}; valid models: {', '.join(valid)}"
                )
        if len(set(models)) != len(models):
            raise ConfigError(f"recipe train.models={list(models)!r} names a model twice")

    @classmethod
    def keys(cls) -> set[str]:
        """The keys a ``[train]`` table may hold."""
        return {"models"} | {f.name for f in dataclasses.fields(TrainConfig)} - _RUNNER_TRAIN_OPTIONS

    @classmethod
    def from_table(cls, values: Mapping[str, Any]) -> "TrainSection":
        values = dict(values)
        validate.keys("recipe section [train]", values, cls.keys())
        models = values.pop("models", cls.models)
        return cls(models=models, settings=TrainConfig.from_dict(values))

    def to_table(self) -> dict[str, Any]:
        """The ``[train]`` table: ``models`` and every setting."""
        settings = {k: v for k, v in self.settings.to_dict().items() if k not in _RUNNER_TRAIN_OPTIONS}
        return {"models": list(self.models), **settings}


@dataclasses.dataclass(frozen=True)
class EvaluateSection:
    """Which split the reported numbers come from."""

    split: str = "test"

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test"):
            raise ConfigError(f"recipe evaluate.split={self.split!r} must be one of 'train', 'val', 'test'")


@dataclasses.dataclass(frozen=True)
class CVSection:
    """k-fold cross-validation: fold k is the test fold, fold k+1 (mod k) validates."""

    folds: int = 10

    def __post_init__(self) -> None:
        validate.integer("recipe cv.folds", self.folds, minimum=3)


@dataclasses.dataclass(frozen=True)
class NoiseSection:
    """Gaussian noise added to test-clip audio before the features are recomputed.

    snr_db : signal-to-noise ratios in dB (signal power over noise power).
    seed : noise generator seed (per clip and SNR, derived from it).
    max_clips : evaluate at most this many test clips (0: all).
    """

    snr_db: tuple[float, ...] = (30.0, 20.0, 10.0, 5.0)
    seed: int = 0
    max_clips: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.snr_db, (list, tuple)) or not self.snr_db:
            raise ConfigError(f"recipe noise.snr_db={self.snr_db!r} must be a non-empty list of numbers")
        object.__setattr__(self, "snr_db", tuple(validate.number("recipe noise.snr_db", v) for v in self.snr_db))
        validate.integer("recipe noise.seed", self.seed, minimum=0)
        validate.integer("recipe noise.max_clips", self.max_clips, minimum=0)


@dataclasses.dataclass(frozen=True)
class LatencySection:
    """Inference benchmark settings.

    devices : devices to measure; one that is absent (cuda without a GPU) is
        reported as absent, not measured.
    repeats : timed repetitions per measurement (the median is reported).
    """

    devices: tuple[str, ...] = ("cpu", "cuda")
    repeats: int = 5

    def __post_init__(self) -> None:
        devices = validate.text_list("recipe latency.devices", self.devices)
        for d in devices:
            if d not in ("cpu", "cuda"):
                raise ConfigError(f"recipe latency.devices names {d!r}; valid devices: 'cpu', 'cuda'")
        object.__setattr__(self, "devices", devices)
        validate.integer("recipe latency.repeats", self.repeats, minimum=1)


_SECTIONS: dict[str, type] = {
    "dataset": DatasetSection,
    "build": BuildSection,
    "train": TrainSection,
    "evaluate": EvaluateSection,
    "cv": CVSection,
    "noise": NoiseSection,
    "latency": LatencySection,
}
_TOP_KEYS = {"name", "kind", "description", "pipeline", *_SECTIONS}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One validated experiment: everything the runner needs, nothing implicit.

    name, kind, description : identity; ``kind`` is one of :data:`KINDS`.
    pipeline : overrides of the store's :class:`~pipeline.config.PipelineConfig`
        (sections audio / features / window / augment), as a plain mapping.
    """

    name: str
    kind: str
    description: str = ""
    pipeline: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: DatasetSection = dataclasses.field(default_factory=DatasetSection)
    build: BuildSection = dataclasses.field(default_factory=BuildSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    evaluate: EvaluateSection = dataclasses.field(default_factory=EvaluateSection)
    cv: CVSection = dataclasses.field(default_factory=CVSection)
    noise: NoiseSection = dataclasses.field(default_factory=NoiseSection)
    latency: LatencySection = dataclasses.field(default_factory=LatencySection)

    def __post_init__(self) -> None:
        validate.text("recipe name", self.name)
        if self.kind not in KINDS:
            raise ConfigError(f"recipe kind={self.kind!r} is not one of {', '.join(KINDS)}")
        # Build the store config now so a bad override fails at load time.
        self.pipeline_config()

    def pipeline_config(self) -> PipelineConfig:
        """The store's feature config: defaults, the recipe's overrides, and for
        the demo dataset the generated clip length as ``audio.clip_seconds``."""
        data = copy.deepcopy(dict(self.pipeline))
        if self.dataset.name == "demo":
            audio = dict(data.get("audio") or {})
            audio.setdefault("clip_seconds", self.dataset.demo.clip_seconds)
            data["audio"] = audio
        return PipelineConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML/JSON types; ``Recipe.from_dict(r.to_dict()) == r``."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        data["train"] = json.loads(json.dumps(self.train.to_table()))
        data["build"] = {k: v for k, v in data["build"].items() if v is not None}  # TOML has no null
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        """Validate a raw mapping (as read from TOML, after overrides)."""
        validate.keys("the recipe's top level", data, _TOP_KEYS)
        kwargs: dict[str, Any] = {
            "name": data.get("name", ""),
            "kind": data.get("kind", ""),
            "description": data.get("description", ""),
        }
        pipeline = data.get("pipeline") or {}
        if not isinstance(pipeline, Mapping):
            raise ConfigError(f"recipe [pipeline] must be a table of config sections, got {pipeline!r}")
        kwargs["pipeline"] = dict(pipeline)
        for name, section_cls in _SECTIONS.items():
            values = dict(data.get(name) or {})
            if name == "train":
                kwargs[name] = TrainSection.from_table(values)
                continue
            if name == "build" and "serial" in values:
                raise ConfigError("recipe build.serial is gone: build.workers = 0 builds serially in this process "
                                  "(the meaning of pipeline build --workers 0); leave workers out for one per core")
            valid = {f.name for f in dataclasses.fields(section_cls)}
            validate.keys(f"recipe section [{name}]", values, valid)
            if name == "dataset" and "demo" in values:
                demo = dict(values["demo"] or {})
                validate.keys("recipe section [dataset.demo]", demo, {f.name for f in dataclasses.fields(DemoOptions)})
                values["demo"] = DemoOptions(**demo)
            kwargs[name] = section_cls(**values)
        return cls(**kwargs)


# -- overrides -------------------------------------------------------------

def parse_value(raw: str) -> Any:
    """A ``KEY=VALUE`` value as TOML would read it (``5``, ``1e-3``, ``true``,
    ``["dfn", "cnn"]``, ``"text"``); ``[a, b]`` (quotes lost to a shell) is a
    list of bare strings; anything else is taken as a bare string.

    The one value syntax of every ``KEY=VALUE`` option: recipe ``--set``,
    ``--model-arg``, ``--storage-option``, ``--dataset-option``.
    """
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    else:
        # A TOML date or time (2026-12-01, 10:30) is no option value: keep the text.
        return raw if isinstance(value, (datetime.date, datetime.time)) else value
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        # A shell ate the quotes of ["a", "b"]: read [a, b] as a list of items.
        return [parse_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
    return raw


def _valid_keys_at(path: tuple[str, ...]) -> set[str] | None:
    """Keys allowed under a dotted prefix of the recipe; None when free-form."""
    if not path:
        return set(_TOP_KEYS)
    head, *rest = path
    if head == "pipeline":
        sections = PipelineConfig().to_dict()
        if not rest:
            return set(sections)
        if len(rest) == 1 and rest[0] in sections:
            return set(sections[rest[0]])
        return None
    if head == "train" and not rest:
        return TrainSection.keys()
    if head in _SECTIONS and not rest:
        return {f.name for f in dataclasses.fields(_SECTIONS[head])}
    if head == "dataset" and rest == ["demo"]:
        return {f.name for f in dataclasses.fields(DemoOptions)}
    return None


def apply_overrides(data: Mapping[str, Any], overrides: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with ``["key.sub=value", ...]`` applied.

    Raises
    ------
    ConfigError
        A pair without ``=``, or a key that is not part of the recipe schema
        (the message lists the valid keys at that level).
    """
    out = copy.deepcopy(dict(data))
    for pair in overrides or ():
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r} must look like key=value, e.g. train.epochs=5")
        parts = tuple(key.split("."))
        target: dict[str, Any] = out
        for depth, part in enumerate(parts):
            valid = _valid_keys_at(parts[:depth])
            if valid is not None and part not in valid:
                where = ".".join(parts[:depth]) or "the top level"
                raise ConfigError(
                    f"--set {key}: unknown key {part!r} at {where}; valid keys: {', '.join(sorted(valid))}"
                )
            if depth == len(parts) - 1:
                target[part] = parse_value(raw.strip())
            else:
                nxt = target.setdefault(part, {})
                if not isinstance(nxt, dict):
                    raise ConfigError(f"--set {key}: {'.'.join(parts[:depth + 1])} is a value, not a table")
                target = nxt
    return out


# -- loading ---------------------------------------------------------------

def recipe_names() -> tuple[str, ...]:
    """Names of the recipes shipped in ``workflows/recipes``."""
    folder = resources.files("workflows") / "recipes"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def recipe_text(name_or_path: str | Path) -> tuple[str, str]:
    """(source description, TOML text) of a shipped recipe name or a file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return str(path), path.read_text()
    name = str(name_or_path)
    shipped = recipe_names()
    if name not in shipped:
        raise ConfigError(
            f"recipe {name!r} is neither a shipped recipe nor an existing .toml file; "
            f"shipped recipes: {', '.join(shipped)}"
        )
    res = resources.files("workflows") / "recipes" / f"{name}.toml"
    return f"workflows/recipes/{name}.toml", res.read_text()


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] | None = None) -> Recipe:
    """Read, override and validate a recipe.

    Parameters
    ----------
    name_or_path : a shipped recipe name (``paper-comparison``) or a TOML path.
    overrides : ``["dotted.key=value", ...]`` as given to ``--set``.
    """
    source, text = recipe_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {source} is not valid TOML: {exc}") from exc
    data = apply_overrides(data, overrides)
    try:
        return Recipe.from_dict(data)
    except TypeError as exc:  # a section given as a value instead of a table
        raise ConfigError(f"recipe {source} is malformed: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"recipe {source}: {exc}") from exc
