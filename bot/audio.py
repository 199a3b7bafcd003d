"""Recordings to text: checking audio and video files, splitting long ones into pieces, transcribing them in order.

Discord-free. Everything PyAV does (reading, decoding, resampling, encoding) is CPU work and runs in the job
runner's threads, so the event loop never waits on it. A recording's length is read from its header first and
checked against the budget before anything is decoded: a long file is refused for the price of its header.
"""

from __future__ import annotations

import array
import enum
import io
import itertools
import logging
import math
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import aiohttp
import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from bot.api import OpenAIClient
from bot.errors import ApiError, ApiErrorKind, UserError
from bot.jobs import JobRunner

log = logging.getLogger(__name__)

TRANSCRIPTIONS_PATH = "/audio/transcriptions"
# The API refuses uploads over 25 MB.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
# gpt-4o-transcribe refuses requests over about 1500 s of audio (its diarizing variant 1400 s).
MAX_UPLOAD_SECONDS = 1400
# Longer or bigger recordings are cut into pieces of at most 20 minutes (≈ 5 MB each once converted).
MAX_PIECE_SECONDS = 20 * 60
# A piece ends at the quietest tenth of a second in its last 30 s, so cuts fall between words.
CUT_SEARCH_SECONDS = 30
# Cuts fall at least this long before the piece limit, so the sound that pushed a piece over it starts a
# piece of at least this length: no sliver of a last piece (the API refuses audio under 0.1 s).
MIN_LAST_PIECE_SECONDS = 10
QUIET_BLOCK_SECONDS = 0.1
# A transcription has to finish while its interaction is open (15 min); three hours is about nine pieces.
MAX_AUDIO_SECONDS = 3 * 60 * 60
# Conversion output: mono Opus in Ogg at 32 kbps (≈ 14 MB an hour). Speech models listen at 16 kHz, so a
# higher rate only costs bytes; lower-rate sources keep their rate (Opus takes 8, 12 and 16 kHz).
OUTPUT_SAMPLE_RATES = (8_000, 12_000, 16_000)
OUTPUT_BIT_RATE = 32_000
# Complexity 5 halves the encoding time of the default 10 with no loss a transcription model would notice.
OPUS_OPTIONS = {"compression_level": "5"}
BYTES_PER_SAMPLE = 2  # signed 16-bit mono PCM between decoder and encoder
# The previous piece's last words lead the next piece's prompt, so a sentence cut in two reads on.
PROMPT_TAIL_CHARS = 600
# Uploads come from strangers: FFmpeg may only use demuxers for ordinary media files, never those (such as
# playlists) that open further files or URLs named inside the upload. FFmpeg's short demuxer names:
ALLOWED_DEMUXERS = "aac,ac3,aiff,amr,asf,au,avi,caf,flac,flv,matroska,mov,mp3,mpeg,mpegts,ogg,w64,wav"
PCM_CODECS = frozenset({"pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le"})
# What the job runner is told each step costs, in seconds of CPU per second of audio: measured on a 2-core
# host (Opus 0.7 ms to decode, 3.4 ms to convert; MP3 and WAV less) with room for slower sources such as video.
DECODE_CPU_PER_SECOND = 0.001
CONVERT_CPU_PER_SECOND = 0.006
PROBE_CPU_SECONDS = 0.05  # reading a header takes about a millisecond
# A file whose header gives no length (live WebM from a browser) is measured by reading its packets without
# decoding them, about 2 µs each. Three hours of 20 ms packets is 540,000; far more is no real recording.
MAX_PROBE_PACKETS = 2_000_000


@dataclass(frozen=True)
class DirectFormat:
    """A container and codecs the API reads as they are, and how to name such an upload."""

    extension: str
    content_type: str
    codecs: frozenset[str]


