"""Audio front end: decode any file to a fixed-length mono float32 signal.

:func:`load_clip` turns one file (MP3, Sun .au, WAV of any PCM/float
subtype incl. WAVE_FORMAT_EXTENSIBLE and 64-bit integers, AIFF, FLAC,
OGG/Vorbis, Opus, WMA, AAC and whatever else libsndfile or ffmpeg read) into
a clip of exactly ``round(clip_seconds * sample_rate)`` samples: mono
(channel mean), resampled with soxr, the excerpt of a longer file (its centre
by default, as FMA's clips were cut), zero-padded when shorter, with the
count of real samples recorded.

Decoders
--------
libsndfile (``soundfile``) is the primary decoder; PyAV (``av``, which
bundles ffmpeg's decoders) is the fallback for what libsndfile cannot open or
decode. Only the excerpt is decoded (a seek, then ``n`` frames), so memory and
time are bounded by the clip length, not the file length. A seek that fails
(ffmpeg answers some FLAC files with EPERM) falls back to decoding from the
start and skipping to the excerpt.

Each backend reports its samples, its own sample rate and the length it
believes in, in its own units (libsndfile reads an Opus file from an 8 kHz
source at 8 kHz, ffmpeg at 48 kHz). Lengths cross from one backend to the
other only as seconds, each converted through its own rate; a frame count of
one is never used at the rate of the other.

One decoding contract
---------------------
Every failure is an :class:`~pipeline.errors.AudioError` whose ``category``
says why (see :data:`stores.failures.FAILURE_CATEGORIES`) and whose reason
says what was found and what to do; backend messages that are false about
the file (libsndfile calls an undecodable MP3 "not a regular file") are never
quoted. Any exception a backend raises while opening, seeking, reading,
decoding or converting is caught at the backend boundary and becomes a
fallback or a classified failure:

* missing or unreadable file, a directory: "unreadable";
* 0 bytes, or a header with no audio bytes after it: "empty";
* no container or codec that either backend decodes, no audio stream:
  "not audio", naming the container/codec found by our own header parser
  (:mod:`pipeline.dsp.containers`), e.g. "RIFF/WAVE with format tag 0x674F
  (Vorbis in WAV)" or "PCM samples 36 bits wide";
* NaN or Inf samples: "corrupt samples"; less than ``min_seconds``:
  "too short".

Truncation: one rule for every format
-------------------------------------
Where the container declares a length and clearly less decodes
(:data:`TRUNCATION_TOLERANCE_S` plus 0.1 %), the file was cut. A cut inside
its last unit (a shortfall under one Ogg page, MP3 frame or FLAC frame, or
under :data:`ENDS_EARLY_FRACTION` of the declared length) keeps the clip with
the length that decodes, and :attr:`DecodedClip.note` says it "ends early"
(the build stores that in the clip's reason column, ``pipeline info`` counts
it). Anything more is "truncated", with both figures in the reason. Where
nothing declares a length, what decodes is the truth. A header field out of
any possible range (a sample rate of 0 Hz or of an 80-bit float that
overflows, 0 channels) makes the file "not audio", naming the field. The
declarations (parsed in :mod:`pipeline.dsp.containers`):

* WAV/AIFF/AU: the data chunk size (COMM frame count) against the bytes
  present; streaming writers' 0 or 0xFFFFFFFF sizes declare nothing.
* FLAC: STREAMINFO's total samples against the end of the last frame whose
  header (CRC-8 checked) is in the file's last 64 KiB.
* Ogg Vorbis/Opus: the granule position of the page the file ends in (less
  Opus pre-skip) against the last complete page; a stream that ends on its
  end-of-stream page declares its final granule position. Only a cut inside
  the end-of-stream page can end early; a cut page before it declares only
  a lower bound of the stream's length, so such a file is truncated.
* MP3: the Xing/Info/VBRI header's frame count (less the LAME tag's encoder
  delay and padding). An MP3 has no other declaration, and the header alone
  cannot be trusted blindly, because MP3 files are cut without re-encoding:

  - FMA's clips were cut with ``ffmpeg -i full.mp3 -ss START -t 30 -acodec
    copy`` (FMA's ``creation.py``). ffmpeg's demuxer drops the source's
    Xing frame and its muxer writes a fresh Xing/Info header for the frames
    it copied, byte count included, so an FMA clip's header describes the
    clip, and its byte count matches the file size.
  - Bytes cut out of a file (``head -c``, an interrupted download) keep the
    original header: its byte count is then larger than the file. That file
    is truncated, and its real length comes from a packet scan (PyAV demuxes
    the MPEG frames without decoding them: 3 ms of CPU for 30 s).
  - A slice that does not start at the original first frame has no Xing
    header at all: nothing declares a length, the packet scan measures it.
  - A byte count smaller than the file (a concatenation, a stale header
    written for less audio) declares nothing we can check: the packet scan
    measures the length.

  So the packet scan runs only for MP3s without a header whose byte count
  matches the file; a consistent header is trusted as is (libsndfile's
  mpg123 trusts it too).

A decoder that delivers fewer frames than requested (more than
:data:`SHORT_READ_TOLERANCE_S` short) is replaced by PyAV for the same
excerpt; if that is short too and a declaration promised more, the file is
truncated, otherwise the decoded length is the file's length.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
import stat
import struct
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
import soundfile
import soxr

from pipeline.config import EXCERPTS
from pipeline.dsp import containers
from pipeline.dsp.containers import ContainerFacts
from pipeline.dsp.partial import PartialObject, SparseFile
from pipeline.errors import (ENDS_EARLY, AudioDecodeError, AudioError, ConfigError, InvalidSamplesError,
                             PartialReadError, TooShortError)

logger = logging.getLogger(__name__)

#: soxr quality presets accepted by ``resample_quality``.
RESAMPLE_QUALITIES: tuple[str, ...] = ("VHQ", "HQ", "MQ", "LQ", "QQ")
#: Two measures of an MP3's length (libsndfile's, the header's, the packet
#: scan's) may differ by the encoder delay and padding (< 3 MPEG frames,
#: ~0.08 s at 44.1 kHz); more is a disagreement.
MP3_LENGTH_TOLERANCE_S = 0.25
#: A read this much shorter than requested means the decoder stopped early.
SHORT_READ_TOLERANCE_S = 0.05
#: Decoding less than the declared length by more than this (plus 0.1 % of
#: it) means the file is truncated.
TRUNCATION_TOLERANCE_S = 0.05
#: A file whose decoded length falls short of its declared length by less than this fraction of
#: it, or by less than one container unit (one Ogg page, MP3 frame, FLAC frame), was cut inside
#: its last unit: it is kept with the length that decodes, and noted as ending early.
ENDS_EARLY_FRACTION = 0.01
#: PyAV seeks this far before the excerpt: an MP3 decoder needs the previous
#: frames' bit reservoir, so the first frames after a seek are discarded.
_SEEK_PREROLL_S = 0.2
#: Sample formats PyAV converts to numpy itself; others (s64, s64p) go through
#: an ``av.AudioResampler`` to float.
_NDARRAY_FORMATS = frozenset({"u8", "u8p", "s16", "s16p", "s32", "s32p", "flt", "fltp", "dbl", "dblp"})


#: What :func:`load_clip` decodes: a file path, the file's bytes, or a binary file object.
AudioSource = Union[str, Path, bytes, bytearray, memoryview, BinaryIO, PartialObject]


class _NamedBytesIO(io.BytesIO):
    """In-memory file bytes with the ``name`` that PyAV passes to ffmpeg (its extension is a format hint)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


