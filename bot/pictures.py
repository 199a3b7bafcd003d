"""Pictures as bytes: checking and converting what members upload for the image endpoints, fitting results to Discord.

Nothing here knows Discord, the API or models (bot/images.py does). The Pillow work is CPU-bound:
`prepare_for_endpoint` and `fit_for_discord` run it in the job runner, as the member's jobs, sized by the
pictures' pixels. Pillow opens untrusted (and model-made) bytes with the plugins of the formats we take only,
so none of its many other parsers ever sees them.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Any, cast

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import UserError
from bot.jobs import JobRunner

MB = 1_000_000  # the API states its limits in MB
# What Discord's content type says -> the format Pillow must find in the bytes.
PICTURE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
PICTURE_KINDS = "PNG, JPEG, WebP or GIF"
# The only Pillow plugins that may parse a picture from a member or a model.
PICTURE_FORMATS = tuple(PICTURE_TYPES.values())
# The largest picture any image model takes (GPT image edits: "less than 50MB").
MAX_PICTURE_BYTES = 50 * MB
# Decoding costs about 4 bytes a pixel: a bigger picture could exhaust a small host's memory.
MAX_INPUT_PIXELS = 50_000_000
# A mask whose aspect ratio is this close to the picture's is stretched to fit; a different shape is refused.
MASK_ASPECT_TOLERANCE = 0.02
# Results over the upload limit: try these qualities, then shrink by at least this factor, and again.
SHRINK_QUALITIES = (90, 80, 70)
SHRINK_SCALE = 0.75
MIN_SHRUNK_EDGE = 64
ORIENTATION_TAG = 0x0112  # EXIF
# What the job runner is told a picture costs, in seconds of CPU per megapixel: converting a 49 MP JPEG to a
# PNG that fits 50 MB took 8 to 27 s on 2-core hosts. Reading headers costs next to nothing.
PICTURE_CPU_PER_MEGAPIXEL = 0.5
HEADER_CPU_SECONDS = 0.01

NOTE_GIF_FRAME = "The GIF's first frame was used."
NOTE_CROPPED = "The picture was cropped to its centre square: this endpoint takes square pictures only."


@dataclass(frozen=True)
class InputRules:
    """What an endpoint takes as the picture to work on."""

    formats: frozenset[str]  # Pillow formats sent as they are; anything else becomes PNG
    max_bytes: int
    square: bool = False  # non-square pictures are cropped to their centre square


def format_megabytes(size: int) -> str:
    """A byte count as people read it: 62.9 MB, 50 MB, 0.2 MB."""
    return f"{size / MB:.3g} MB"


@dataclass(frozen=True)
class ImageFile:
    """A picture ready to upload to the API."""

    data: bytes
    filename: str
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class EditInputs:
    """The picture (and mask) to send, and notes for the user about what was changed to make them fit."""

    image: ImageFile
    mask: ImageFile | None = None
    notes: tuple[str, ...] = ()


UPLOAD_NAMES = {
    "PNG": ("image.png", "image/png"),
    "JPEG": ("image.jpg", "image/jpeg"),
    "WEBP": ("image.webp", "image/webp"),
}


def prepare_edit_inputs(image_data: bytes, mask_data: bytes | None, rules: InputRules) -> EditInputs:
    """Check downloaded picture (and mask) bytes and convert them to what the endpoint takes.

    The picture goes as it is when the endpoint takes it; otherwise it becomes an upright PNG (GIFs:
    their first frame), cropped to a square and scaled down where the rules ask. The mask becomes a
    PNG of the picture's final size whose alpha is the user's; a mask of another shape is refused.
    """
    picture, source_format, rotated = _decode(image_data, "picture")
    notes: list[str] = []
    if source_format == "GIF":
        notes.append(NOTE_GIF_FRAME)
    mask = _mask_for(mask_data, picture.size, notes) if mask_data is not None else None
    cropped = rules.square and picture.width != picture.height
    if cropped:
        box = _centre_square(picture.size)
        picture = picture.crop(box)
        mask = mask.crop(box) if mask is not None else None
        notes.append(NOTE_CROPPED)
    if source_format in rules.formats and not (rotated or cropped) and len(image_data) <= rules.max_bytes:
        filename, content_type = UPLOAD_NAMES[source_format]
        image = ImageFile(image_data, filename, content_type, picture.width, picture.height)
    else:
        image = _png_within(picture, rules.max_bytes, notes)
    if mask is None:
        return EditInputs(image, None, tuple(notes))
    if mask.size != (image.width, image.height):
        mask = mask.resize((image.width, image.height), Image.Resampling.NEAREST)
    return EditInputs(image, _mask_file(mask), tuple(notes))


def _decode(data: bytes, what: str) -> tuple[Image.Image, str, bool]:
    """Decode a downloaded picture: (the picture upright, its Pillow format, whether it had to be turned)."""
    opened = _open_header(data, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened.load()  # a truncated or corrupt file fails here, before any API call
    except (OSError, ValueError, SyntaxError):
        raise UserError(_damaged(what)) from None
    # Phone photos are often stored sideways with an EXIF note to turn them: the model must see them upright.
    rotated = opened.getexif().get(ORIENTATION_TAG, 1) not in (None, 1)
    return (ImageOps.exif_transpose(opened) if rotated else opened), opened.format or "", rotated


def _open_header(data: bytes, what: str) -> Image.Image:
    """A downloaded picture with only its header read, refused unless it is a format we take within the pixel limit."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own pixel limit; either way the picture is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=PICTURE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"🖼️ The {what} has too many pixels for me. Scale it down and try again.") from None
    except UnidentifiedImageError:
        other = _signature_format(data)
        if other is None or other in PICTURE_FORMATS:
            raise UserError(_damaged(what)) from None
        raise UserError(f"🖼️ The {what} is a {other} I can't use. Send a {PICTURE_KINDS}.") from None
    except (OSError, ValueError, SyntaxError):  # Pillow raises SyntaxError for some malformed headers
        raise UserError(_damaged(what)) from None
    if opened.width * opened.height > MAX_INPUT_PIXELS:
        raise UserError(
            f"🖼️ The {what} is {opened.width}×{opened.height} pixels; I take at most "
            f"{MAX_INPUT_PIXELS // 1_000_000} megapixels. Scale it down and try again."
        )
    return opened


