"""Audio front end: decode any file to a fixed-length mono float32 signal.

:func:`load_clip` turns one file (MP3, Sun .au, WAV of any PCM/float
subtype incl. WAVE_FORMAT_EXTENSIBLE, FLAC, OGG/Vorbis, Opus, and whatever
else libsndfile or ffmpeg read) into a clip of exactly
``round(clip_seconds * sample_rate)`` samples: mono (channel mean),
resampled with soxr, the excerpt of a longer file (its centre by default, as
FMA's clips were cut), zero-padded when shorter, with the count of real
samples recorded.

Decoders
--------
libsndfile (``soundfile``) is the primary decoder; PyAV (``av``, which
bundles ffmpeg's decoders) is the fallback for what libsndfile cannot open or
decode. Only the excerpt is decoded (a seek, then ``n`` frames), so memory and
time are bounded by the clip length, not the file length.

Never a silently wrong signal
-----------------------------
* MP3 carries no authoritative length: libsndfile (mpg123) trusts the Xing/
  Info header, which in clips cut from a longer stream without re-encoding
  (FMA) still describes the whole track, and it then stops early without an
  error. So for every MP3 the length libsndfile reports is cross-checked
  against an independent measure, the sum of the MPEG frame (packet)
  durations that PyAV demuxes without decoding (measured: 3 ms of CPU for
  30 s at 44.1 kHz, 35 ms for 10 minutes); when
  they disagree by more than :data:`MP3_LENGTH_TOLERANCE_S` a warning is
  logged and PyAV decodes the clip with the scanned length.
* Any decoder that returns fewer frames than it promised (more than
  :data:`SHORT_READ_TOLERANCE_S` short) is replaced by PyAV for the same
  excerpt, with a warning.
* WAV and AU headers declare their data size; a file that holds less is
  truncated (libsndfile would quietly shorten it) and raises
  :class:`~pipeline.errors.AudioDecodeError`. FLAC declares its sample count;
  if neither decoder reaches it, the file is truncated too. (An MP3 or OGG
  cut short is just a shorter file: nothing declares otherwise.)
* libsndfile's guess of header-less RAW audio (it reads any bytes named
  ``.au`` as 8 kHz u-law) is not trusted: such files go to ffmpeg, which
  rejects non-audio.
* Empty files, header-only files (no samples), non-audio files and files
  without an audio stream raise :class:`~pipeline.errors.AudioDecodeError`;
  NaN or Inf samples raise :class:`~pipeline.errors.InvalidSamplesError`;
  fewer than ``min_seconds`` of audio raise
  :class:`~pipeline.errors.TooShortError` ("too short"). Every error names
  the file and the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr

from pipeline.config import EXCERPTS
from pipeline.errors import AudioDecodeError, ConfigError, InvalidSamplesError, TooShortError

logger = logging.getLogger(__name__)

#: soxr quality presets accepted by ``resample_quality``.
RESAMPLE_QUALITIES: tuple[str, ...] = ("VHQ", "HQ", "MQ", "LQ", "QQ")
#: libsndfile's and the packet scan's MP3 lengths may differ by the encoder
#: delay and padding (< 3 MPEG frames, ~0.08 s at 44.1 kHz); more is a
#: disagreement.
MP3_LENGTH_TOLERANCE_S = 0.25
#: A read this much shorter than requested means the decoder stopped early.
SHORT_READ_TOLERANCE_S = 0.05
#: PyAV seeks this far before the excerpt: an MP3 decoder needs the previous
#: frames' bit reservoir, so the first frames after a seek are discarded.
_SEEK_PREROLL_S = 0.2


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
        Sample rate of the source file in Hz.
    source_channels : int
        Channels of the source file (all are averaged into one).
    decoder : str
        ``"soundfile"`` or ``"pyav"``: which decoder produced the signal.
    """

    samples: np.ndarray
    valid_samples: int
    source_seconds: float
    source_sample_rate: int
    source_channels: int
    decoder: str


@dataclasses.dataclass(frozen=True)
class _Excerpt:
    """Mono excerpt at the source rate, before resampling."""

    mono: np.ndarray  # float32 [shape=(n,)]
    sample_rate: int
    channels: int
    total_frames: int  # frames of the whole file at sample_rate
    decoder: str


