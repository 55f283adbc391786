"""Every file of a collection accounted for: a tree with one file of each listed audio format and
a few files that are not audio builds through the command line; every audio file is a clip,
every other file is reported as skipped by ``build``, ``scan`` and ``info`` (from the store
alone), and nothing but our own lines reaches the terminal: no native decoder's chatter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dsp.formats import AUDIO_EXTENSIONS
from stores import open_store
from tests.format_files import make_format_files
from tests.odd_audio import _encode_av, _tone

REPO = Path(__file__).resolve().parents[3]
#: Our log lines (workflows.cli.configure_logging) and the progress bars; nothing else may be on stderr.
OUR_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: |"
                      r"(build|scan): +\d+%)")
NOT_AUDIO = ("rock/cover.jpg", "rock/playlist.m3u", "jazz/notes.txt")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``rock/`` and ``jazz/``: every format (split between them), cover art, a playlist, notes, a
    macOS ``._`` file, and an MP3 joined from two (mpg123 prints a warning about its Xing header)."""
    root = tmp_path_factory.mktemp("collection")
    made = make_format_files(root / "rock", stem="rock")
    for i, ext in enumerate(sorted(made)):
        if i % 2:
            (root / "jazz").mkdir(exist_ok=True)
            made[ext] = made[ext].rename(root / "jazz" / f"jazz{ext}")
    one = root / "jazz" / "part.mp3"
    _encode_av(one, _tone(5.0, 44100), 44100, "libmp3lame", "mp3")
    (root / "jazz" / "joined.mp3").write_bytes(one.read_bytes() * 2)
    one.unlink()
    (root / "rock" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    (root / "rock" / "playlist.m3u").write_text("#EXTM3U\nrock.mp3\n")
    (root / "jazz" / "notes.txt").write_text("recorded live\n")
    (root / "rock" / "._rock.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    config = root.parent / f"{root.name}.toml"
    config.write_text('[audio]\nclip_seconds = 4.0\n[augment]\nvariants = ["gain"]\n')
    return root, config


def _pipeline(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from workflows.cli import main; sys.exit(main())",
                           *argv], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _foreign_lines(stderr: str) -> list[str]:
    """Lines on stderr that are neither our log lines (and their continuation) nor a progress bar."""
    lines = [part.strip() for line in stderr.split("\n") for part in line.split("\r")]
    return [line for line in lines if line and not OUR_LINE.match(line)]


def test_the_tree_builds_every_audio_file_and_reports_every_other_file(tree, tmp_path):
    root, config = tree
    out = tmp_path / "store.zarr"
    build = _pipeline("build", "--dataset", "folder", "--root", str(root), "--out", str(out), "--workers", "0",
                      "--config", str(config), "--max-failures", "1.0")
    assert build.returncode == 0, build.stderr[-3000:]
    assert _foreign_lines(build.stderr) == [], build.stderr[-3000:]
    assert "Xing stream size" not in build.stderr + build.stdout
    assert "skipped     3 files that are not audio: 1 .jpg, 1 .m3u, 1 .txt" in build.stdout
    assert "skipped     1 file that is hidden" in build.stdout  # the ._ file, counted

    store = open_store(out)
    clips = store.clips
    audio = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.is_file() and p.suffix in AUDIO_EXTENSIONS and not p.name.startswith("."))
    assert len(audio) == len(AUDIO_EXTENSIONS) + 1
    assert sorted(clips["source"]) == audio  # every audio file is a clip
    failed = clips[clips["status"] != "ok"]
    assert (failed["reason"] != "").all()  # a quarantined one says why
    assert len(failed) == 0, failed[["source", "reason"]].to_string()
    assert dict(store.metadata.dataset.skipped) == {"that are not audio": NOT_AUDIO[2:] + NOT_AUDIO[:2],
                                                    "that are hidden (dot files and folders, e.g. macOS ._* "
                                                    "files)": ("rock/._rock.wav",)}

    info = _pipeline("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "skipped      3 files that are not audio: 1 .jpg, 1 .m3u, 1 .txt (e.g. rock/cover.jpg)" in info.stdout
    info_json = json.loads(_pipeline("info", str(out), "--json").stdout)
    assert info_json["skipped"]["that are not audio"] == 3
    assert sorted(info_json["dataset"]["skipped"]["that are not audio"]) == sorted(NOT_AUDIO)

    scan = _pipeline("scan", "--dataset", "folder", "--root", str(root), "--workers", "0", "--config", str(config))
    assert scan.returncode == 0, scan.stderr[-3000:]
    assert _foreign_lines(scan.stderr) == [], scan.stderr[-3000:]
    assert f"decodable   {len(audio)}" in scan.stdout
    assert "skipped 3 files that are not audio: 1 .jpg, 1 .m3u, 1 .txt (e.g. rock/cover.jpg)" in scan.stdout


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_added_extension_that_no_decoder_handles_is_quarantined_not_skipped(tree, tmp_path, workers):
    """With worker processes too: their warnings (the quarantined clips) come through our log format."""
    root, config = tree
    out = tmp_path / "store.zarr"
    build = _pipeline("build", "--dataset", "folder", "--root", str(root), "--out", str(out), "--workers", workers,
                      "--config", str(config), "--max-failures", "1.0", "--dataset-option", "extensions=+.txt,.jpg")
    assert build.returncode == 0, build.stderr[-3000:]
    assert _foreign_lines(build.stderr) == [], build.stderr[-3000:]
    assert len(re.findall(r"WARNING pipeline\.build[\w.]*: clip ", build.stderr)) == 2, build.stderr[-3000:]
    clips = open_store(out).clips.set_index("source")
    for source in ("rock/cover.jpg", "jazz/notes.txt"):
        assert clips.loc[source, "status"] == "failed"
        assert clips.loc[source, "reason"].startswith("not audio: "), clips.loc[source, "reason"]
    assert "skipped     1 file that is not audio: 1 .m3u (e.g. rock/playlist.m3u)" in build.stdout