def _signature_format(data: bytes) -> str | None:
    """The Pillow format whose signature the bytes start with, told by the signature checks alone (nothing parsed)."""
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        if accept is not None and accept(prefix) is True:
            return name
    return None


def _damaged(what: str) -> str:
    return f"🖼️ I can't read the {what} as a picture; the file may be damaged."


def header_pixels(image_data: bytes, mask_data: bytes | None) -> int:
    """The pixels the picture and mask will decode to, from their headers; refuses what _decode would at once."""
    pixels = _open_header(image_data, "picture").size
    total = pixels[0] * pixels[1]
    if mask_data is not None:
        width, height = _open_header(mask_data, "mask").size
        total += width * height
    return total


async def prepare_for_endpoint(
    jobs: JobRunner, image_data: bytes, mask_data: bytes | None, rules: InputRules, *, owner: int
) -> EditInputs:
    """`prepare_edit_inputs` as `owner`'s job in the runner, queued at the cost its headers tell."""
    pixels = await jobs.run(header_pixels, image_data, mask_data, owner=owner, cost=HEADER_CPU_SECONDS, label="header")
    cost = pixels / 1_000_000 * PICTURE_CPU_PER_MEGAPIXEL
    return await jobs.run(prepare_edit_inputs, image_data, mask_data, rules, owner=owner, cost=cost, label="prepare")


def _mask_for(mask_data: bytes, size: tuple[int, int], notes: list[str]) -> Image.Image:
    """The user's mask as RGBA of `size`: stretched when only its scale differs, refused when its shape does."""
    mask, _, _ = _decode(mask_data, "mask")
    mask = mask.convert("RGBA")
    if mask.size != size:
        width, height = size
        if abs(mask.width / mask.height - width / height) > MASK_ASPECT_TOLERANCE * (width / height):
            raise UserError(
                f"🎭 The mask is {mask.width}×{mask.height} but the picture is {width}×{height}: their shapes "
                "differ, so the mask cannot mark the same places. Make the mask from the picture itself."
            )
        notes.append(f"The mask was resized from {mask.width}×{mask.height} to the picture's {width}×{height}.")
        mask = mask.resize(size, Image.Resampling.NEAREST)  # nearest keeps "fully transparent" exact
    if _lowest_alpha(mask) != 0:
        raise UserError(
            "🎭 The mask has no transparent pixels, so it marks nothing to change. Erase the parts to change "
            "(make them transparent) and save the mask as a PNG."
        )
    return mask


