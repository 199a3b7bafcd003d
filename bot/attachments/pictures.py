"""Pictures people share, made ready for a model that sees: checked, turned upright, scaled, re-encoded, counted.

Everything works on bytes and is CPU-bound: callers run `prepare_picture` in a worker thread.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import warnings
from dataclasses import dataclass
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.attachments.kinds import PICTURE_KINDS, UnusableAttachment, quoted
from bot.chat_messages import ImagePart

log = logging.getLogger(__name__)

# Only these Pillow plugins ever parse the bytes people send (Image.open tries every plugin otherwise).
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# Decoding costs about 4 bytes a pixel; the header says how many before any are decoded.
MAX_INPUT_PIXELS = 50_000_000
# OpenAI's rule for detail "high" (platform.openai.com/docs/guides/images-vision, "Calculating costs"):
# the picture is scaled to fit within 2048 x 2048, then so that its shortest side is 768 px; each
# 512 px tile of the result costs 170 tokens, and every picture 85 more. The docs' examples:
# 1024 x 1024 -> 768 x 768, 4 tiles, 765 tokens; 2048 x 4096 -> 768 x 1536, 6 tiles, 1105 tokens.
# (gpt-4.1-mini/nano and o4-mini count 32 px patches instead; the tile count stands in for them.)
# The bot scales to that size itself, so it sends no pixel the model would not use.
MAX_LONG_SIDE = 2048
MAX_SHORT_SIDE = 768
TILE_SIDE = 512
TOKENS_PER_TILE = 170
TOKENS_PER_PICTURE = 85
JPEG_QUALITY = 85
# A lossless copy larger than this is not worth its weight in the request: photos go as JPEG (WebP with alpha).
MAX_LOSSLESS_BYTES = 2_000_000
LOSSY_QUALITY = 90


class UnusablePicture(UnusableAttachment):
    """A shared picture the model cannot be shown; the note names the file and says why."""


@dataclass(frozen=True)
class SeenPicture:
    """A picture ready for the model: upright, at most the size the model uses, without metadata."""

    filename: str
    data: bytes
    mime_type: str
    width: int
    height: int
    tokens: int  # what it costs in the context window
    notes: tuple[str, ...] = ()  # for the person: what was changed

    def data_url(self) -> str:
        """The picture as a `data:` URL (the API fetches no link, and Discord's CDN links expire)."""
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def part(self) -> ImagePart:
        """The picture as a part of a user message, at the detail its size and token count assume."""
        return ImagePart(self.data_url(), detail="high")


def fitted_size(width: int, height: int) -> tuple[int, int]:
    """The size a high-detail model scales a picture to: longest side <= 2048, shortest <= 768, shape kept."""
    scale = min(1.0, MAX_LONG_SIDE / max(width, height), MAX_SHORT_SIDE / min(width, height))
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def picture_tokens(width: int, height: int) -> int:
    """Tokens a picture of this size costs at detail "high": 85 plus 170 per 512 px tile after scaling."""
    fitted_width, fitted_height = fitted_size(width, height)
    tiles = math.ceil(fitted_width / TILE_SIDE) * math.ceil(fitted_height / TILE_SIDE)
    return TOKENS_PER_PICTURE + TOKENS_PER_TILE * tiles


def prepare_picture(data: bytes, filename: str) -> SeenPicture:
    """Check, turn upright, scale and re-encode a shared picture; raise UnusablePicture naming the file.

    Re-encoding also drops the file's metadata (a phone photo's EXIF carries where it was taken).
    Blocking: run it in a worker thread.
    """
    name = quoted(filename)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own pixel limit; any such picture is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image, source_format = _decode(data, name, notes)
    except UnusablePicture:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnusablePicture(f"{name} has too many pixels for me. Scale it down and send it again.") from None
    except UnidentifiedImageError:
        raise UnusablePicture(f"{name} isn't a {PICTURE_KINDS} picture, so I couldn't look at it.") from None
    except Exception as exc:  # Pillow's parsers raise many types for damaged files (OSError, SyntaxError, ...)
        log.debug("Could not decode a shared picture: %s", type(exc).__name__, exc_info=True)
        raise UnusablePicture(f"I couldn't read the picture {name}; the file seems damaged.") from None
    size = fitted_size(image.width, image.height)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    encoded, mime_type = _encode(image, source_format)
    tokens = picture_tokens(image.width, image.height)
    return SeenPicture(filename, encoded, mime_type, image.width, image.height, tokens, tuple(notes))


def _decode(data: bytes, name: str, notes: list[str]) -> tuple[Image.Image, str]:
    """The picture decoded (its first frame) and upright, with its format; refuses too many pixels unread."""
    opened = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = opened.size
    if width * height >= MAX_INPUT_PIXELS:
        raise UnusablePicture(
            f"{name} is {width:,}×{height:,} pixels; I look at pictures under "
            f"{MAX_INPUT_PIXELS // 1_000_000} megapixels. Scale it down and send it again."
        )
    source_format = opened.format or ""
    if getattr(opened, "is_animated", False):
        notes.append(f"{name} is animated; I looked at its first frame.")
        opened.seek(0)
    if source_format == "JPEG":
        # JPEG decodes at 1/2, 1/4 or 1/8 scale directly: a big photo never needs its full size in memory.
        # The fitted size is the same for both orientations, so the EXIF turn below does not change it.
        opened.draft(opened.mode, fitted_size(width, height))
    opened.load()  # a truncated or corrupt file fails here
    # Phone photos are often stored sideways with an EXIF note to turn them: the model must see them upright.
    return ImageOps.exif_transpose(opened), source_format


def _encode(image: Image.Image, source_format: str) -> tuple[bytes, str]:
    """The picture in the format that suits it: PNG when transparent or drawn, JPEG when a photo or large."""
    if _has_alpha(image):
        transparent = image.convert("RGBA")
        png = _save(transparent, "PNG")
        if len(png) <= MAX_LOSSLESS_BYTES:
            return png, "image/png"
        return _save(transparent, "WEBP", quality=LOSSY_QUALITY), "image/webp"
    opaque = image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")
    if source_format == "JPEG":
        return _save(opaque, "JPEG", quality=JPEG_QUALITY), "image/jpeg"
    # Screenshots and drawings stay lossless, where JPEG would blur their text, unless that makes them heavy.
    png = _save(opaque, "PNG")
    if len(png) <= MAX_LOSSLESS_BYTES:
        return png, "image/png"
    return _save(opaque, "JPEG", quality=LOSSY_QUALITY), "image/jpeg"


def _has_alpha(image: Image.Image) -> bool:
    """Whether any pixel is less than fully opaque."""
    if "A" not in image.getbands() and "transparency" not in image.info:
        return False
    # One band's extrema are (lowest, highest); Pillow types them for every band count at once.
    lowest, _ = cast(tuple[int, int], image.convert("RGBA").getchannel("A").getextrema())
    return lowest < 255


def _save(image: Image.Image, image_format: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
