"""``pipeline train``, ``evaluate`` and ``predict``."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    from model.cli import register as register_model

    register_model(commands)
