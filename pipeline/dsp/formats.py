"""Which file names are audio: the extensions our decoders really decode.

One list, next to the decoders it describes (:mod:`pipeline.dsp.audio`):
libsndfile (``soundfile``) and the ffmpeg that PyAV bundles. Every extension
in :data:`AUDIO_EXTENSIONS` is decoded by a test from a file made in the test
(``tests/pipeline/test_formats.py``: PyAV's encoders and muxers, libsndfile's
writers, or a hand-written header where nothing bundled writes the format).
The folder-shaped dataset adapters take every file with one of these
extensions as a clip; every other file is skipped and reported, never
dropped in silence.

Left out, each for a reason (:data:`LEFT_OUT`): a user whose collection
holds them adds them with ``--dataset-option extensions=+.ape``; each such
file is then a clip that decodes or is quarantined with its reason.
"""

from __future__ import annotations

from pipeline.errors import ConfigError

#: File extensions (lower case, with the dot) taken as audio, with what they hold.
AUDIO_FORMATS: dict[str, str] = {
    ".wav": "RIFF/WAVE (PCM, float, A-law, mu-law, ADPCM, MP3 in WAV)",
    ".mp3": "MPEG-1/2 Layer III",
    ".mp2": "MPEG-1/2 Layer II",
    ".flac": "FLAC",
    ".ogg": "Ogg (Vorbis, Opus, FLAC)",
    ".oga": "Ogg audio",
    ".opus": "Ogg Opus",
    ".au": "Sun/NeXT .au (GTZAN)",
    ".aiff": "AIFF",
    ".aif": "AIFF",
    ".aifc": "AIFF-C (compressed or float AIFF)",
    ".m4a": "MPEG-4 audio (AAC, ALAC)",
    ".m4b": "MPEG-4 audio book (AAC)",
    ".aac": "AAC in ADTS",
    ".wma": "Windows Media Audio in ASF",
    ".wv": "WavPack",
    ".caf": "Apple Core Audio Format",
    ".webm": "WebM (Opus, Vorbis)",
    ".weba": "WebM audio",
    ".mka": "Matroska audio",
    ".ac3": "Dolby Digital (AC-3)",
    ".eac3": "Dolby Digital Plus (E-AC-3)",
    ".amr": "Adaptive Multi-Rate (speech)",
    ".voc": "Creative Voice",
    ".w64": "Sony Wave64",
    ".rf64": "RF64 (WAV over 4 GiB)",
    ".8svx": "Amiga IFF 8SVX",
    ".dsf": "DSD stream file (Sony)",
    ".dff": "DSD interchange file format (DSDIFF)",
}

#: Extensions people use for audio that are not in the list, and why.
LEFT_OUT: dict[str, str] = {
    ".ape": "Monkey's Audio: ffmpeg decodes it, but nothing bundled here writes it, so no test can "
            "make one and show that it decodes",
    ".mpc": "Musepack: ffmpeg decodes it, but nothing bundled here writes it (no test file can be made)",
    ".tak": "TAK: ffmpeg decodes it, but nothing bundled here writes it (no test file can be made)",
    ".spx": "Ogg Speex: ffmpeg decodes it, but nothing bundled here encodes Speex (no libspeex) and "
            "a CELP bitstream is beyond a hand-written test file",
    ".mkv": "Matroska is mostly video: taking it would turn a folder of films into clips of their "
            "sound tracks (audio-only Matroska is .mka)",
}

#: The extensions taken as audio, lower case with the dot.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(AUDIO_FORMATS)


def audio_extension(name: str) -> str:
    """The lower-case extension of file ``name`` with its dot ("" if none): ``"Song.FLAC"`` -> ``".flac"``."""
    base = name.rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return f".{ext.lower()}" if dot and stem else ""


def parse_extensions(spec: str | list[str] | tuple[str, ...] | None) -> frozenset[str]:
    """The audio extensions a ``extensions=`` dataset option asks for.

    ``None`` or ``""``: :data:`AUDIO_EXTENSIONS`. A comma-separated list
    replaces the list (``".wav,.flac"``); a leading ``+`` extends it
    (``"+.ape,.mpc"``). Dots are optional and case is ignored (``"+APE"``).

    Raises
    ------
    ConfigError
        An empty list, or an entry that is not a plain extension.
    """
    if isinstance(spec, (list, tuple)):  # a list given as [".wav", ".flac"]
        spec = ",".join(str(item) for item in spec)
    if spec is None or not str(spec).strip():
        return AUDIO_EXTENSIONS
    text = str(spec).strip()
    extend = text.startswith("+")
    items = [item.strip() for item in text.lstrip("+").split(",") if item.strip()]
    if not items:
        raise ConfigError(f"extensions={spec!r} names no extension; give e.g. extensions=.wav,.flac "
                          "(only these) or extensions=+.ape (the default list and .ape)")
    chosen = set()
    for item in items:
        ext = "." + item.lower().lstrip(".")
        if len(ext) < 2 or any(c in ext[1:] for c in "./\\ *?"):
            raise ConfigError(f"extensions={spec!r}: {item!r} is not a file extension; give e.g. "
                              "extensions=+.ape or extensions=.wav,.flac")
        chosen.add(ext)
    return frozenset(AUDIO_EXTENSIONS | chosen) if extend else frozenset(chosen)