class _Source:
    """Where the audio of one :func:`load_clip` call comes from, and what messages call it.

    ``str(source)`` is the display name, so a ``_Source`` goes wherever a
    path went into an error message or a log line. :meth:`for_decoder` gives
    each opener (header parser, libsndfile, PyAV) its own view from the
    start: the path as a string, a fresh in-memory file over the same bytes
    (``BytesIO`` shares them until written), or the caller's file object
    rewound.
    """

    __slots__ = ("name", "file_path", "data", "file")

    def __init__(self, name: str, file_path: Path | None = None, data: bytes | None = None,
                 file: BinaryIO | None = None) -> None:
        self.name = name
        self.file_path = file_path
        self.data = data
        # ``file`` is None exactly for a path on disk.
        self.file = file if file is not None else (None if data is None else _NamedBytesIO(data, name))

    @classmethod
    def of(cls, source: AudioSource, name: str | None) -> "_Source":
        if isinstance(source, (str, Path)):
            path = Path(source)
            return cls(str(path) if name is None else name, file_path=path)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls(name or "<in-memory audio>", data=bytes(source))
        if isinstance(source, PartialObject):
            return cls(name or source.name, file=source.open())
        if callable(getattr(source, "read", None)):
            shown = name or str(getattr(source, "name", "") or "<in-memory audio>")
            seekable = getattr(source, "seekable", None)
            if callable(seekable) and seekable():
                return cls(shown, file=source)
            return cls(shown, data=source.read())  # a stream: the decoders must seek
        raise ConfigError(f"load_clip source {type(source).__name__} must be a path, bytes or a binary "
                          "file object")

    def size(self) -> int:
        """Bytes of an in-memory source or file object (from the start)."""
        if self.data is not None:
            return len(self.data)
        return self.file.seek(0, io.SEEK_END)

    def for_decoder(self) -> str | BinaryIO:
        if self.file is None:
            return str(self.file_path)
        if self.data is not None:
            return _NamedBytesIO(self.data, self.name)
        self.file.seek(0)
        return self.file

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class DecodedClip:
    """A decoded, resampled, fixed-length clip.

    Attributes
    ----------
    samples : np.ndarray [shape=(clip_samples,), dtype=float32]
        Mono signal at the target rate, zero-padded after ``valid_samples``.
    valid_samples : int
        Samples of real audio at the start of ``samples``.
    source_seconds : float
        Duration of the whole source file in seconds.
    source_sample_rate : int
        Sample rate of the source file in Hz (of the decoder that produced
        the signal: an Opus file decoded by ffmpeg is at 48 kHz).
    source_channels : int
        Channels of the source file (all are averaged into one).
    decoder : str
        ``"soundfile"`` or ``"pyav"``: which decoder produced the signal.
    note : str
        "" or ``"ends early: ..."`` (:data:`pipeline.errors.ENDS_EARLY`): the
        file ends a little before its declared length (cut inside its last
        page or frame) and is kept with the length that decodes.
    """

    samples: np.ndarray
    valid_samples: int
    source_seconds: float
    source_sample_rate: int
    source_channels: int
    decoder: str
    note: str = ""


