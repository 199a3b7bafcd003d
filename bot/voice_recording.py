"""Speech audio to a Discord voice recording: decode, join, cut, re-encode as Ogg/Opus and draw its waveform.

Discord-free and blocking: PyAV's decoding and encoding are CPU work, so callers run `encode_voice_recording` in a
worker thread (or the bot's job runner), never on the event loop.
"""

from __future__ import annotations

import array
import base64
import io
import itertools
import math
import operator
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from bot.audio import ALLOWED_DEMUXERS, ConversionStopped, OpusWriter
from bot.errors import ApiError, ApiErrorKind

# What Discord's own clients send as a voice message: Opus in Ogg, encoded from 48 kHz mono, about 32 kbps.
SAMPLE_RATE = 48_000
BIT_RATE = 32_000
# Opus's speech mode: at 32 kbps it keeps voices clearer than the general-audio mode.
OPUS_OPTIONS = {"application": "voip"}
BYTES_PER_SAMPLE = 2  # signed 16-bit mono PCM between decoder and encoder
# Discord draws a voice message from at most 256 one-byte loudness samples; ten a second reads like its clients'.
MAX_WAVEFORM_SAMPLES = 256
WAVEFORM_SAMPLES_PER_SECOND = 10
# Loudness is measured in blocks of 10 ms as the audio streams past, then gathered into the waveform's buckets.
LOUDNESS_BLOCK_SAMPLES = SAMPLE_RATE // 100


@dataclass(frozen=True)
class VoiceRecording:
    """An Ogg/Opus recording ready for a Discord voice message.

    `duration_secs` counts the encoded samples; `waveform` is base64 of at most 256 loudness bytes (0 silent, 255 the
    loudest moment); `truncated` says that sound past the length limit was dropped.
    """

    data: bytes
    duration_secs: float
    waveform: str
    truncated: bool = False


def audio_seconds(data: bytes) -> float | None:
    """How long an audio file says it is, from its headers (no decoding), or None when it does not say."""
    try:
        with _open_audio(data) as container:
            return container.duration / 1_000_000 if container.duration else None
    except av.FFmpegError:
        return None


def encode_voice_recording(
    pieces: Sequence[bytes], max_seconds: float, stopping: threading.Event | None = None
) -> VoiceRecording:
    """Join audio files (any format FFmpeg reads) into one voice recording of at most `max_seconds`; blocking.

    Raises ApiError(SERVER_ERROR) when a piece is not audio or none holds any sound: the speech server sent them.
    Raises ConversionStopped when `stopping` is set (the bot is closing).
    """
    limit = max(1, round(max_seconds * SAMPLE_RATE))
    writer = _VoiceWriter()
    truncated = False
    chunks = itertools.chain.from_iterable(_mono_pcm(piece, stopping) for piece in pieces)
    for pcm in chunks:
        room = (limit - writer.samples) * BYTES_PER_SAMPLE
        if len(pcm) > room:
            writer.write(pcm[:room])
            truncated = True
            break
        writer.write(pcm)
    if writer.samples == 0:
        raise ApiError(ApiErrorKind.SERVER_ERROR, "the speech answer held no sound")
    data = writer.finish()
    return VoiceRecording(data, writer.samples / SAMPLE_RATE, writer.loudness.waveform(), truncated)


def _open_audio(data: bytes) -> InputContainer:
    # Only demuxers for plain media files: never one (such as a playlist) that opens files or URLs named inside.
    return av.open(io.BytesIO(data), "r", options={"format_whitelist": ALLOWED_DEMUXERS}, metadata_errors="replace")


def _mono_pcm(data: bytes, stopping: threading.Event | None) -> Iterator[bytes]:
    """The audio of one file as 16-bit mono PCM at 48 kHz, in the decoder's chunks."""
    try:
        container = _open_audio(data)
    except av.FFmpegError:
        raise ApiError(ApiErrorKind.SERVER_ERROR, "the speech answer was not audio") from None
    with container:
        stream = container.streams.best("audio")
        if not isinstance(stream, AudioStream):
            raise ApiError(ApiErrorKind.SERVER_ERROR, "the speech answer had no sound track")
        resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            for packet in itertools.chain(container.demux(stream), [None]):
                if stopping is not None and stopping.is_set():
                    raise ConversionStopped()
                # demux() ends with an empty packet that flushes the decoder; the None after it flushes the resampler.
                frames = packet.decode() if packet is not None else [None]
                for frame in frames:
                    for mono in resampler.resample(frame):
                        # The plane's buffer may be padded past the last sample.
                        yield bytes(mono.planes[0])[: mono.samples * BYTES_PER_SAMPLE]
        except av.FFmpegError:
            raise ApiError(ApiErrorKind.SERVER_ERROR, "the speech answer was damaged audio") from None


class _VoiceWriter(OpusWriter):
    """The recording being encoded: mono 48 kHz PCM in, Ogg/Opus out, its loudness measured on the way."""

    def __init__(self) -> None:
        super().__init__(SAMPLE_RATE, bit_rate=BIT_RATE, options=OPUS_OPTIONS)
        self.loudness = _Loudness()

    def write(self, pcm: bytes | bytearray) -> None:
        """Encode more samples, and note how loud they are."""
        super().write(pcm)
        self.loudness.add(bytes(pcm))


class _Loudness:
    """Sums of squared samples per 10 ms block, from which the waveform's buckets take their RMS."""

    def __init__(self) -> None:
        self._energies: list[int] = []
        self._counts: list[int] = []
        self._pending = array.array("h")

    def add(self, pcm: bytes) -> None:
        """Measure more 16-bit samples."""
        self._pending.frombytes(pcm)
        whole = len(self._pending) - len(self._pending) % LOUDNESS_BLOCK_SAMPLES
        for start in range(0, whole, LOUDNESS_BLOCK_SAMPLES):
            self._add_block(self._pending[start : start + LOUDNESS_BLOCK_SAMPLES])
        del self._pending[:whole]

    def _add_block(self, block: array.array[int]) -> None:
        self._energies.append(sum(map(operator.mul, block, block)))
        self._counts.append(len(block))

    def waveform(self) -> str:
        """Base64 of the RMS loudness of up to 256 equal stretches, scaled so the loudest is 255."""
        if self._pending:
            self._add_block(self._pending)
            self._pending = array.array("h")
        blocks = len(self._energies)
        seconds = sum(self._counts) / SAMPLE_RATE
        buckets = max(1, min(MAX_WAVEFORM_SAMPLES, blocks, math.ceil(seconds * WAVEFORM_SAMPLES_PER_SECOND)))
        levels = []
        for bucket in range(buckets):
            first, last = bucket * blocks // buckets, (bucket + 1) * blocks // buckets
            energy, count = sum(self._energies[first:last]), sum(self._counts[first:last])
            levels.append(math.sqrt(energy / count) if count else 0.0)
        loudest = max(levels)
        samples = bytes(round(255 * level / loudest) if loudest else 0 for level in levels)
        return base64.b64encode(samples).decode("ascii")
