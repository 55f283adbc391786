"""Skippable stages: a stage whose inputs have not changed is not run again.

Every stage of a run (build, one training, one evaluation, ...) owns a folder
and, once it has finished, writes ``stage.json`` there: the stage's name, its
inputs (a JSON mapping: the store fingerprint, the model name, the training
settings, ...), their hash, the stage's result (small JSON: paths, headline
numbers) and how long it took. On the next run a stage whose ``stage.json``
holds the same inputs hash, and whose declared outputs still exist, is
skipped and its recorded result reused; so a rerun after a failure continues
where it stopped, and a changed setting reruns only what depends on it.

The record is written only after the stage has succeeded, atomically, so an
interrupted stage never looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.config import canonical_hash

logger = logging.getLogger(__name__)

RECORD = "stage.json"


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``inputs`` (key order does not matter)."""
    return canonical_hash(inputs, default=str)


@dataclasses.dataclass(frozen=True)
class StageOutcome:
    """What a stage produced and whether this run computed it.

    name : stage name ("build", "train/dfn", ...).
    folder : the stage's folder (holds ``stage.json``).
    result : the JSON result the stage function returned (or the recorded one).
    skipped : True when a matching record was found and nothing ran.
    seconds : wall time of the run that computed the result.
    """

    name: str
    folder: Path
    result: dict[str, Any]
    skipped: bool
    seconds: float


def read_record(folder: Path) -> dict[str, Any] | None:
    """The stage record in ``folder``, or None when absent or unreadable."""
    path = Path(folder) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # A torn record means the stage did not finish cleanly: run it again.
        logger.warning("ignoring unreadable stage record %s (%s); the stage will run again", path, exc)
        return None


def _finished_record(folder: Path, inputs: Mapping[str, Any], outputs: tuple[str, ...]) -> dict[str, Any] | None:
    """The record in ``folder`` when it holds these inputs and ``outputs`` still exist."""
    record = read_record(folder)
    if record is None or record.get("inputs_hash") != inputs_hash(inputs):
        return None
    missing = [o for o in outputs if not (Path(folder) / o).exists()]
    if missing:
        logger.info("stage %s: outputs %s are missing; running it again", record.get("stage"), missing)
        return None
    return record


def finished(folder: Path, inputs: Mapping[str, Any], outputs: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The recorded result when the stage in ``folder`` finished with these inputs.

    ``outputs`` are paths relative to ``folder`` that must still exist.
    """
    record = _finished_record(folder, inputs, outputs)
    return None if record is None else dict(record.get("result") or {})


def run_stage(name: str, folder: Path, inputs: Mapping[str, Any],
              fn: Callable[[Path], Mapping[str, Any]], *, outputs: tuple[str, ...] = (),
              force: bool = False, echo: Callable[[str], None] | None = None) -> StageOutcome:
    """Run ``fn(folder)`` unless the stage already finished with the same inputs.

    Parameters
    ----------
    name : stage name for messages and the record.
    folder : the stage's own folder (created).
    inputs : JSON mapping of everything the result depends on.
    fn : does the work, writing into ``folder``; returns a small JSON result.
    outputs : files/folders (relative to ``folder``) that must exist for a
        recorded result to count.
    force : run even when a matching record exists.
    echo : where progress lines go (e.g. ``print``); None logs them.
    """
    say = echo or logger.info
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not force:
        record = _finished_record(folder, inputs, outputs)
        if record is not None:
            say(f"[skip] {name}: finished earlier with the same inputs ({folder})")
            return StageOutcome(name, folder, dict(record.get("result") or {}), True,
                                float(record.get("seconds", 0.0)))
    stale = folder / RECORD
    if stale.exists():
        # The inputs changed: the old record must not survive a failed rerun.
        stale.unlink()
    say(f"[run ] {name} ...")
    start = time.perf_counter()
    result = dict(fn(folder))
    seconds = time.perf_counter() - start
    record = {
        "stage": name,
        "inputs": json.loads(json.dumps(inputs, default=str)),
        "inputs_hash": inputs_hash(inputs),
        "result": result,
        "seconds": round(seconds, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = folder / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(tmp, folder / RECORD)
    say(f"[done] {name} in {seconds:.1f} s")
    return StageOutcome(name, folder, result, False, seconds)
