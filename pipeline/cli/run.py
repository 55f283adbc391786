"""``pipeline run RECIPE`` and ``pipeline demo``: the end-to-end workflows."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    from workflows.cli import register as register_workflows

    register_workflows(commands)
