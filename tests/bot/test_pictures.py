"""Pictures as bytes: checks and conversions of uploads, formats Pillow may parse, fitting results, the job runner."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
from collections.abc import AsyncIterator

import pytest
from PIL import BmpImagePlugin, Image, TgaImagePlugin, TiffImagePlugin
from PIL.ImageFile import ImageFile as PillowImageFile

from bot import pictures
from bot.errors import ApiError, UserError
from bot.images import GPT_INPUT, PNG_INPUT, SQUARE_PNG_INPUT, decode_batch
from bot.jobs import JobRunner, QueueFull, TooManyJobs
from bot.pictures import (
    EditInputs,
    InputRules,
    Picture,
    fit_for_discord,
    fit_to_limit,
    prepare_edit_inputs,
    prepare_for_endpoint,
)


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def solid(size: tuple[int, int] = (64, 48), colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Random pixels: they barely compress, so encoded sizes are predictable and large."""
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mask_png(size: tuple[int, int], hole: tuple[int, int, int, int] | None = (0, 0, 8, 8)) -> bytes:
    """An opaque mask with a fully transparent rectangle where the picture may change."""
    mask = Image.new("RGBA", size, (255, 255, 255, 255))
    if hole is not None:
        mask.paste((0, 0, 0, 0), hole)
    return encode(mask, "PNG")


# Checks and conversions of downloaded pictures


def test_a_picture_the_endpoint_takes_goes_unchanged() -> None:
    for image_format, filename in (("PNG", "image.png"), ("JPEG", "image.jpg"), ("WEBP", "image.webp")):
        data = encode(solid(), image_format)
        inputs = prepare_edit_inputs(data, None, GPT_INPUT)
        assert (inputs.image.data, inputs.image.filename, inputs.notes) == (data, filename, ())


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_jpeg_and_webp_become_png_where_the_endpoint_needs_png(image_format: str) -> None:
    inputs = prepare_edit_inputs(encode(solid((40, 30)), image_format), None, PNG_INPUT)
    assert (inputs.image.filename, inputs.image.content_type) == ("image.png", "image/png")
    assert opened(inputs.image.data).format == "PNG"
    assert opened(inputs.image.data).size == (40, 30)