def load_clip(path: str | Path, *, sample_rate: int = 22050, clip_seconds: float = 30.0,
              min_seconds: float = 3.0, excerpt: str = "centre",
              resample_quality: str = "HQ") -> DecodedClip:
    """Decode the excerpt of ``path`` into a fixed-length mono float32 clip.

    Parameters
    ----------
    path : str or Path
        Audio file (any format libsndfile or ffmpeg reads).
    sample_rate : int
        Output rate in Hz (soxr resampling from the file's rate).
    clip_seconds : float
        Output length in seconds; longer files give their excerpt of this
        length, shorter ones are zero-padded.
    min_seconds : float
        Shortest acceptable amount of real audio in seconds.
    excerpt : {"centre", "start"}
        Which part of a longer file is kept.
    resample_quality : {"VHQ", "HQ", "MQ", "LQ", "QQ"}
        soxr quality preset.

    Returns
    -------
    DecodedClip
        ``samples`` has ``round(clip_seconds * sample_rate)`` samples.

    Raises
    ------
    ConfigError
        An argument is invalid.
    AudioDecodeError
        Missing, empty, header-only, truncated or non-audio file, or no
        decoder can read it.
    InvalidSamplesError
        The decoded excerpt holds NaN or Inf samples.
    TooShortError
        Less than ``min_seconds`` of audio.
    """
    _check_arguments(sample_rate, clip_seconds, min_seconds, excerpt, resample_quality)
    path = Path(path)
    _check_file(path)
    part = _decode_excerpt(path, clip_seconds, excerpt)
    mono = part.mono
    # A float64 sum is finite exactly when no sample is NaN or Inf (float32
    # values cannot overflow it); the element-wise test runs only on failure.
    if not math.isfinite(float(np.sum(mono, dtype=np.float64))):
        bad = ~np.isfinite(mono)
        first = int(np.argmax(bad))
        raise InvalidSamplesError(
            path, f"{int(bad.sum())} NaN/Inf samples in the decoded audio (first at "
                  f"{(first / part.sample_rate):.3f} s into the excerpt); the file is corrupt, "
                  "re-export or exclude it")
    if part.sample_rate != sample_rate and len(mono):
        mono = soxr.resample(mono, part.sample_rate, sample_rate, quality=resample_quality)
    clip_samples = int(round(clip_seconds * sample_rate))
    valid = min(len(mono), clip_samples)
    min_samples = int(round(min_seconds * sample_rate))
    if valid < min_samples:
        raise TooShortError(
            path, f"too short: {valid / sample_rate:.2f} s of audio, at least {min_seconds:g} s "
                  "(one analysis window) needed; exclude the file or lower window.window_seconds")
    out = np.zeros(clip_samples, np.float32)
    out[:valid] = mono[:valid]
    return DecodedClip(out, valid, part.total_frames / part.sample_rate, part.sample_rate,
                       part.channels, part.decoder)


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------
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


def _check_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot be read ({exc.strerror or exc}); check the path") from exc
    if not stat.S_ISREG(info.st_mode):
        raise AudioDecodeError(path, "is not a regular file; pass an audio file")
    if info.st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes); re-download or exclude it")


