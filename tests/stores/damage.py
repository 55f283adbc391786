"""Ways to damage a store's objects, as disks, transfers and people do, for the damage matrix.

Each function takes a store location as a :class:`Objects` (a local folder, a
zip file or an S3 prefix, all seen as key -> bytes) and changes one thing.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path
from typing import Any, Callable


@dataclasses.dataclass
class Objects:
    """The objects of one store, whatever holds them: ``get``, ``put``, ``delete``, ``keys`` by store key."""

    get: Callable[[str], bytes]
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]
    keys: Callable[[], list[str]]


def folder_objects(root: Path) -> Objects:
    return Objects(lambda k: (root / k).read_bytes(), lambda k, b: (root / k).parent.mkdir(parents=True, exist_ok=True)
                   or (root / k).write_bytes(b), lambda k: (root / k).unlink(),
                   lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()))


def zip_objects(path: Path) -> Objects:
    """A zip seen as objects: every change rewrites the zip (members stored, as ``pipeline export`` writes)."""
    def members() -> dict[str, bytes]:
        with zipfile.ZipFile(path) as zf:
            return {name: zf.read(name) for name in zf.namelist()}

    def write(content: dict[str, bytes]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in content.items():
                zf.writestr(name, data)
        path.write_bytes(buffer.getvalue())

    def put(key: str, data: bytes) -> None:
        write({**members(), key: data})

    def delete(key: str) -> None:
        write({k: v for k, v in members().items() if k != key})

    return Objects(lambda k: members()[k], put, delete, lambda: sorted(members()))


def s3_objects(fs: Any, prefix: str) -> Objects:
    prefix = prefix.rstrip("/")
    return Objects(lambda k: fs.cat_file(f"{prefix}/{k}"), lambda k, b: fs.pipe_file(f"{prefix}/{k}", b),
                   lambda k: fs.rm_file(f"{prefix}/{k}"),
                   lambda: sorted(p[len(prefix) + 1:] for p in fs.find(prefix)))


def flip_byte(objects: Objects, key: str, at: int) -> None:
    """Invert every bit of byte ``at`` of ``key`` (negative: from the end)."""
    data = bytearray(objects.get(key))
    data[at] ^= 0xFF
    objects.put(key, bytes(data))


def cut_short(objects: Objects, key: str, keep: float = 0.5) -> None:
    data = objects.get(key)
    objects.put(key, data[:int(len(data) * keep)])


def remove(objects: Objects, key: str) -> None:
    objects.delete(key)


def add_stray(objects: Objects, key: str) -> None:
    objects.put(key, b"left behind")


def overwrite(objects: Objects, key: str, data: bytes) -> None:
    objects.put(key, data)
