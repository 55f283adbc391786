"""The audio-extension list (pipeline/dsp/formats.py): every listed extension really decodes,
from a file made here (tests/format_files.py), and the ``extensions=`` option's syntax."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.dsp.audio import load_clip
from pipeline.dsp.formats import AUDIO_EXTENSIONS, LEFT_OUT, audio_extension, parse_extensions
from pipeline.errors import ConfigError
from tests.format_files import FORMAT_WRITERS, SECONDS, make_format_files

SR = 22050


@functools.cache
def _files() -> dict[str, Path]:
    folder = Path(tempfile.mkdtemp(prefix="formats_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return make_format_files(folder)


def test_every_listed_extension_has_a_test_file_and_nothing_else_does():
    assert set(FORMAT_WRITERS) == set(AUDIO_EXTENSIONS)
    assert not set(LEFT_OUT) & set(AUDIO_EXTENSIONS)
    assert {".oga", ".wma", ".aac", ".wv", ".caf", ".aifc", ".webm", ".weba", ".mka", ".ac3", ".eac3", ".mp2",
            ".dsf", ".dff", ".m4b", ".amr", ".voc", ".w64", ".rf64", ".8svx"} <= AUDIO_EXTENSIONS


@pytest.mark.parametrize("ext", sorted(FORMAT_WRITERS))
def test_every_listed_extension_decodes_to_its_length(ext):
    clip = load_clip(_files()[ext], sample_rate=SR, clip_seconds=30.0, min_seconds=1.0)
    # Lossy codecs add up to a frame of encoder delay/padding (AMR, AAC, MP2, WMA: < 50 ms).
    assert abs(clip.valid_samples / SR - SECONDS) <= 0.06, FORMAT_WRITERS[ext][0]
    assert np.isfinite(clip.samples).all()
    audio = clip.samples[: clip.valid_samples]
    assert np.abs(audio).max() > 0.1  # a real signal, not silence
    # The 440 Hz tone is where the energy is, whatever the codec did to it.
    spectrum = np.abs(np.fft.rfft(audio[SR // 2: SR // 2 + SR]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2, FORMAT_WRITERS[ext][0]


@pytest.mark.parametrize("name, ext", [("a/Song.FLAC", ".flac"), ("x.tar.gz", ".gz"), ("README", ""),
                                       (".hidden", ""), ("dir.d/file", ""), ("tone.8svx", ".8svx")])
def test_audio_extension(name, ext):
    assert audio_extension(name) == ext


def test_extensions_option_replaces_or_extends_the_list():
    assert parse_extensions(None) == AUDIO_EXTENSIONS
    assert parse_extensions("") == AUDIO_EXTENSIONS
    assert parse_extensions(".wav, FLAC") == {".wav", ".flac"}
    assert parse_extensions("+.ape,mpc") == AUDIO_EXTENSIONS | {".ape", ".mpc"}
    assert parse_extensions([".wav", ".aiff"]) == {".wav", ".aiff"}
    for bad in ("+", ",", "+.a/b", ".*"):
        with pytest.raises(ConfigError, match="extensions="):
            parse_extensions(bad)
