"""Image models without Discord: what each family takes, checks of requests and uploads, the API calls.

This is the one place that knows models' quirks (sizes, qualities, how many pictures a request may ask for);
converting the pictures themselves is bot/pictures.py's work.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from bot.api import OpenAIClient
from bot.config import Settings
from bot.errors import ApiError, ApiErrorKind, UserError
from bot.pictures import (
    MAX_PICTURE_BYTES,
    MB,
    PICTURE_KINDS,
    PICTURE_TYPES,
    EditInputs,
    ImageFile,
    InputRules,
    Picture,
    format_megabytes,
    read_picture,
)

log = logging.getLogger(__name__)

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

# What each endpoint takes as the picture to work on.
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
        return read_picture(base64.b64decode(encoded, validate=True))
    except (binascii.Error, OSError):  # Pillow's UnidentifiedImageError is an OSError
        raise ApiError(ApiErrorKind.SERVER_ERROR, "a picture in the images answer could not be read") from None


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
