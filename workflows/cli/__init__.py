"""The ``pipeline`` command: parse arguments, configure logging, call one library function.

Each sub-command lives in a small module of this package that only declares
its arguments and forwards them; all logic is in the library so tests call
the same functions. Errors of the project's hierarchy are printed as one line
(no traceback) with exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.errors import PROJECT_ERRORS
from pipeline.sources import CredentialFilter

from workflows.cli import bench, build, run, store, train
from workflows.cli.options import add_storage_option, parse_key_values, parse_storage_options

__all__ = ["add_storage_option", "configure_logging", "main", "make_parser", "parse_key_values",
           "parse_storage_options"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Music genre feature stores (Zarr v3, Dask) and the dual-branch fusion trainer.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (build, store, train, bench, run):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.verbose, parse_storage_options(getattr(args, "storage_option", None)))
        return int(args.func(args) or 0)
    except PROJECT_ERRORS as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept (rerun the same command to resume)", file=sys.stderr)
        return 130


#: Libraries whose debug records are request-level noise (and carry signed
#: headers): at -vv they stay at INFO, at -vvv they log everything.
CHATTY_LOGGERS = ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "asyncio", "numba", "matplotlib")


def configure_logging(verbose: int, storage_options: dict[str, object] | None = None) -> None:
    """Log level from ``-v`` counts; every record masked of the credentials in use."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose == 2:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
    mask = CredentialFilter(storage_options)
    for handler in logging.getLogger().handlers:
        handler.addFilter(mask)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