# By FFmpeg demuxer name. The server tells formats apart by the file name's extension, so a file is sent
# unchanged only when what FFmpeg found inside matches one of these; anything else is converted.
DIRECT_FORMATS = {
    "ogg": DirectFormat("ogg", "audio/ogg", frozenset({"opus", "vorbis", "flac"})),
    "mp3": DirectFormat("mp3", "audio/mpeg", frozenset({"mp3", "mp3float"})),
    "wav": DirectFormat("wav", "audio/wav", PCM_CODECS),
    "flac": DirectFormat("flac", "audio/flac", frozenset({"flac"})),
    "mov,mp4,m4a,3gp,3g2,mj2": DirectFormat("m4a", "audio/mp4", frozenset({"aac"})),
    "matroska,webm": DirectFormat("webm", "audio/webm", frozenset({"opus", "vorbis"})),
}
CONVERTED_FORMAT = DirectFormat("ogg", "audio/ogg", frozenset({"opus"}))


class UnreadableAudio(UserError):
    """FFmpeg could not decode the file: damaged, or not a format it knows."""

    def __init__(self) -> None:
        super().__init__(
            "🔇 I couldn't read that file as audio or video: it may be damaged or in a format I don't know."
        )


class NoSoundTrack(UserError):
    """The file is a readable media file without any audio in it."""

    def __init__(self) -> None:
        super().__init__("🔇 That file has no sound track to transcribe.")


class AudioTooLong(UserError):
    """The recording is longer than the bot transcribes in one go."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"⏱️ That recording is {format_duration(seconds)} long; "
            f"I transcribe up to {format_duration(MAX_AUDIO_SECONDS)}. Split it and send the parts."
        )


@dataclass(frozen=True)
class Upload:
    """One file for the transcription endpoint, and the seconds of audio it holds."""

    data: bytes
    filename: str
    content_type: str
    seconds: float


@dataclass(frozen=True)
class Probe:
    """What a file's header says, before anything is decoded: its length, and how to send it unchanged (or None)."""

    seconds: float
    direct: DirectFormat | None


class Stage(enum.Enum):
    """The two slow parts of a transcription."""

    CONVERTING = "converting"
    TRANSCRIBING = "transcribing"


@dataclass(frozen=True)
class Progress:
    """How far a transcription has got; `piece` and `pieces` count the uploads while transcribing."""

    stage: Stage
    seconds: float
    piece: int = 1
    pieces: int = 1


@dataclass(frozen=True)
class Transcript:
    """The text of a recording, how long the recording was, and in how many pieces it was sent."""

    text: str
    seconds: float
    pieces: int


ProgressCallback = Callable[[Progress], Awaitable[None]]


def format_duration(seconds: float) -> str:
    """A length for people: "45 s", "3 min 07 s", "1 h 02 min"."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def upload_stem(filename: str) -> str:
    """A safe base name for uploads, from the user's file name ("My talk (v2).mp3" → "My-talk-v2")."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(filename).stem).strip("-")
    return stem[:64] or "audio"


def prompt_tail(text: str, limit: int = PROMPT_TAIL_CHARS) -> str:
    """The last `limit` characters of a transcript, starting at a word."""
    text = text.strip()
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < limit // 2 else tail


def quietest_cut(pcm: bytes | bytearray, start: int, end: int, rate: int) -> int:
    """The sample index in [start, end] at the middle of the quietest 0.1 s (the latest of equals), else `end`."""
    samples = array.array("h", pcm[start * BYTES_PER_SAMPLE : end * BYTES_PER_SAMPLE])
    block = max(1, round(rate * QUIET_BLOCK_SECONDS))
    best, best_energy = end, math.inf
    for offset in range(0, len(samples) - block + 1, block):
        energy = sum(sample * sample for sample in samples[offset : offset + block])
        if energy <= best_energy:
            best, best_energy = start + offset + block // 2, energy
    return best


class ConversionStopped(Exception):
    """The bot is shutting down: audio work in the job runner stops at the next packet."""


def probe_recording(data: bytes) -> Probe:
    """The recording's length as its header tells it (or its packets, read without decoding); blocking.

    Raises UnreadableAudio, NoSoundTrack or AudioTooLong. Costs about a millisecond for a file of any length.
    """
    with _open_input(data) as container:
        stream = _audio_stream(container)
        seconds = _header_seconds(container, stream)
        if seconds > MAX_AUDIO_SECONDS:
            raise AudioTooLong(seconds)
        direct = _direct_format(container, stream)
    if len(data) > MAX_UPLOAD_BYTES or not 0 < seconds <= MAX_UPLOAD_SECONDS:
        direct = None
    return Probe(seconds, direct)