def _declared_data(path: Path, fmt: str) -> tuple[int, int] | None:
    """(declared data bytes, bytes present) of a WAV or AU file, or None.

    None when the format is not one of these, or its header leaves the size
    open (streaming writers put 0 or 0xFFFFFFFF there).
    """
    if fmt not in ("AU", "WAV", "WAVEX"):  # compressed formats declare no data size
        return None
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if fmt == "AU" and head[:4] == b".snd" and len(head) >= 24:
        offset, data_size = struct.unpack(">II", head[4:12])
        if data_size in (0, 0xFFFFFFFF):
            return None
        return data_size, max(0, size - offset)
    if fmt in ("WAV", "WAVEX") and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(head):
            chunk, chunk_size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
            if chunk == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return None
                return chunk_size, max(0, size - pos - 8)
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------
def _excerpt_window(total: int, src_rate: int, clip_seconds: float, excerpt: str) -> tuple[int, int]:
    """(first frame, frame count) of the excerpt of a ``total``-frame file."""
    want = int(math.ceil(clip_seconds * src_rate))
    if total <= want:
        return 0, total
    return ((total - want) // 2 if excerpt == "centre" else 0), want


def _decode_excerpt(path: Path, clip_seconds: float, excerpt: str) -> _Excerpt:
    """Decode the excerpt with libsndfile, falling back to PyAV (see module docstring)."""
    try:
        sf = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        # Not a format libsndfile knows (or not audio at all): ffmpeg decides.
        return _decode_pyav(path, clip_seconds, excerpt, why=f"libsndfile: {exc}")
    if sf.format == "RAW":
        # libsndfile guessed header-less audio from the extension (e.g. any
        # bytes named .au read as 8 kHz u-law): no header means no rate or
        # channel count to trust, so only a container ffmpeg recognises counts.
        sf.close()
        return _decode_pyav(path, clip_seconds, excerpt, why="libsndfile finds no header (RAW)")
    with sf:
        rate, channels, frames, fmt = sf.samplerate, sf.channels, sf.frames, sf.format
        declared = _declared_data(path, fmt)
        # A writer that miscounts by a pad byte or a few frames is not a
        # truncated file: allow 0.1% (+16 bytes) before calling it one.
        if declared is not None and declared[1] < declared[0] - declared[0] // 1000 - 16:
            data_size, present = declared
            raise AudioDecodeError(
                path, f"truncated: the header declares {data_size} bytes of audio but the file holds "
                      f"{present} ({present / max(data_size, 1):.0%}); re-download or exclude it")
        if fmt == "MP3":
            scanned = _scan_frames(path)
            if scanned is not None and abs(scanned - frames) > MP3_LENGTH_TOLERANCE_S * rate:
                logger.warning(
                    "%s: libsndfile reports %.2f s but the MPEG frames add up to %.2f s "
                    "(a cut or VBR MP3 with a stale header); decoding with PyAV instead",
                    path, frames / rate, scanned / rate)
                return _decode_pyav(path, clip_seconds, excerpt, why="libsndfile length disagrees",
                                    total=scanned)
        if frames <= 0:
            raise AudioDecodeError(
                path, "holds no audio samples (header only); re-export or exclude it")
        start, count = _excerpt_window(frames, rate, clip_seconds, excerpt)
        try:
            if start:
                sf.seek(start)
            block = sf.read(count, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            logger.warning("%s: libsndfile failed while decoding (%s); retrying with PyAV", path, exc)
            return _decode_pyav(path, clip_seconds, excerpt, why=f"libsndfile: {exc}",
                                total=frames, declared=fmt != "MP3")
    if len(block) < count - SHORT_READ_TOLERANCE_S * rate:
        logger.warning("%s: libsndfile stopped after %d of %d frames without an error; "
                       "retrying with PyAV", path, len(block), count)
        return _decode_pyav(path, clip_seconds, excerpt, why="libsndfile stopped early",
                            total=frames, declared=fmt not in ("MP3", "OGG"))
    return _Excerpt(_downmix(block), rate, channels, frames, "soundfile")


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


def _open_av(path: Path, why: str) -> tuple[Any, Any]:
    """(container, first audio stream) of ``path``, or AudioDecodeError."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(
            path, f"not a decodable audio file ({why}; ffmpeg: {exc}); check that it is audio "
                  "and not a renamed or damaged file") from exc
    if not container.streams.audio:
        container.close()
        raise AudioDecodeError(path, f"holds no audio stream ({why}); exclude it")
    return container, container.streams.audio[0]


def _scan_frames(path: Path) -> int | None:
    """Frames of the first audio stream from its packet timestamps, without decoding.

    The independent length measure of an MP3: every MPEG frame is a packet
    with its own duration, so the end of the last packet is the end of the
    audio that is really in the file, whatever the header claims. None when
    PyAV cannot demux the file (then libsndfile is trusted).
    """
    try:
        container, stream = _open_av(path, "packet scan")
    except AudioDecodeError as exc:
        logger.debug("%s: no packet scan (%s)", path, exc)
        return None
    with container:
        return _packet_frames(container, stream)


def _packet_frames(container: Any, stream: Any) -> int | None:
    """End of the last packet of ``stream``, in frames from the stream start (None: no packets)."""
    import av

    rate = stream.codec_context.sample_rate
    start = stream.start_time or 0
    end = -1
    try:
        for packet in container.demux(stream):
            pts, duration = packet.pts, packet.duration
            if pts is not None and duration and pts + duration > end:
                end = pts + duration
    except av.FFmpegError as exc:
        logger.debug("packet scan stopped: %s", exc)
    if end < 0 or not rate:
        return None
    return max(0, int(round((end - start) * stream.time_base * rate)))


def _frame_to_mono(frame: Any) -> np.ndarray:
    """Mono float32 [shape=(samples,)] of one decoded PyAV audio frame."""
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


def _decode_pyav(path: Path, clip_seconds: float, excerpt: str, *, why: str,
                 total: int | None = None, declared: bool = False, seek: bool = True) -> _Excerpt:
    """Decode the excerpt with PyAV (ffmpeg).

    Parameters
    ----------
    why : str
        Why libsndfile was not used (goes into error messages).
    total : int, optional
        Frames of the whole file if already known; otherwise the packets are
        scanned (demuxed without decoding) to find it.
    declared : bool
        ``total`` is what the file's header declares: decoding clearly less
        means the file is truncated.
    seek : bool
        Seek to the excerpt (False: decode from the start and skip to it,
        for streams whose frames carry no timestamps after a seek).
    """
    import av

    if total is None:
        container, stream = _open_av(path, why)
        with container:
            total = _packet_frames(container, stream)
        if total is None:
            raise AudioDecodeError(
                path, f"not a decodable audio file: ffmpeg finds no audio packets in it ({why}); "
                      "check that it is audio and not a renamed or damaged file")
    container, stream = _open_av(path, why)
    with container:
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        if not rate:
            raise AudioDecodeError(path, f"audio stream has no sample rate ({why}); exclude it")
        if total <= 0:
            raise AudioDecodeError(path, f"holds no audio samples (header only; {why}); exclude it")
        first, count = _excerpt_window(total, rate, clip_seconds, excerpt)
        start_time = stream.start_time or 0
        time_base = stream.time_base
        seeked = False
        if first and seek:
            target = first / rate - _SEEK_PREROLL_S
            if target > 0:
                container.seek(int(target / time_base) + start_time, stream=stream, backward=True)
                seeked = True
        mono = np.zeros(count, np.float32)
        filled = 0
        next_pos: int | None = None
        errors = 0
        done = False
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                # A damaged packet: ffmpeg resynchronises on the next one.
                errors += 1
                logger.debug("%s: packet decode error: %s", path, exc)
                continue
            for frame in frames:
                data = _frame_to_mono(frame)
                if frame.pts is not None:
                    pos = int(round((frame.pts - start_time) * time_base * rate))
                elif next_pos is None and seeked:
                    # Nothing says where decoding resumed: count from the start instead.
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
    if seeked and next_pos is None and filled == 0:
        logger.debug("%s: no timestamps after seeking; decoding from the start", path)
        return _decode_pyav(path, clip_seconds, excerpt, why=why, total=total, declared=declared,
                            seek=False)
    if errors:
        logger.warning("%s: ffmpeg skipped %d damaged packet(s)", path, errors)
    if filled == 0:
        raise AudioDecodeError(path, f"no audio could be decoded ({why}); the file is damaged, exclude it")
    if declared and filled < count - SHORT_READ_TOLERANCE_S * rate:
        raise AudioDecodeError(
            path, f"truncated: the header declares {total / rate:.2f} s but decoding stops "
                  f"{(count - filled) / rate:.2f} s early ({why}); re-download or exclude it")
    if filled < count - SHORT_READ_TOLERANCE_S * rate:
        logger.warning("%s: decoded %d of %d expected frames", path, filled, count)
    if not declared:
        # Without a declared length, what the decoder delivered is the truth.
        total = min(total, first + filled) if filled < count else total
    return _Excerpt(mono[:filled], rate, channels, total, "pyav")
