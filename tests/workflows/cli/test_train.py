"""``pipeline train``: the --model help lists the model registry's names."""

from __future__ import annotations

import pytest

from model.networks import model_names
from workflows.cli import make_parser


def test_model_help_lists_the_registered_models(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option, so the names are not wrapped
    with pytest.raises(SystemExit):
        make_parser().parse_args(["train", "--help"])
    help_line = next(line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("--model MODEL"))
    assert f"model name: {', '.join(model_names())} " in help_line