@dataclasses.dataclass(frozen=True)
class _Excerpt:
    """Mono excerpt at the decoder's rate, before resampling."""

    mono: np.ndarray  # float32 [shape=(n,)]
    sample_rate: int  # the decoder's own rate
    channels: int
    total_frames: int  # frames of the whole file at sample_rate
    decoder: str
    note: str = ""  # the ends-early note, if the decoder found the file short


@dataclasses.dataclass(frozen=True)
class _Length:
    """What is known of the file's length before decoding, in seconds.

    ``seconds`` is the best estimate (to place the excerpt); ``declared`` is
    the length a declaration promises (None: nothing declares one, so what
    decodes is the truth); ``source`` names where ``seconds`` came from.
    """

    seconds: float | None
    declared: float | None
    source: str
    note: str = ""  # the ends-early note, if the packet scan found the file short


def load_clip(source: AudioSource, *, sample_rate: int = 22050, clip_seconds: float = 30.0,
              min_seconds: float = 3.0, excerpt: str = "centre",
              resample_quality: str = "HQ", name: str | None = None) -> DecodedClip:
    """Decode the excerpt of ``source`` into a fixed-length mono float32 clip.

    Parameters
    ----------
    source : str, Path, bytes, PartialObject or binary file object
        Audio (any format libsndfile or ffmpeg reads): a file path, the whole
        file's bytes (e.g. fetched from object storage by
        :func:`pipeline.sources.fetch_many`), the header and excerpt of a
        long PCM object (:class:`~pipeline.dsp.partial.PartialObject`), or a
        seekable binary file object (read from its start; never closed here).
    sample_rate : int
        Output rate in Hz (soxr resampling from the decoder's rate).
    clip_seconds : float
        Output length in seconds; longer files give their excerpt of this
        length, shorter ones are zero-padded.
    min_seconds : float
        Shortest acceptable amount of real audio in seconds.
    excerpt : {"centre", "start"}
        Which part of a longer file is kept.
    resample_quality : {"VHQ", "HQ", "MQ", "LQ", "QQ"}
        soxr quality preset.
    name : str, optional
        What messages call the audio (e.g. its dataset-relative path or its
        URI); default: the path, the file object's ``name``, or
        "<in-memory audio>". Its extension, if any, is the decoders' format
        hint, as a path's is.

    Returns
    -------
    DecodedClip
        ``samples`` has ``round(clip_seconds * sample_rate)`` samples.

    Raises
    ------
    ConfigError
        An argument is invalid.
    AudioDecodeError
        ``category`` "unreadable" (missing, unreadable), "empty" (0 bytes,
        header only), "truncated" (less decodes than the container declares)
        or "not audio" (nothing here decodes it).
    InvalidSamplesError
        The decoded excerpt holds NaN or Inf samples ("corrupt samples").
    TooShortError
        Less than ``min_seconds`` of audio ("too short").
    """
    _check_arguments(sample_rate, clip_seconds, min_seconds, excerpt, resample_quality)
    path = _Source.of(source, name)
    try:
        facts, note = _inspect(path)
        part = _decode_excerpt(path, facts, clip_seconds, excerpt)
    except AudioError:
        _whole_bytes_were_read(path)  # a verdict on unfetched bytes is no verdict
        raise
    _whole_bytes_were_read(path)
    mono = part.mono
    # A float64 sum is finite exactly when no sample is NaN or Inf (float32
    # values cannot overflow it); the element-wise test runs only on failure.
    if not math.isfinite(float(np.sum(mono, dtype=np.float64))):
        bad = ~np.isfinite(mono)
        first = int(np.argmax(bad))
        raise InvalidSamplesError(
            path, f"{int(bad.sum())} NaN/Inf samples in the decoded audio (first at "
                  f"{(first / part.sample_rate):.3f} s into the excerpt); re-export the file "
                  "or exclude it")
    if part.sample_rate != sample_rate and len(mono):
        mono = soxr.resample(mono, part.sample_rate, sample_rate, quality=resample_quality)
    clip_samples = int(round(clip_seconds * sample_rate))
    valid = min(len(mono), clip_samples)
    min_samples = int(round(min_seconds * sample_rate))
    if valid < min_samples:
        raise TooShortError(
            path, f"{valid / sample_rate:.2f} s of audio, at least {min_seconds:g} s "
                  "(one analysis window) needed; exclude the file or lower window.window_seconds")
    out = np.zeros(clip_samples, np.float32)
    out[:valid] = mono[:valid]
    return DecodedClip(out, valid, part.total_frames / part.sample_rate, part.sample_rate,
                       part.channels, part.decoder, part.note or note)


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------
def _whole_bytes_were_read(path: _Source) -> None:
    """Raise PartialReadError when a decoder read bytes a partly fetched object does not hold."""
    if isinstance(path.file, SparseFile) and path.file.holes_read:
        raise PartialReadError(f"{path}: the decoder read bytes outside the fetched ranges; fetch it whole")


