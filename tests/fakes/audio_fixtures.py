"""Real media files made on the spot with PyAV (tones in Ogg/Opus, MP3, WAV, MP4 video): no blobs in the repo."""

from __future__ import annotations

import array
import io
import math
import wave
from collections.abc import Sequence

import av
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

TONE_HZ = 440.0
AMPLITUDE = 8000
VIDEO_SIZE = 32
VIDEO_FPS = 5


def tone(seconds: float, rate: int = 16_000, *, silences: Sequence[tuple[float, float]] = ()) -> array.array[int]:
    """A 440 Hz tone as 16-bit mono samples, silent during each (start, end) span in seconds."""
    period = array.array("h", (round(AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * i / rate)) for i in range(rate)))
    whole, part = divmod(round(seconds * rate), rate)
    samples = period * whole + period[:part]  # one second repeated: fast even for half an hour
    for start, end in silences:
        first, last = round(start * rate), round(end * rate)
        samples[first:last] = array.array("h", bytes(2 * (last - first)))
    return samples


def wav_file(samples: array.array[int], rate: int = 16_000) -> bytes:
    """A 16-bit mono WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def encoded_file(
    samples: array.array[int], rate: int, container: str, codec: str, *, with_video: bool = False
) -> bytes:
    """Samples encoded with `codec` into `container` (an FFmpeg muxer name), with a grey video if asked."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        audio = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(audio, AudioStream)
        video = _add_video_stream(out) if with_video else None  # every stream exists before the first packet
        step = rate // 10
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step]
            frame = AudioFrame(format="s16", layout="mono", samples=len(chunk))
            frame.planes[0].update(chunk.tobytes())
            frame.sample_rate = rate
            frame.pts = start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        if video is not None:
            _encode_grey_pictures(out, video, len(samples) / rate)
    return buffer.getvalue()


def voice_message(seconds: float = 3.0) -> bytes:
    """What Discord records for a voice message: mono Opus at 48 kHz in Ogg."""
    return encoded_file(tone(seconds, 48_000), 48_000, "ogg", "libopus")


def mp3_file(seconds: float = 3.0) -> bytes:
    """A mono MP3."""
    return encoded_file(tone(seconds), 16_000, "mp3", "libmp3lame")


def mp4_video(seconds: float = 3.0) -> bytes:
    """An MP4 video with an AAC sound track."""
    return encoded_file(tone(seconds), 16_000, "mp4", "aac", with_video=True)


def silent_video(seconds: float = 2.0) -> bytes:
    """An MP4 video without any sound track."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        _encode_grey_pictures(out, _add_video_stream(out), seconds)
    return buffer.getvalue()


def _add_video_stream(out: OutputContainer) -> VideoStream:
    video = out.add_stream("mpeg4", rate=VIDEO_FPS)
    video.width = video.height = VIDEO_SIZE
    video.pix_fmt = "yuv420p"
    return video


def _encode_grey_pictures(out: OutputContainer, video: VideoStream, seconds: float) -> None:
    for index in range(math.ceil(seconds * VIDEO_FPS)):
        picture = VideoFrame(VIDEO_SIZE, VIDEO_SIZE, "yuv420p")
        for plane in picture.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        picture.pts = index
        out.mux(video.encode(picture))
    out.mux(video.encode(None))