def measure_recording(
    data: bytes, filename: str, direct: DirectFormat, stopping: threading.Event | None = None
) -> Upload | None:
    """The file to upload as it is, measured by decoding it whole, which also proves it is not damaged; blocking.

    None when it must be converted after all: damaged, or longer than one upload may be.
    """
    with _open_input(data) as container:
        stream = _audio_stream(container)
        samples, damaged = _count_samples(container, stream, stopping)
    seconds = samples / stream.sample_rate
    if damaged or seconds > MAX_UPLOAD_SECONDS:
        return None  # conversion keeps what decodes and re-measures
    return Upload(data, f"{upload_stem(filename)}.{direct.extension}", direct.content_type, seconds)


def convert_recording(data: bytes, filename: str, stopping: threading.Event | None = None) -> list[Upload]:
    """The recording's sound as mono Opus pieces within the API's limits, in order; blocking: use a worker thread.

    Video gives its audio track. Raises UnreadableAudio, NoSoundTrack or AudioTooLong.
    """
    name = f"{upload_stem(filename)}.{CONVERTED_FORMAT.extension}"
    with _open_input(data) as container:
        stream = _audio_stream(container)
        rate = _output_rate(stream.sample_rate)
        pieces = [
            Upload(piece, name, CONVERTED_FORMAT.content_type, samples / rate)
            for piece, samples in _encode_pieces(_mono_pcm(container, stream, rate, stopping), rate)
        ]
    if not pieces:
        raise UnreadableAudio()
    return pieces


class Transcriber:
    """Turns recordings into text with the API's transcription endpoint, converting and splitting as needed."""

    def __init__(self, api: OpenAIClient, jobs: JobRunner) -> None:
        self._api = api
        # Every step that reads audio runs there: a few at a time for all servers, in turns between members.
        self._jobs = jobs

    async def transcribe(
        self,
        data: bytes,
        filename: str,
        *,
        owner: int,
        model: str,
        language: str | None = None,
        prompt: str | None = None,
        on_progress: ProgressCallback | None = None,
        before_upload: Callable[[float], Awaitable[None]] | None = None,
    ) -> Transcript:
        """The transcript of an audio or video file; raises UserError for bad input before any API call.

        `before_upload` is given the recording's length in seconds as its header tells it, before anything is
        decoded, and again once the audio is measured if it turns out longer, before anything is sent: it may
        refuse (raise UserError), as the daily audio budget does. `owner` (the member's id) is whose turn the
        decoding waits for in the job runner.
        """
        if not data:
            raise UserError("That file is empty: there is nothing to transcribe.")
        probe = await self._jobs.run(probe_recording, data, owner=owner, cost=PROBE_CPU_SECONDS, label="read header")
        if before_upload is not None:
            await before_upload(probe.seconds)
        uploads = await self._uploads(data, filename, probe, owner, on_progress)
        seconds = sum(upload.seconds for upload in uploads)
        if before_upload is not None and seconds > probe.seconds:
            await before_upload(seconds)  # the header said less than there is
        texts: list[str] = []
        for number, upload in enumerate(uploads, start=1):
            if on_progress is not None:
                await on_progress(Progress(Stage.TRANSCRIBING, seconds, number, len(uploads)))
            context = " ".join(part for part in (prompt, prompt_tail(texts[-1]) if texts else None) if part)
            texts.append(await self._transcribe_upload(upload, model, language, context or None))
        text = " ".join(piece.strip() for piece in texts if piece.strip())
        return Transcript(text, seconds, len(uploads))

    async def _uploads(
        self, data: bytes, filename: str, probe: Probe, owner: int, on_progress: ProgressCallback | None
    ) -> list[Upload]:
        """The file as it is when the API takes it and it decodes cleanly; otherwise converted into pieces."""
        stopping = self._jobs.stopping
        if probe.direct is not None:
            cost = probe.seconds * DECODE_CPU_PER_SECOND
            upload = await self._jobs.run(
                measure_recording, data, filename, probe.direct, stopping, owner=owner, cost=cost, label="measure"
            )
            if upload is not None:
                return [upload]
        if on_progress is not None:
            await on_progress(Progress(Stage.CONVERTING, probe.seconds))
        # A length nothing could tell is queued as the longest conversion there may be (it stops there).
        cost = (probe.seconds or MAX_AUDIO_SECONDS) * CONVERT_CPU_PER_SECOND
        return await self._jobs.run(
            convert_recording, data, filename, stopping, owner=owner, cost=cost, label="convert"
        )

    async def _transcribe_upload(self, upload: Upload, model: str, language: str | None, prompt: str | None) -> str:
        def build_form() -> aiohttp.FormData:
            form = aiohttp.FormData()
            form.add_field("file", upload.data, filename=upload.filename, content_type=upload.content_type)
            form.add_field("model", model)
            form.add_field("response_format", "json")
            if language:
                form.add_field("language", language)
            if prompt:
                form.add_field("prompt", prompt)
            return form

        body = await self._api.post_form(TRANSCRIPTIONS_PATH, build_form, model=model)
        text = body.get("text")
        if not isinstance(text, str):
            raise ApiError(ApiErrorKind.SERVER_ERROR, "the transcription answer had no text", model=model)
        return text