def _check_arguments(sample_rate: int, clip_seconds: float, min_seconds: float, excerpt: str,
                     resample_quality: str) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ConfigError(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
    if not (isinstance(clip_seconds, (int, float)) and math.isfinite(clip_seconds) and clip_seconds > 0):
        raise ConfigError(f"clip_seconds={clip_seconds!r} must be a positive finite number")
    if not (isinstance(min_seconds, (int, float)) and 0 <= min_seconds <= clip_seconds):
        raise ConfigError(f"min_seconds={min_seconds!r} must be in [0, clip_seconds={clip_seconds}]")
    if excerpt not in EXCERPTS:
        raise ConfigError(f"excerpt={excerpt!r} is not one of {', '.join(map(repr, EXCERPTS))}")
    if resample_quality not in RESAMPLE_QUALITIES:
        raise ConfigError(
            f"resample_quality={resample_quality!r} is not one of {', '.join(map(repr, RESAMPLE_QUALITIES))}")


@functools.cache
def _backend_errors() -> tuple[type[BaseException], ...]:
    """Every exception type soundfile or PyAV raise for a file they cannot handle.

    PyAV's errors derive from ``av.FFmpegError`` and often also from OSError
    (``av.error.PermissionError`` from a seek, EOFError) or ValueError (an
    unsupported sample format in ``to_ndarray``); soundfile raises
    LibsndfileError (a RuntimeError), TypeError and ValueError.
    """
    import av  # PyAV (ffmpeg): the fallback decoder, loaded when libsndfile cannot read a file

    return (av.FFmpegError, soundfile.LibsndfileError, RuntimeError, OSError, EOFError,
            ValueError, TypeError, IndexError, OverflowError, NotImplementedError)


def _inspect(path: _Source) -> tuple[ContainerFacts, str]:
    """The file's header facts, and the ends-early note if the bytes present fall a little short of
    the declared length; unreadable, empty and cut-short files fail here, before decoding."""
    path = _Source.of(path, None) if not isinstance(path, _Source) else path
    if path.file is None:
        try:
            info = path.file_path.stat()
        except OSError as exc:
            raise AudioDecodeError(path, f"cannot be read ({exc.strerror or exc}); check the path "
                                         "and its permissions", "unreadable") from exc
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise AudioDecodeError(path, f"is {kind}, not an audio file; check the path", "unreadable")
        size = info.st_size
    else:
        size = path.size()
    if size == 0:
        raise AudioDecodeError(path, "0 bytes; re-download the file or exclude it", "empty")
    try:
        facts = containers.probe(path.for_decoder())
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot be read ({exc.strerror or exc}); check the path "
                                     "and its permissions", "unreadable") from exc
    except (struct.error, ValueError, IndexError) as exc:  # a header cut inside a field
        logger.debug("%s: header parse stopped: %s", path, exc)
        facts = ContainerFacts(description="a damaged header")
    if facts.impossible:
        raise AudioDecodeError(path, f"{facts.description}: {facts.impossible}; its header is damaged, "
                                     "re-export the file or exclude it", "not audio")
    if facts.no_audio_bytes:
        declares = (f" (it declares {facts.declared_seconds:.2f} s)"
                    if facts.declared_seconds else "")
        raise AudioDecodeError(path, f"{facts.description}: only a header, no audio after "
                                     f"it{declares}; re-export the file or exclude it", "empty")
    note = ""
    if facts.declared_seconds is not None and facts.present_seconds is not None:
        note = _shortfall(path, facts, facts.present_seconds)
    return facts, note


