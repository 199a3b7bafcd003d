"""Pictures without Discord: what image models take, checks and conversions of uploads, the API calls, fitting results.

Everything here works on bytes, so tests need neither Discord nor a network. The Pillow work is
CPU-bound: `prepare_for_endpoint` and `fit_for_discord` run it in the job runner, as the member's jobs.
Pillow only ever opens untrusted (or model-made) bytes with the plugins of the formats we take, so no other
of its many parsers sees them.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import aiohttp
from PIL import Image, ImageOps, UnidentifiedImageError

from bot.api import OpenAIClient
from bot.config import Settings
from bot.errors import ApiError, ApiErrorKind, UserError
from bot.jobs import JobRunner

log = logging.getLogger(__name__)

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
STANDARD_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
GPT_QUALITIES = ("auto", "low", "medium", "high")
# gpt-image-2's custom sizes (OpenAI spec): edges divisible by 16, aspect ratio within 3:1, at most 3840x2160.
CUSTOM_SIZE_STEP = 16
MAX_ASPECT_RATIO = 3.0
MAX_CUSTOM_EDGE = 3840
MAX_CUSTOM_PIXELS = 3840 * 2160
# The variations endpoint (DALL·E 2's) makes square pictures of these sizes only.
VARIATION_SIZES = ("256x256", "512x512", "1024x1024")
VARIATION_PROMPT = (
    "Create a variation of this image: keep its subject, composition, colours and style, "
    "and vary the details so it is clearly a new picture."
)
# Discord offers at most 25 choices per command option.
MAX_CHOICES = 25
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


GPT_INPUT = InputRules(frozenset({"PNG", "JPEG", "WEBP"}), MAX_PICTURE_BYTES)
# The variations endpoint and DALL·E 2 edits: "a valid PNG file, less than 4MB, and square".
SQUARE_PNG_INPUT = InputRules(frozenset({"PNG"}), 4 * MB, square=True)
# Other servers' models: PNG is the one format every implementation reads.
PNG_INPUT = InputRules(frozenset({"PNG"}), MAX_PICTURE_BYTES)


@dataclass(frozen=True)
class ModelFamily:
    """What a family of image models accepts: sizes, qualities, pictures to edit, prompt length."""

    name: str
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    edit_input: InputRules | None  # None: the family cannot edit pictures
    max_prompt_chars: int
    custom_sizes: bool = False  # any WIDTHxHEIGHT within gpt-image-2's limits
    any_size: bool = False  # another server's model: trust the owner's configuration
    answers_base64: bool = True  # GPT image models always do; the others answer with links unless asked
    max_per_request: int = 10  # `n` the API takes; more pictures take more requests

    def accepts_size(self, size: str) -> bool:
        """Whether a request for this size makes sense for the family."""
        if size in self.sizes or self.any_size:
            return True
        dimensions = parse_size(size)
        return self.custom_sizes and dimensions is not None and _is_custom_size(*dimensions)


GPT_IMAGE = ModelFamily("GPT image", STANDARD_SIZES, GPT_QUALITIES, GPT_INPUT, 32_000)
GPT_IMAGE_CUSTOM_SIZES = replace(GPT_IMAGE, custom_sizes=True)
# DALL·E 3 refuses any n but 1 with a 400.
DALL_E_3 = ModelFamily(
    "DALL·E 3",
    ("1024x1024", "1792x1024", "1024x1792"),
    ("standard", "hd"),
    None,
    4_000,
    answers_base64=False,
    max_per_request=1,
)
DALL_E_2 = ModelFamily("DALL·E 2", VARIATION_SIZES, ("standard",), SQUARE_PNG_INPUT, 1_000, answers_base64=False)
OTHER_SERVER = ModelFamily(
    "OpenAI-compatible", STANDARD_SIZES, GPT_QUALITIES, PNG_INPUT, 32_000, any_size=True, answers_base64=False
)


def model_family(model: str) -> ModelFamily:
    """The family a configured model name belongs to; unknown names are another server's models."""
    name = model.lower()
    if name.startswith(("gpt-image-1", "chatgpt-image")):
        return GPT_IMAGE
    if name.startswith("gpt-image"):
        return GPT_IMAGE_CUSTOM_SIZES  # gpt-image-2 and, presumably, its successors
    if name.startswith("dall-e-3"):
        return DALL_E_3
    if name.startswith("dall-e-2"):
        return DALL_E_2
    return OTHER_SERVER


def parse_size(size: str) -> tuple[int, int] | None:
    """(width, height) of a WIDTHxHEIGHT size, or None for `auto` and anything else."""
    width, separator, height = size.partition("x")
    if not (separator and width.isdigit() and height.isdigit()):
        return None
    return int(width), int(height)


def _is_custom_size(width: int, height: int) -> bool:
    if width <= 0 or height <= 0 or width % CUSTOM_SIZE_STEP or height % CUSTOM_SIZE_STEP:
        return False
    return (
        max(width, height) / min(width, height) <= MAX_ASPECT_RATIO
        and max(width, height) <= MAX_CUSTOM_EDGE
        and width * height <= MAX_CUSTOM_PIXELS
    )