def _mask_file(mask: Image.Image) -> ImageFile:
    """The mask as a PNG that keeps only its alpha: small, and well under the 4 MB masks may have."""
    alpha_only = Image.new("RGBA", mask.size)
    alpha_only.putalpha(mask.getchannel("A"))
    return ImageFile(_encode(alpha_only, "PNG"), "mask.png", "image/png", mask.width, mask.height)


def _centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    edge = min(width, height)
    left, top = (width - edge) // 2, (height - edge) // 2
    return left, top, left + edge, top + edge


def _png_within(picture: Image.Image, max_bytes: int, notes: list[str]) -> ImageFile:
    """The picture as a PNG of at most `max_bytes`, scaled down as far as needed."""
    image = picture.convert("RGBA" if _has_alpha(picture) else "RGB")
    original = image.size
    while True:
        data = _encode(image, "PNG")
        if len(data) <= max_bytes:
            break
        image = _smaller(image, len(data), max_bytes)
    if image.size != original:
        notes.append(
            f"The picture was scaled down to {image.width}×{image.height} to fit the API's "
            f"{format_megabytes(max_bytes)} limit."
        )
    return ImageFile(data, "image.png", "image/png", image.width, image.height)


def _smaller(image: Image.Image, current_bytes: int, max_bytes: int) -> Image.Image:
    """The image scaled down about as far as its encoded size says it must, and at least by SHRINK_SCALE."""
    # Encoded size grows roughly with the pixel count, so the edges shrink with its square root.
    scale = min(SHRINK_SCALE, 0.95 * math.sqrt(max_bytes / current_bytes))
    width, height = round(image.width * scale), round(image.height * scale)
    if min(width, height) < MIN_SHRUNK_EDGE:
        raise ValueError(f"a {image.width}x{image.height} picture cannot be made to fit {max_bytes} bytes")
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _has_alpha(image: Image.Image) -> bool:
    """Whether any pixel is less than fully opaque."""
    if "A" not in image.getbands() and "transparency" not in image.info:
        return False
    return _lowest_alpha(image) < 255


def _lowest_alpha(image: Image.Image) -> int:
    """The alpha of the most transparent pixel (255: fully opaque)."""
    # One band's extrema are (lowest, highest); Pillow types them for every band count at once.
    lowest, _ = cast(tuple[int, int], image.convert("RGBA").getchannel("A").getextrema())
    return lowest


def _encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


@dataclass(frozen=True)
class Picture:
    """A picture the model made."""

    data: bytes
    format: str  # png, jpeg or webp
    width: int
    height: int

    @property
    def extension(self) -> str:
        """The file extension people expect for the format."""
        return "jpg" if self.format == "jpeg" else self.format


def read_picture(data: bytes) -> Picture:
    """A model's picture with only its header read: its format and size (raises OSError if it is none we take)."""
    with Image.open(io.BytesIO(data), formats=PICTURE_FORMATS) as image:
        return Picture(data, (image.format or "png").lower(), image.width, image.height)


def fit_to_limit(picture: Picture, max_bytes: int) -> Picture:
    """The picture as it is when it fits; else re-encoded (JPEG, or WebP to keep transparency) smaller until it does."""
    if len(picture.data) <= max_bytes:
        return picture
    with Image.open(io.BytesIO(picture.data), formats=PICTURE_FORMATS) as opened:
        transparent = _has_alpha(opened)
        image = opened.convert("RGBA" if transparent else "RGB")
    target = "WEBP" if transparent else "JPEG"
    while True:
        for quality in SHRINK_QUALITIES:
            data = _encode(image, target, quality=quality)
            if len(data) <= max_bytes:
                return Picture(data, target.lower(), image.width, image.height)
        image = _smaller(image, len(data), max_bytes)


async def fit_for_discord(
    jobs: JobRunner, pictures: tuple[Picture, ...], max_bytes: int, *, owner: int
) -> list[Picture]:
    """The pictures fitted to the upload limit; re-encoding runs as `owner`'s job, never refused: it is paid for."""
    too_big = [picture for picture in pictures if len(picture.data) > max_bytes]
    if not too_big:
        return list(pictures)
    cost = sum(picture.width * picture.height for picture in too_big) / 1_000_000 * PICTURE_CPU_PER_MEGAPIXEL
    return await jobs.run(_fit_all, pictures, max_bytes, owner=owner, cost=cost, label="fit", paid_for=True)


def _fit_all(pictures: tuple[Picture, ...], max_bytes: int) -> list[Picture]:
    return [fit_to_limit(picture, max_bytes) for picture in pictures]