def _clearly_short(declared_s: float, decoded_s: float) -> bool:
    """Whether ``decoded_s`` falls clearly short of ``declared_s`` (both in seconds)."""
    return decoded_s < declared_s - TRUNCATION_TOLERANCE_S - 0.001 * declared_s


def _shortfall(path: _Source, facts: ContainerFacts, decoded_s: float, declared_s: float | None = None,
               by: str | None = None) -> str:
    """What decoding ``decoded_s`` seconds of a file declaring ``declared_s`` means.

    "" when it is not clearly short; the ends-early note when the shortfall
    is under one container unit (:attr:`ContainerFacts.end_unit_seconds`) or
    :data:`ENDS_EARLY_FRACTION` of the declared length (the file was cut
    inside its last page or frame: kept with the length that decodes); a
    "truncated" error otherwise, and always where the declaration is only a
    lower bound of the stream's length.
    """
    declared_s = facts.declared_seconds if declared_s is None else declared_s
    by = by or facts.declared_by
    if not _clearly_short(declared_s, decoded_s):
        return ""
    short = declared_s - decoded_s
    # A decoder drops the whole unit a cut lands in, so up to one whole unit (and a millisecond of
    # rounding) may be missing.
    within_unit = short <= facts.end_unit_seconds + 1e-3
    if facts.declares_whole and (within_unit or short < ENDS_EARLY_FRACTION * declared_s):
        unit = f"at most its last unit of {facts.end_unit_seconds * 1000:.0f} ms" \
            if within_unit else f"{short / declared_s:.2%} of it"
        return (f"{ENDS_EARLY}: {by} declares {declared_s:.2f} s, {decoded_s:.2f} s decode ({unit} "
                f"missing: cut inside its last page or frame); kept with the length that decodes")
    raise _truncated(path, facts, decoded_s, declared_s, by)


def _truncated(path: _Source, facts: ContainerFacts, decoded_s: float, declared_s: float | None = None,
               by: str | None = None) -> AudioDecodeError:
    declared_s = facts.declared_seconds if declared_s is None else declared_s
    by = by or facts.declared_by
    return AudioDecodeError(
        path, f"{by} declares {declared_s:.2f} s of audio but only {decoded_s:.2f} s decode "
              f"({decoded_s / max(declared_s, 1e-9):.0%}; {facts.description}); re-download the "
              "file or exclude it", "truncated")