@dataclass(frozen=True)
class ImageOptions:
    """The sizes and qualities the commands offer."""

    sizes: tuple[str, ...]
    qualities: tuple[str, ...]


def offered_options(settings: Settings) -> ImageOptions:
    """What to offer for the configured model: its family's own lists unless the owner chose, then what it takes."""
    family = model_family(settings.image_model)
    model = f"{settings.image_model} ({family.name})"
    sizes = _offered(
        "IMAGE_SIZES", settings.image_sizes, Settings.image_sizes, family.sizes, family.accepts_size, model
    )
    qualities = _offered(
        "IMAGE_QUALITIES",
        settings.image_qualities,
        Settings.image_qualities,
        family.qualities,
        lambda quality: quality in family.qualities,
        model,
    )
    log.info("Images with %s: sizes %s; qualities %s", model, ", ".join(sizes), ", ".join(qualities))
    return ImageOptions(sizes, qualities)


def _offered(
    setting: str,
    configured: tuple[str, ...],
    default: tuple[str, ...],
    family_values: tuple[str, ...],
    accepts: Callable[[str], bool],
    model: str,
) -> tuple[str, ...]:
    # Settings cannot tell "left unset" from "set to the default"; the default means "the model's own".
    if configured == default:
        return family_values
    unique = tuple(dict.fromkeys(configured))
    accepted = tuple(value for value in unique if accepts(value))
    if rejected := [value for value in unique if value not in accepted]:
        log.warning("%s: %s does not take %s; not offering them", setting, model, ", ".join(rejected))
    if not accepted:
        return family_values
    if len(accepted) > MAX_CHOICES:
        log.warning("%s: Discord shows at most %d choices; offering the first ones", setting, MAX_CHOICES)
    return accepted[:MAX_CHOICES]


def download_limit(settings: Settings) -> int:
    """The largest attachment worth downloading: what the models take, within the bot's download cap."""
    return min(MAX_PICTURE_BYTES, settings.max_download_bytes)


def input_rules(settings: Settings, model: str, *, variation: bool) -> InputRules:
    """What the endpoint that will get the picture takes; refuses when the model edits nothing."""
    if variation and settings.image_variations_endpoint:
        return SQUARE_PNG_INPUT
    rules = model_family(model).edit_input
    if rules is None:
        raise UserError(
            f"🖌️ The image model here (`{model}`) cannot edit pictures. "
            "An admin can choose a GPT image model with /settings model, or the bot's owner with IMAGE_MODEL."
        )
    return rules


def check_variation_size(settings: Settings, size: str | None) -> None:
    """Refuse a size the variations endpoint does not make, when variations go there."""
    if settings.image_variations_endpoint and size is not None and size not in VARIATION_SIZES:
        raise UserError(f"📐 Variations come in square sizes only: {', '.join(VARIATION_SIZES)}.")


def format_megabytes(size: int) -> str:
    """A byte count as people read it: 62.9 MB, 50 MB, 0.2 MB."""
    return f"{size / MB:.3g} MB"


def check_prompt(prompt: str, model: str) -> None:
    """Refuse a prompt longer than the model takes, before anything slow happens."""
    limit = model_family(model).max_prompt_chars
    if len(prompt) > limit:
        raise UserError(f"📏 That prompt is {len(prompt):,} characters; `{model}` takes at most {limit:,}.")


def check_choices(model: str, size: str | None, quality: str | None) -> None:
    """Refuse a size or quality the model here does not make."""
    # The choices Discord offers follow IMAGE_MODEL; a channel may use another model (/settings model).
    family = model_family(model)
    if size is not None and not family.accepts_size(size):
        raise UserError(f"📐 `{model}` does not make {size} pictures. It makes: {', '.join(family.sizes)}.")
    if quality is not None and not family.any_size and quality not in family.qualities:
        raise UserError(f"🎚️ `{model}` has no {quality} quality. It has: {', '.join(family.qualities)}.")


def check_upload(what: str, filename: str, content_type: str | None, size: int, max_bytes: int) -> None:
    """Refuse, before downloading it, an attachment that cannot be a picture the model takes."""
    name = _quoted(filename)
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in PICTURE_TYPES:
        described = f"({kind})" if kind else "(of a type Discord could not tell)"
        raise UserError(
            f"🖼️ {name} {described} is not a picture I can use. Attach a {PICTURE_KINDS} image as the {what}."
        )
    if size <= 0:
        raise UserError(f"🖼️ {name} is empty. Attach the {what} again.")
    if size > max_bytes:
        raise UserError(
            f"🖼️ {name} is {format_megabytes(size)}; the {what} can be at most {format_megabytes(max_bytes)}."
        )


def _quoted(filename: str) -> str:
    return "`" + filename.replace("`", "'") + "`"


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


@dataclass(frozen=True)
class ImageBatch:
    """The pictures of one API call and what the model said about them."""

    pictures: tuple[Picture, ...]
    revised_prompt: str | None = None
    # GPT image models bill by tokens as well; the answer's `usage` says how many (absent elsewhere).
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def size(self) -> str:
        """The pictures' size as the API writes sizes (they share one per call)."""
        first = self.pictures[0]
        return f"{first.width}x{first.height}"


