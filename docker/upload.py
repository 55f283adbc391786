#!/usr/bin/env python3
"""Put a collection into object storage: the compose stack's one-shot helper.

Installed in the image as ``hfs-upload``::

    hfs-upload buckets s3://audio s3://features     create the buckets that do not exist yet
    hfs-upload demo s3://audio/demo                 generate the demo collection, upload it
    hfs-upload folder /upload s3://audio/gtzan      upload a mounted folder as it is

Endpoint and credentials come from the environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), as
for every other service of the stack. Uploads are idempotent: an object
already there at the same size is not sent again, and a demo folder's
``demo.json`` goes last, so an interrupted upload never looks complete to
the build.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import fsspec

logger = logging.getLogger("hfs-upload")


def make_buckets(uris: list[str]) -> None:
    for uri in uris:
        fs, bucket = fsspec.core.url_to_fs(uri)
        bucket = bucket.strip("/")
        if "/" in bucket:
            raise SystemExit(f"error: {uri} is not a bucket URI; pass s3://NAME")
        if fs.exists(bucket):
            logger.info("bucket %s exists", uri)
            continue
        fs.mkdir(bucket)
        logger.info("created bucket %s", uri)


def upload_folder(source: Path, dest: str, *, last: tuple[str, ...] = ()) -> int:
    """Upload every file under ``source`` to ``dest`` (same layout); files named in ``last`` go at the end.

    Returns the number of files sent (files already there at their size are skipped).
    """
    if not source.is_dir():
        raise SystemExit(f"error: {source} is not a folder; mount the collection there")
    fs, prefix = fsspec.core.url_to_fs(dest)
    prefix = prefix.rstrip("/")
    files = sorted(p for p in source.rglob("*") if p.is_file())
    present = {}
    if fs.exists(prefix):
        present = {path: info.get("size") for path, info in fs.find(prefix, detail=True).items()}
    todo = []
    for path in files:
        rel = path.relative_to(source).as_posix()
        remote = f"{prefix}/{rel}"
        if present.get(remote) != path.stat().st_size:
            todo.append((rel, str(path), remote))
    first = [t for t in todo if t[0] not in last]
    final = [t for t in todo if t[0] in last]
    for batch in (first, final):
        if batch:
            # one call: s3fs sends the files concurrently
            fs.put([local for _, local, _ in batch], [remote for _, _, remote in batch])
    logger.info("%s -> %s: %d files sent, %d already there", source, dest, len(todo), len(files) - len(todo))
    return len(todo)


def upload_demo(dest: str, options: list[str]) -> None:
    from pipeline.datasets import load_manifest

    kwargs = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: demo option {item!r} must be KEY=VALUE")
        kwargs[key] = float(value) if "." in value else int(value)
    with tempfile.TemporaryDirectory(prefix="hfs-demo-") as cache:
        manifest = load_manifest("demo", cache, **kwargs)
        upload_folder(Path(str(manifest.root)), dest, last=("demo.json",))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfs-upload", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("buckets", help="create buckets that do not exist yet")
    p.add_argument("uris", nargs="+", metavar="URI")
    p = sub.add_parser("demo", help="generate the demo collection and upload it")
    p.add_argument("dest", metavar="URI")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="demo generation option, as pipeline build's --dataset-option (the build must get the same)")
    p = sub.add_parser("folder", help="upload a folder as it is")
    p.add_argument("source", type=Path)
    p.add_argument("dest", metavar="URI")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.command == "buckets":
        make_buckets(args.uris)
    elif args.command == "demo":
        upload_demo(args.dest, args.option)
    else:
        upload_folder(args.source, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