def _not_audio(path: _Source, facts: ContainerFacts, found: str) -> AudioDecodeError:
    """A "not audio" error naming what the header parser found and what the decoders said."""
    what = facts.description or "a file"
    if facts.problem:
        what = f"{what}: {facts.problem}"
        advice = "convert it to a standard format (WAV 16/24-bit, FLAC, MP3) or exclude it"
    else:
        advice = "check that it is audio and not a renamed or damaged file, or exclude it"
    return AudioDecodeError(path, f"{what}; {found}; {advice}", "not audio")


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------
def excerpt_window(total: int, src_rate: int, clip_seconds: float, excerpt: str) -> tuple[int, int]:
    """(first frame, frame count) of the excerpt of a ``total``-frame file."""
    want = int(math.ceil(clip_seconds * src_rate))
    if total <= want:
        return 0, total
    return ((total - want) // 2 if excerpt == "centre" else 0), want


def _known_length(path: _Source, facts: ContainerFacts) -> _Length:
    """The file's length before decoding (see the module docstring on MP3)."""
    path = _Source.of(path, None) if not isinstance(path, _Source) else path
    if facts.length_trusted:
        return _Length(facts.declared_seconds, facts.declared_seconds, facts.declared_by)
    if facts.container == "MP3":
        scanned = _scan_seconds(path)
        if scanned is None:
            return _Length(None, None, "")
        if facts.declared_seconds is not None:
            note = _shortfall(path, facts, scanned)
            if note:
                return _Length(scanned, None, "the MPEG frames (packet scan)", note)
            if abs(scanned - facts.declared_seconds) <= MP3_LENGTH_TOLERANCE_S:
                return _Length(scanned, facts.declared_seconds, facts.declared_by)
        return _Length(scanned, None, "the MPEG frames (packet scan)")
    if facts.present_seconds is not None:  # e.g. a streaming WAV: the bytes are the truth
        return _Length(facts.present_seconds, None, "the bytes present")
    return _Length(None, facts.declared_seconds, facts.declared_by)


def _decode_excerpt(path: _Source, facts: ContainerFacts, clip_seconds: float, excerpt: str) -> _Excerpt:
    """Decode the excerpt with libsndfile, falling back to PyAV (see module docstring)."""
    path = _Source.of(path, None) if not isinstance(path, _Source) else path
    length = _known_length(path, facts)
    errors = _backend_errors()
    try:
        sf = soundfile.SoundFile(path.for_decoder())
    except errors as exc:
        # Not a format libsndfile knows (or not audio at all): ffmpeg decides.
        # (libsndfile's message is not quoted: for an MP3 it cannot parse it
        # says the file "does not exist or is not a regular file".)
        logger.debug("%s: libsndfile cannot open it: %s", path, exc)
        return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length,
                            why="libsndfile cannot open it")
    with sf:
        try:
            rate, channels, frames, fmt = sf.samplerate, sf.channels, sf.frames, sf.format
        except errors as exc:
            logger.debug("%s: libsndfile reports no stream facts: %s", path, exc)
            rate = 0
        if rate > 0 and containers.rate_out_of_range(rate, "header"):
            raise _not_audio(path, facts, "libsndfile reads a sample rate of "
                                          f"{rate} Hz from it, which no audio has")
        if rate <= 0 or fmt == "RAW":
            # RAW: libsndfile guessed header-less audio from the extension
            # (any bytes named .au read as 8 kHz u-law): nothing to trust.
            return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length,
                                why="libsndfile finds no audio header")
        believed = frames / rate  # libsndfile's length, in its own rate
        if length.seconds is not None and abs(believed - length.seconds) > MP3_LENGTH_TOLERANCE_S:
            logger.warning("%s: libsndfile reports %.2f s but %s says %.2f s; decoding with PyAV",
                           path, believed, length.source, length.seconds)
            return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length,
                                why="libsndfile's length disagrees")
        if frames <= 0:
            raise AudioDecodeError(path, f"{facts.description or 'the file'}: a header and no "
                                         "audio samples; re-export the file or exclude it", "empty")
        if length.seconds is None:
            length = dataclasses.replace(length, seconds=believed, source="libsndfile")
        start, count = excerpt_window(frames, rate, clip_seconds, excerpt)
        try:
            if start:
                sf.seek(start)
            block = sf.read(count, dtype="float32", always_2d=True)
        except errors as exc:
            logger.warning("%s: libsndfile failed while decoding (%s); retrying with PyAV", path, exc)
            return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length,
                                why="libsndfile failed while decoding")
    if len(block) < count - SHORT_READ_TOLERANCE_S * rate:
        logger.warning("%s: libsndfile stopped after %d of %d frames without an error; "
                       "retrying with PyAV", path, len(block), count)
        return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length,
                            why="libsndfile stopped early")
    return _Excerpt(_downmix(block), rate, channels, frames, "soundfile", length.note)


def _downmix(block: np.ndarray) -> np.ndarray:
    """Channel mean of ``block`` [shape=(n, channels)], float32 [shape=(n,)].

    Column by column: numpy's ``mean(axis=1)`` over a few interleaved
    channels is ~10x slower than strided vector additions.
    """
    channels = block.shape[1]
    mono = np.array(block[:, 0], dtype=np.float32)
    if channels > 1:
        for c in range(1, channels):
            mono += block[:, c]
        mono *= np.float32(1.0 / channels)
    return mono


def _av_open(path: _Source, facts: ContainerFacts, why: str) -> tuple[Any, Any]:
    """(container, first audio stream with a decoder) of ``path``, or a "not audio" error."""
    path = _Source.of(path, None) if not isinstance(path, _Source) else path
    import av  # PyAV (ffmpeg): the fallback decoder, loaded when libsndfile cannot read a file

    try:
        container = av.open(path.for_decoder())
    except _backend_errors() as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError)) or (
                isinstance(exc, PermissionError) and not isinstance(exc, av.FFmpegError)):
            raise AudioDecodeError(path, f"cannot be read ({exc}); check the path and its "
                                         "permissions", "unreadable") from exc
        message = getattr(exc, "strerror", None) or str(exc)
        raise _not_audio(path, facts, f"{why}, and ffmpeg cannot open it ({message})") from exc
    try:
        streams = list(container.streams)
        audio = [s for s in streams if s.type == "audio"]
        if not audio:
            found = ", ".join(f"{s.type} ({_codec_name(s)})" for s in streams) or "no streams"
            raise _not_audio(path, facts, f"it holds no audio stream (ffmpeg finds {found})")
        for stream in audio:
            ctx = stream.codec_context
            if ctx is not None and ctx.sample_rate and _codec_name(stream) not in ("", "none"):
                if containers.rate_out_of_range(ctx.sample_rate, "header"):
                    raise _not_audio(path, facts, f"ffmpeg reads a sample rate of {ctx.sample_rate} Hz "
                                                  "from it, which no audio has")
                return container, stream
        raise _not_audio(path, facts, f"{why}, and ffmpeg has no decoder for its audio "
                                      f"(codec {_codec_name(audio[0]) or 'unknown'})")
    except BaseException:
        container.close()
        raise