def test_a_gif_becomes_its_first_frame_as_png() -> None:
    frames = [solid(colour=(255, 0, 0)), solid(colour=(0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    inputs = prepare_edit_inputs(data, None, GPT_INPUT)
    picture = opened(inputs.image.data).convert("RGB")
    assert picture.getpixel((0, 0)) == (255, 0, 0)
    assert "The GIF's first frame was used." in inputs.notes


def test_a_sideways_phone_photo_is_sent_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90° clockwise to view
    data = encode(solid((60, 20)), "JPEG", exif=exif)
    inputs = prepare_edit_inputs(data, None, GPT_INPUT)
    assert (inputs.image.width, inputs.image.height) == (20, 60)
    assert opened(inputs.image.data).size == (20, 60)


def test_bytes_that_are_no_picture_are_refused() -> None:
    with pytest.raises(UserError, match="can't read the picture"):
        prepare_edit_inputs(b"just some text, labelled image/png", None, GPT_INPUT)


def test_a_truncated_picture_is_refused() -> None:
    data = encode(noise((64, 64)), "PNG")
    with pytest.raises(UserError, match="damaged"):
        prepare_edit_inputs(data[: len(data) // 2], None, GPT_INPUT)


def test_a_format_the_models_do_not_take_is_refused_whatever_its_label() -> None:
    with pytest.raises(UserError, match="BMP I can't use"):
        prepare_edit_inputs(encode(solid(), "BMP"), None, GPT_INPUT)


def spy_on_plugin(monkeypatch: pytest.MonkeyPatch, plugin: type[PillowImageFile]) -> list[str]:
    """Note every time Pillow lets this plugin parse a file."""
    parsed: list[str] = []
    original = plugin._open

    def note_and_open(self: PillowImageFile) -> None:
        parsed.append(plugin.format)
        original(self)

    monkeypatch.setattr(plugin, "_open", note_and_open)
    return parsed


@pytest.mark.parametrize(
    ("image_format", "plugin"), [("TIFF", TiffImagePlugin.TiffImageFile), ("BMP", BmpImagePlugin.BmpImageFile)]
)
def test_a_picture_in_another_format_is_refused_without_its_plugin_parsing_it(
    monkeypatch: pytest.MonkeyPatch, image_format: str, plugin: type[PillowImageFile]
) -> None:
    parsed = spy_on_plugin(monkeypatch, plugin)
    data = encode(solid(), image_format)  # a valid file Pillow reads, sent as image/png
    with pytest.raises(UserError, match=f"The picture is a {image_format} I can't use. Send a PNG, JPEG, WebP or GIF"):
        prepare_edit_inputs(data, None, GPT_INPUT)
    assert parsed == []


def test_bytes_without_any_signature_reach_no_plugin_that_would_try_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = spy_on_plugin(monkeypatch, TgaImagePlugin.TgaImageFile)  # TGA has no signature: Pillow tries it on all
    with pytest.raises(UserError, match="can't read the picture"):
        prepare_edit_inputs(b"a text file, labelled image/png " * 20, None, GPT_INPUT)
    assert parsed == []


def test_a_picture_with_too_many_pixels_is_refused() -> None:
    data = encode(Image.new("1", (8000, 7000)), "PNG")  # 56 megapixels, a few kB as a 1-bit PNG
    with pytest.raises(UserError, match="8000×7000 pixels; I take at most 50 megapixels"):
        prepare_edit_inputs(data, None, GPT_INPUT)


def test_square_only_endpoints_get_the_centre_square() -> None:
    picture = Image.new("RGB", (90, 30), (255, 0, 0))
    picture.paste((0, 255, 0), (30, 0, 60, 30))  # the centre square is green
    inputs = prepare_edit_inputs(encode(picture, "PNG"), None, SQUARE_PNG_INPUT)
    result = opened(inputs.image.data).convert("RGB")
    assert result.size == (30, 30)
    assert {result.getpixel((0, 0)), result.getpixel((29, 29))} == {(0, 255, 0)}
    assert any("centre square" in note for note in inputs.notes)


def test_a_picture_over_the_endpoint_limit_is_scaled_down_to_fit() -> None:
    rules = InputRules(frozenset({"PNG"}), 60_000)
    inputs = prepare_edit_inputs(encode(noise((256, 256)), "PNG"), None, rules)
    assert len(inputs.image.data) <= 60_000
    assert inputs.image.width < 256
    assert opened(inputs.image.data).size == (inputs.image.width, inputs.image.height)
    assert any("scaled down" in note for note in inputs.notes)


def test_a_mask_of_the_pictures_size_keeps_its_transparency_as_png() -> None:
    inputs = prepare_edit_inputs(encode(solid((64, 48)), "JPEG"), mask_png((64, 48)), GPT_INPUT)
    assert inputs.mask is not None
    mask = opened(inputs.mask.data)
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", (64, 48))
    assert mask.getpixel((0, 0))[3] == 0
    assert mask.getpixel((40, 40))[3] == 255
    assert inputs.notes == ()


def test_a_mask_of_the_same_shape_but_another_scale_is_resized() -> None:
    inputs = prepare_edit_inputs(encode(solid((64, 48)), "PNG"), mask_png((32, 24), (0, 0, 4, 4)), GPT_INPUT)
    assert inputs.mask is not None
    mask = opened(inputs.mask.data)
    assert mask.size == (64, 48)
    assert mask.getpixel((7, 7))[3] == 0
    assert mask.getpixel((9, 9))[3] == 255
    assert "The mask was resized from 32×24 to the picture's 64×48." in inputs.notes


def test_a_mask_of_another_shape_is_refused() -> None:
    with pytest.raises(UserError, match="The mask is 48×48 but the picture is 64×48: their shapes differ"):
        prepare_edit_inputs(encode(solid((64, 48)), "PNG"), mask_png((48, 48)), GPT_INPUT)


def test_a_mask_without_transparent_pixels_is_refused() -> None:
    with pytest.raises(UserError, match="no transparent pixels"):
        prepare_edit_inputs(encode(solid((64, 48)), "PNG"), encode(solid((64, 48)), "JPEG"), GPT_INPUT)


def test_a_webp_mask_with_transparency_becomes_png() -> None:
    mask = Image.new("RGBA", (64, 48), (255, 255, 255, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 10, 10))
    inputs = prepare_edit_inputs(encode(solid((64, 48)), "PNG"), encode(mask, "WEBP", lossless=True), GPT_INPUT)
    assert inputs.mask is not None
    assert (opened(inputs.mask.data).format, inputs.mask.filename) == ("PNG", "mask.png")


def test_the_mask_follows_the_picture_when_it_is_cropped_and_scaled() -> None:
    rules = InputRules(frozenset({"PNG"}), 40_000, square=True)
    inputs = prepare_edit_inputs(encode(noise((240, 160)), "PNG"), mask_png((240, 160), (40, 0, 60, 20)), rules)
    assert inputs.mask is not None
    mask = opened(inputs.mask.data)
    assert mask.size == (inputs.image.width, inputs.image.height)
    assert inputs.image.width < 160
    assert mask.getpixel((0, 0))[3] == 0  # the hole sat at the left edge of the centre square
    assert mask.getpixel((mask.width - 1, mask.height - 1))[3] == 255


# Pictures a model made


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_models_picture_in_another_format_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = spy_on_plugin(monkeypatch, BmpImagePlugin.BmpImageFile)
    with pytest.raises(ApiError, match="could not be read"):
        decode_batch({"data": [{"b64_json": b64(encode(solid(), "BMP"))}]})
    assert parsed == []


# Fitting results to Discord's upload limit


def picture_of(image: Image.Image) -> Picture:
    return Picture(encode(image, "PNG"), "png", image.width, image.height)


def test_a_picture_within_the_limit_is_sent_as_it_is() -> None:
    picture = picture_of(noise((64, 64)))
    assert fit_to_limit(picture, len(picture.data)) is picture


def test_an_opaque_picture_over_the_limit_becomes_a_jpeg_that_fits() -> None:
    picture = picture_of(noise((512, 512)))
    fitted = fit_to_limit(picture, 100_000)
    assert fitted.format == "jpeg"
    assert len(fitted.data) <= 100_000
    assert opened(fitted.data).format == "JPEG"
    assert opened(fitted.data).size == (fitted.width, fitted.height)


def test_a_transparent_picture_over_the_limit_becomes_a_webp_that_keeps_transparency() -> None:
    image = noise((256, 256), "RGBA")
    image.putalpha(Image.new("L", image.size, 0))
    fitted = fit_to_limit(picture_of(image), 5_000)
    assert (fitted.format, fitted.extension) == ("webp", "webp")
    assert len(fitted.data) <= 5_000
    assert opened(fitted.data).convert("RGBA").getpixel((0, 0))[3] == 0


# Picture work in the job runner


@pytest.fixture
async def jobs() -> AsyncIterator[JobRunner]:
    runner = JobRunner(workers=1, per_owner=1, max_queued_seconds=10)
    runner.start()
    yield runner
    runner.stop()


async def test_pictures_are_prepared_in_the_job_runner(jobs: JobRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []

    def prepare(*args: object) -> EditInputs:
        threads.append(threading.current_thread().name)
        return prepare_edit_inputs(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pictures, "prepare_edit_inputs", prepare)
    data = encode(solid(), "PNG")
    inputs = await prepare_for_endpoint(jobs, data, mask_png((64, 48)), GPT_INPUT, owner=1)
    assert inputs.image.data == data
    assert inputs.mask is not None
    assert threads == ["jobs-1"]


async def test_the_job_is_sized_by_the_pictures_pixels(jobs: JobRunner) -> None:
    data = encode(Image.new("1", (5000, 5000)), "PNG")  # 25 megapixels in a few kB: about 12 s of work
    with pytest.raises(QueueFull, match="would take me too long"):
        await prepare_for_endpoint(jobs, data, None, GPT_INPUT, owner=1)


async def test_a_picture_over_the_pixel_limit_is_refused_from_its_header(jobs: JobRunner) -> None:
    data = encode(Image.new("1", (8000, 7000)), "PNG")  # refused before any job sized by its pixels
    with pytest.raises(UserError, match="8000×7000 pixels; I take at most 50 megapixels"):
        await prepare_for_endpoint(jobs, data, None, GPT_INPUT, owner=1)


async def test_a_member_preparing_a_picture_already_waits_for_it(jobs: JobRunner) -> None:
    release = threading.Event()
    busy = asyncio.ensure_future(jobs.run(release.wait, 5, owner=1, cost=1, label="busy"))
    await asyncio.sleep(0.01)
    with pytest.raises(TooManyJobs, match="You already have 1 file being processed"):
        await prepare_for_endpoint(jobs, encode(solid(), "PNG"), None, GPT_INPUT, owner=1)
    release.set()
    await busy


async def test_fitting_paid_pictures_is_never_refused(jobs: JobRunner) -> None:
    release = threading.Event()
    busy = asyncio.ensure_future(jobs.run(release.wait, 5, owner=1, cost=1, label="busy"))
    await asyncio.sleep(0.01)
    big, small = picture_of(noise((512, 512))), picture_of(noise((16, 16)))
    fitting = asyncio.ensure_future(fit_for_discord(jobs, (big, small), 100_000, owner=1))
    await asyncio.sleep(0.01)
    release.set()
    fitted, kept = await fitting
    assert (fitted.format, kept) == ("jpeg", small)
    assert len(fitted.data) <= 100_000
    await busy


async def test_pictures_that_fit_need_no_job(jobs: JobRunner) -> None:
    jobs.stop()  # a job would fail now
    pictures = (picture_of(noise((16, 16))),)
    assert await fit_for_discord(jobs, pictures, 100_000, owner=1) == list(pictures)