def _open_input(data: bytes) -> InputContainer:
    try:
        return av.open(io.BytesIO(data), "r", options={"format_whitelist": ALLOWED_DEMUXERS}, metadata_errors="replace")
    except av.FFmpegError:
        raise UnreadableAudio() from None


def _audio_stream(container: InputContainer) -> AudioStream:
    stream = container.streams.best("audio")
    if not isinstance(stream, AudioStream):
        raise NoSoundTrack()
    if not stream.sample_rate:
        raise UnreadableAudio()
    return stream


def _header_seconds(container: InputContainer, stream: AudioStream) -> float:
    """The length the container states; for one that states none, where its last packet ends."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    first: float | None = None
    end = 0.0
    try:
        for count, packet in enumerate(container.demux(stream), start=1):
            if count > MAX_PROBE_PACKETS:
                raise UnreadableAudio()
            if packet.pts is None or packet.time_base is None:
                continue  # the demuxer's closing empty packet
            start = float(packet.pts * packet.time_base)
            first = start if first is None else min(first, start)
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if end - first > MAX_AUDIO_SECONDS:
                break  # long enough to refuse: no need to read the rest
    except av.FFmpegError:
        pass  # the file breaks off: what was read so far is the estimate, and decoding will tell the rest
    return end - first if first is not None else 0.0


def _direct_format(container: InputContainer, stream: AudioStream) -> DirectFormat | None:
    """How to upload the file unchanged, or None when it has pictures or a format the API might misread."""
    direct = DIRECT_FORMATS.get(container.format.name)
    if direct is None or stream.codec_context.name not in direct.codecs:
        return None
    # Cover art in an MP3 or M4A shows up as a video stream; real video means a needlessly big upload.
    if any(not video.disposition & av.stream.Disposition.attached_pic for video in container.streams.video):
        return None
    return direct


class _AudioDecoder:
    """Decodes one audio stream, skipping damaged packets.

    A damaged packet (or a file cut short) loses only its own moment; the rest is still worth transcribing.
    """

    def __init__(self, container: InputContainer, stream: AudioStream, stopping: threading.Event | None) -> None:
        self._container = container
        self._stream = stream
        self._stopping = stopping
        self.damaged = False

    def frames(self) -> Iterator[AudioFrame]:
        """The stream's frames, in order."""
        try:
            for packet in self._container.demux(self._stream):
                if self._stopping is not None and self._stopping.is_set():
                    raise ConversionStopped()
                try:
                    yield from packet.decode()
                except av.FFmpegError:
                    self.damaged = True
        except av.FFmpegError:
            self.damaged = True  # the container broke off: keep what was read before