def _codec_name(stream: Any) -> str:
    try:
        ctx = stream.codec_context
        return "" if ctx is None else (ctx.name or "")
    except _backend_errors():
        return ""


def _scan_seconds(path: _Source) -> float | None:
    """Seconds of the first audio stream from its packet timestamps, without decoding.

    The independent length measure of an MP3: every MPEG frame is a packet
    with its own duration, so the end of the last packet is the end of the
    audio that is really in the file, whatever the header claims. None when
    PyAV cannot demux the file.
    """
    path = _Source.of(path, None) if not isinstance(path, _Source) else path
    try:
        container, stream = _av_open(path, ContainerFacts(), "packet scan")
    except AudioDecodeError as exc:
        logger.debug("%s: no packet scan (%s)", path, exc)
        return None
    with container:
        return _packet_seconds(container, stream)


def _packet_seconds(container: Any, stream: Any) -> float | None:
    """End of the last packet of ``stream`` in seconds from the stream start, or None.

    Packets without a duration count by their timestamp (WMA Pro's ASF
    packets carry none); without timestamps, the container's declared
    duration is used, if any.
    """
    start = stream.start_time or 0
    time_base = stream.time_base
    end = None
    try:
        for packet in container.demux(stream):
            pts = packet.pts
            if pts is None:
                continue
            stop = pts + (packet.duration or 0)
            if end is None or stop > end:
                end = stop
    except _backend_errors() as exc:
        logger.debug("packet scan stopped: %s", exc)
    if end is not None and time_base and end > start:
        return float((end - start) * time_base)
    if stream.duration and time_base:
        return float(stream.duration * time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


class _FrameConverter:
    """Mono float32 [shape=(samples,)] of decoded PyAV frames of any sample format."""

    def __init__(self) -> None:
        self._resampler: Any = None

    def __call__(self, frame: Any) -> np.ndarray:
        if frame.format.name not in _NDARRAY_FORMATS:
            frame = self._to_float(frame)
        data = frame.to_ndarray()
        channels = frame.layout.nb_channels
        if not frame.format.is_planar:
            data = data.reshape(-1, channels).T
        if data.dtype == np.uint8:
            data = (data.astype(np.float32) - 128.0) / 128.0
        elif np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
        else:
            data = data.astype(np.float32, copy=False)
        return data[0] if channels == 1 else data.mean(axis=0, dtype=np.float32)

    def _to_float(self, frame: Any) -> Any:
        """``frame`` as planar float (e.g. from s64), same rate and layout."""
        import av  # PyAV (ffmpeg): the fallback decoder, loaded when libsndfile cannot read a file

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout,
                                                rate=frame.sample_rate)
        out = self._resampler.resample(frame)
        if len(out) != 1:
            raise ValueError(f"sample format conversion of {frame.format.name} gave {len(out)} frames")
        converted = out[0]
        converted.pts = frame.pts
        return converted


def _seek(container: Any, offset: int, stream: Any) -> None:
    """Seek ``container`` to ``offset`` (in ``stream.time_base``), backwards to a key frame."""
    container.seek(offset, stream=stream, backward=True)