def decode_batch(body: dict[str, Any]) -> ImageBatch:
    """The pictures of an images answer (`data[].b64_json`); an answer with none is the server's failure."""
    entries = [entry for entry in body.get("data") or [] if isinstance(entry, dict)]
    pictures = tuple(_decode_result(entry["b64_json"]) for entry in entries if isinstance(entry.get("b64_json"), str))
    if not pictures:
        links = " (only links, which means the server ignored response_format)" if entries else ""
        raise ApiError(ApiErrorKind.SERVER_ERROR, f"the images answer held no pictures{links}")
    revised = next((str(entry["revised_prompt"]) for entry in entries if entry.get("revised_prompt")), None)
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ImageBatch(pictures, revised, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))


def _decode_result(encoded: str) -> Picture:
    try:
        data = base64.b64decode(encoded, validate=True)
        with Image.open(io.BytesIO(data), formats=PICTURE_FORMATS) as image:
            return Picture(data, (image.format or "png").lower(), image.width, image.height)
    except (binascii.Error, UnidentifiedImageError, OSError):
        raise ApiError(ApiErrorKind.SERVER_ERROR, "a picture in the images answer could not be read") from None


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


@dataclass(frozen=True)
class DrawRequest:
    """What every images call shares: the model, how many pictures, their size, and whose request it is."""

    model: str
    count: int = 1
    size: str | None = None  # None: the model's default
    user: str | None = None  # a stable hash of the Discord user, for the provider's abuse detection

    def fields(self) -> dict[str, str]:
        """The request's parameters as text, for a JSON body or a multipart form."""
        fields = {"model": self.model, "n": str(self.count)}
        if self.size is not None:
            fields["size"] = self.size
        if not model_family(self.model).answers_base64:
            fields["response_format"] = "b64_json"
        if self.user:
            fields["user"] = self.user
        return fields


async def generate_images(api: OpenAIClient, request: DrawRequest, prompt: str, quality: str | None) -> ImageBatch:
    """Draw pictures from a prompt (POST /images/generations)."""

    async def call(part: DrawRequest) -> dict[str, Any]:
        body: dict[str, Any] = {**part.fields(), "prompt": prompt, "n": part.count}
        if quality is not None:
            body["quality"] = quality
        return await api.post_json("/images/generations", body, model=part.model)

    return await _in_requests(request, call)


async def edit_image(api: OpenAIClient, request: DrawRequest, prompt: str, inputs: EditInputs) -> ImageBatch:
    """Change a picture as the prompt says, where the mask is transparent if there is one (POST /images/edits)."""

    async def call(part: DrawRequest) -> dict[str, Any]:
        fields = {**part.fields(), "prompt": prompt}
        return await api.post_form("/images/edits", _form(fields, inputs.image, inputs.mask), model=part.model)

    return await _in_requests(request, call)


async def vary_image(api: OpenAIClient, request: DrawRequest, image: ImageFile, *, endpoint: bool) -> ImageBatch:
    """Variations of a picture: from the variations endpoint where the server has one, else as an edit."""
    if not endpoint:
        return await edit_image(api, request, VARIATION_PROMPT, EditInputs(image))

    async def call(part: DrawRequest) -> dict[str, Any]:
        # The variations endpoint answers with links unless asked, whatever the model.
        fields = {**part.fields(), "response_format": "b64_json"}
        return await api.post_form("/images/variations", _form(fields, image, None), model=part.model)

    return await _in_requests(request, call)


def _form(fields: dict[str, str], image: ImageFile, mask: ImageFile | None) -> Callable[[], aiohttp.FormData]:
    def build() -> aiohttp.FormData:
        form = aiohttp.FormData()
        for name, value in fields.items():
            form.add_field(name, value)
        form.add_field("image", image.data, filename=image.filename, content_type=image.content_type)
        if mask is not None:
            form.add_field("mask", mask.data, filename=mask.filename, content_type=mask.content_type)
        return form

    return build


async def _in_requests(request: DrawRequest, call: Callable[[DrawRequest], Awaitable[dict[str, Any]]]) -> ImageBatch:
    """All the pictures asked for, in as many requests, one after another, as the model needs (DALL·E 3: one each).

    When a later request fails, the pictures already made (and paid for) are kept; the caller notes the shortfall.
    """
    per_request = model_family(request.model).max_per_request
    portions = [per_request] * (request.count // per_request) + [request.count % per_request]
    batches: list[ImageBatch] = []
    for count in filter(None, portions):
        try:
            batches.append(decode_batch(await call(replace(request, count=count))))
        except ApiError as error:
            if not batches:
                raise
            log.warning("Stopped drawing with %s after %d requests: %s", request.model, len(batches), error)
            break
    return ImageBatch(
        tuple(picture for batch in batches for picture in batch.pictures),
        next((batch.revised_prompt for batch in batches if batch.revised_prompt), None),
        sum(batch.input_tokens for batch in batches),
        sum(batch.output_tokens for batch in batches),
    )