def _count_samples(
    container: InputContainer, stream: AudioStream, stopping: threading.Event | None
) -> tuple[int, bool]:
    """Decode the whole stream: the number of samples per channel, and whether any packet was damaged."""
    decoder = _AudioDecoder(container, stream, stopping)
    samples = sum(frame.samples for frame in decoder.frames())
    if samples == 0:
        raise UnreadableAudio()
    return samples, decoder.damaged


def _output_rate(source_rate: int) -> int:
    """The lowest Opus rate that keeps all the source has up to 16 kHz."""
    return next((rate for rate in OUTPUT_SAMPLE_RATES if rate >= source_rate), OUTPUT_SAMPLE_RATES[-1])


def _mono_pcm(
    container: InputContainer, stream: AudioStream, rate: int, stopping: threading.Event | None
) -> Iterator[bytes]:
    """The stream as 16-bit mono PCM at `rate`, in the decoder's chunks; raises AudioTooLong past the limit."""
    resampler = AudioResampler(format="s16", layout="mono", rate=rate)
    total = 0
    frames = _AudioDecoder(container, stream, stopping).frames()
    for frame in itertools.chain(frames, [None]):  # None flushes the resampler
        for mono in resampler.resample(frame):
            total += mono.samples
            if total > MAX_AUDIO_SECONDS * rate:
                raise AudioTooLong(total / rate)
            # The plane's buffer may be padded past the last sample.
            yield bytes(mono.planes[0])[: mono.samples * BYTES_PER_SAMPLE]


def _encode_pieces(pcm_chunks: Iterator[bytes], rate: int) -> Iterator[tuple[bytes, int]]:
    """Encode PCM into Ogg/Opus pieces of at most MAX_PIECE_SECONDS each, cut at quiet moments: (file, samples).

    Only the last CUT_SEARCH_SECONDS of the current piece stay as PCM; the rest is encoded as it arrives.
    """
    limit = MAX_PIECE_SECONDS * rate
    search = CUT_SEARCH_SECONDS * rate
    # Half the search window at most, so the cut window always lies within what is still held as PCM.
    margin = min(round(MIN_LAST_PIECE_SECONDS * rate), search // 2)
    writer = OpusWriter(rate)
    pending = bytearray()
    for chunk in pcm_chunks:
        pending += chunk
        while writer.samples + len(pending) // BYTES_PER_SAMPLE > limit:
            end = limit - margin - writer.samples
            cut = quietest_cut(pending, max(0, end - search), end, rate)
            writer.write(pending[: cut * BYTES_PER_SAMPLE])
            del pending[: cut * BYTES_PER_SAMPLE]
            yield writer.finish(), writer.samples
            writer = OpusWriter(rate)
        settled = len(pending) // BYTES_PER_SAMPLE - search
        if settled > 0:
            writer.write(pending[: settled * BYTES_PER_SAMPLE])
            del pending[: settled * BYTES_PER_SAMPLE]
    writer.write(pending)
    if writer.samples:
        yield writer.finish(), writer.samples


class OpusWriter:
    """One file being encoded: mono 16-bit PCM in, an Ogg/Opus file out (transcription pieces, voice messages)."""

    def __init__(self, rate: int, *, bit_rate: int = OUTPUT_BIT_RATE, options: dict[str, str] = OPUS_OPTIONS) -> None:
        self._rate = rate
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, "w", format="ogg")
        self._stream = self._container.add_stream("libopus", rate=rate, options=options, layout="mono")
        self._stream.bit_rate = bit_rate
        self.samples = 0

    def write(self, pcm: bytes | bytearray) -> None:
        """Encode more samples."""
        count = len(pcm) // BYTES_PER_SAMPLE
        if count == 0:
            return
        frame = AudioFrame(format="s16", layout="mono", samples=count)
        frame.planes[0].update(bytes(pcm))
        frame.sample_rate = self._rate
        frame.pts = self.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.samples += count

    def finish(self) -> bytes:
        """Flush the encoder and return the whole file."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._buffer.getvalue()