def _decode_pyav(path: _Source, clip_seconds: float, excerpt: str, *, facts: ContainerFacts,
                 length: _Length, why: str, seek: bool = True) -> _Excerpt:
    """Decode the excerpt with PyAV (ffmpeg).

    Parameters
    ----------
    facts : ContainerFacts
        The header facts (named in error messages).
    length : _Length
        The file's length in seconds as known before decoding (None: scan the
        packets); ``length.declared`` is what a declaration promises:
        decoding clearly less means the file is truncated.
    why : str
        Why libsndfile was not used (goes into error messages).
    seek : bool
        Seek to the excerpt (False: decode from the start and skip to it,
        for streams whose seek fails or whose frames carry no timestamps
        after a seek).
    """
    path = _Source.of(path, None) if not isinstance(path, _Source) else path
    errors = _backend_errors()
    seconds = length.seconds
    if seconds is None:
        container, stream = _av_open(path, facts, why)
        with container:
            seconds = _packet_seconds(container, stream)
        if seconds is None:
            raise _not_audio(path, facts, f"{why}, and ffmpeg finds no audio packets in it")
        length = dataclasses.replace(length, seconds=seconds, source="the packet scan")
    container, stream = _av_open(path, facts, why)
    with container:
        ctx = stream.codec_context
        rate, channels = ctx.sample_rate, ctx.channels
        total = int(round(seconds * rate))  # the length in this decoder's own rate
        if total <= 0:
            raise AudioDecodeError(path, f"{facts.description or 'the file'}: no audio samples "
                                         f"({why}); re-export the file or exclude it", "empty")
        first, count = excerpt_window(total, rate, clip_seconds, excerpt)
        start_time, time_base = stream.start_time or 0, stream.time_base
        seeked = seek_failed = False
        if first and seek:
            target = first / rate - _SEEK_PREROLL_S
            if target > 0:
                try:
                    _seek(container, int(target / time_base) + start_time, stream)
                    seeked = True
                except errors as exc:
                    logger.debug("%s: seek failed (%s); decoding from the start", path, exc)
                    seek_failed = True
        if not seek_failed:
            mono, filled, next_pos = _decode_frames(path, container, stream, rate, first, count, seeked)
    if seek_failed:
        return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length, why=why,
                            seek=False)
    if seeked and next_pos is None and filled == 0:
        logger.debug("%s: no timestamps after seeking; decoding from the start", path)
        return _decode_pyav(path, clip_seconds, excerpt, facts=facts, length=length, why=why,
                            seek=False)
    decoded_s = (first + filled) / rate
    if filled == 0:
        if length.declared:
            raise _truncated(path, facts, decoded_s, length.declared, length.source)
        raise _not_audio(path, facts, f"{why}, and ffmpeg decodes no audio from it")
    note = length.note
    if filled < count - SHORT_READ_TOLERANCE_S * rate:
        if length.declared is not None:
            note = _shortfall(path, facts, decoded_s, length.declared, length.source) or note
        if not note:
            logger.warning("%s: decoded %.2f s where %s says %.2f s; keeping what decodes",
                           path, decoded_s, length.source, seconds)
        # Without a declared length (or one that the file misses by its last unit), what the
        # decoder delivered is the truth.
        total = first + filled
    return _Excerpt(mono[:filled], rate, channels, total, "pyav", note)


def _decode_frames(path: _Source, container: Any, stream: Any, rate: int, first: int, count: int,
                   seeked: bool) -> tuple[np.ndarray, int, int | None]:
    """Decode frames ``first`` to ``first + count`` (at ``rate``) of ``stream``.

    Returns (mono [shape=(count,)], frames filled from the start of it, the
    position after the last decoded frame or None when no frame said where
    it was after a seek). Damaged packets are skipped; a demuxer that cannot
    go on ends the decoding.
    """
    errors = _backend_errors()
    start_time = stream.start_time or 0
    time_base = stream.time_base
    to_mono = _FrameConverter()
    mono = np.zeros(count, np.float32)
    filled = 0
    next_pos: int | None = None
    damaged = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except errors as exc:
            # The demuxer cannot go on (cut or damaged container): what
            # decoded so far is what the file holds.
            logger.debug("%s: demuxing stopped: %s", path, exc)
            break
        try:
            frames = packet.decode()
        except errors as exc:
            # A damaged packet: ffmpeg resynchronises on the next one.
            damaged += 1
            logger.debug("%s: packet decode error: %s", path, exc)
            continue
        done = False
        for frame in frames:
            try:
                data = to_mono(frame)
            except errors as exc:
                damaged += 1
                logger.debug("%s: frame conversion error: %s", path, exc)
                continue
            if frame.pts is not None:
                pos = int(round((frame.pts - start_time) * time_base * rate))
            elif next_pos is None and seeked:
                # Nothing says where decoding resumed: the caller counts from the start instead.
                break
            else:
                pos = next_pos if next_pos is not None else 0
            next_pos = pos + len(data)
            lo, hi = max(pos, first), min(pos + len(data), first + count)
            if hi > lo:
                mono[lo - first:hi - first] = data[lo - pos:hi - pos]
                filled = max(filled, hi - first)
            if pos + len(data) >= first + count:
                done = True
                break
        if done or (seeked and next_pos is None and frames):
            break
    if damaged:
        logger.warning("%s: ffmpeg skipped %d damaged packet(s) or frame(s)", path, damaged)
    return mono, filled, next_pos
