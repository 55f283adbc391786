"""``pipeline log``, ``tag`` and ``STORE@VERSION`` on the command line (issue 21)."""

from __future__ import annotations

import json

from stores import open_store
from tests.stores.test_store import build, small_config
from tests.stores.test_versions import grow
from workflows.cli import main


def test_log_tag_and_a_pinned_info(tmp_path, capsys):
    uri = tmp_path / "s.zarr"
    build(uri, small_config())
    first = open_store(uri).version
    grow(uri, 7, 2)
    assert main(["log", str(uri), "--json"]) == 0
    log = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in log][1] == first and log[0]["change"] == "+2 clips (train 2)"
    assert main(["tag", str(uri), "before-growth", "--version", first[:6]]) == 0
    capsys.readouterr()
    assert main(["log", str(uri)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[1].startswith(f"{first} [before-growth]") and "+2 clips" in text[0]
    assert main(["info", f"{uri}@before-growth", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == first and info["n_clips"] == 7 and info["pinned_uri"] == f"{uri}@{first}"
    assert main(["info", f"{uri}@nope"]) != 0
    assert "no version or tag 'nope'" in capsys.readouterr().err
