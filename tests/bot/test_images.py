"""Image models without Discord: families and their choices, upload checks, answers, requests to the fake API."""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from bot.api import OpenAIClient
from bot.config import Settings
from bot.errors import ApiError, ApiErrorKind, UserError
from bot.images import (
    GPT_INPUT,
    MB,
    SQUARE_PNG_INPUT,
    VARIATION_PROMPT,
    DrawRequest,
    check_choices,
    check_prompt,
    check_upload,
    check_variation_size,
    decode_batch,
    download_limit,
    edit_image,
    generate_images,
    input_rules,
    offered_options,
    vary_image,
)
from bot.pictures import EditInputs, ImageFile
from tests.fakes.openai_server import FakeOpenAI, ImagesReply, moderation_blocked, org_not_verified, quota_exhausted

KEY = "sk-test-key"


def settings(**env: str) -> Settings:
    return Settings.from_env({"DISCORD_TOKEN": "token", "OPENAI_API_KEY": KEY, **env})


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def solid(size: tuple[int, int] = (64, 48), colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def mask_png(size: tuple[int, int], hole: tuple[int, int, int, int] | None = (0, 0, 8, 8)) -> bytes:
    """An opaque mask with a fully transparent rectangle where the picture may change."""
    mask = Image.new("RGBA", size, (255, 255, 255, 255))
    if hole is not None:
        mask.paste((0, 0, 0, 0), hole)
    return encode(mask, "PNG")


# Model families and the choices they offer


def test_default_settings_offer_the_gpt_image_sizes_and_qualities() -> None:
    options = offered_options(settings())
    assert options.sizes == ("auto", "1024x1024", "1536x1024", "1024x1536")
    assert options.qualities == ("auto", "low", "medium", "high")


def test_dall_e_3_with_default_settings_offers_its_own_sizes_and_qualities() -> None:
    options = offered_options(settings(IMAGE_MODEL="dall-e-3"))
    assert options.sizes == ("1024x1024", "1792x1024", "1024x1792")
    assert options.qualities == ("standard", "hd")


def test_gpt_image_2_offers_valid_custom_sizes_and_drops_the_rest() -> None:
    configured = "1024x1024,1536x864,1000x1000,4096x1024,3840x2160"
    options = offered_options(settings(IMAGE_MODEL="gpt-image-2", IMAGE_SIZES=configured))
    # 1000 is not a multiple of 16; 4096x1024 is wider than 3:1; 3840x2160 is the largest allowed.
    assert options.sizes == ("1024x1024", "1536x864", "3840x2160")


def test_gpt_image_1_takes_only_the_standard_sizes() -> None:
    options = offered_options(settings(IMAGE_MODEL="gpt-image-1", IMAGE_SIZES="1536x864,1024x1024"))
    assert options.sizes == ("1024x1024",)


def test_sizes_the_model_cannot_make_fall_back_to_its_own_list() -> None:
    options = offered_options(settings(IMAGE_MODEL="dall-e-2", IMAGE_SIZES="1536x1024"))
    assert options.sizes == ("256x256", "512x512", "1024x1024")


def test_the_owner_is_told_which_configured_sizes_are_not_offered(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.images"):
        offered_options(settings(IMAGE_MODEL="gpt-image-1.5", IMAGE_SIZES="1024x1024,1792x1024"))
    assert "IMAGE_SIZES: gpt-image-1.5 (GPT image) does not take 1792x1024; not offering them" in caplog.messages


def test_another_servers_model_offers_the_configured_sizes_as_they_are() -> None:
    options = offered_options(
        settings(IMAGE_MODEL="flux-schnell", IMAGE_SIZES="768x768,1000x600", IMAGE_QUALITIES="low")
    )
    assert options.sizes == ("768x768", "1000x600")
    assert options.qualities == ("low",)


def test_configured_qualities_are_offered_in_their_order_without_repeats() -> None:
    options = offered_options(settings(IMAGE_QUALITIES="high,low,high"))
    assert options.qualities == ("high", "low")


def test_dall_e_3_offers_the_configured_dall_e_qualities(caplog: pytest.LogCaptureFixture) -> None:
    assert offered_options(settings(IMAGE_MODEL="dall-e-3", IMAGE_QUALITIES="hd,standard")).qualities == (
        "hd",
        "standard",
    )
    with caplog.at_level(logging.WARNING, logger="bot.images"):
        gpt = offered_options(settings(IMAGE_MODEL="gpt-image-2", IMAGE_QUALITIES="hd,high"))
    assert gpt.qualities == ("high",)
    assert "IMAGE_QUALITIES: gpt-image-2 (GPT image) does not take hd; not offering them" in caplog.messages


def test_a_model_that_cannot_edit_refuses_edits_and_variations() -> None:
    with pytest.raises(UserError, match=r"`dall-e-3`\) cannot edit pictures"):
        input_rules(settings(IMAGE_MODEL="dall-e-3"), "dall-e-3", variation=True)


def test_variations_go_to_the_variations_endpoint_as_square_pngs_when_configured() -> None:
    configured = settings(IMAGE_MODEL="dall-e-3", IMAGE_VARIATIONS_ENDPOINT="true")
    assert input_rules(configured, configured.image_model, variation=True) == SQUARE_PNG_INPUT
    assert input_rules(settings(), "gpt-image-2", variation=True) == GPT_INPUT


def test_the_variations_endpoint_refuses_non_square_sizes() -> None:
    check_variation_size(settings(IMAGE_VARIATIONS_ENDPOINT="true"), "512x512")
    check_variation_size(settings(), "1536x1024")  # as an edit, any size the model takes
    with pytest.raises(UserError, match="square sizes only"):
        check_variation_size(settings(IMAGE_VARIATIONS_ENDPOINT="true"), "1536x1024")


def test_a_prompt_longer_than_the_model_takes_is_refused() -> None:
    check_prompt("a" * 4000, "gpt-image-2")
    with pytest.raises(UserError, match="1,200 characters; `dall-e-2` takes at most 1,000"):
        check_prompt("a" * 1200, "dall-e-2")


# Checks on what Discord says about an attachment, before downloading it


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/webp", "image/gif"])
def test_pictures_discord_calls_images_pass(content_type: str) -> None:
    check_upload("picture", "cat", content_type, 1000, 50 * MB)


def test_a_text_file_is_refused_by_its_type() -> None:
    with pytest.raises(UserError, match=r"`notes.txt` \(text/plain\) is not a picture I can use"):
        check_upload("picture", "notes.txt", "text/plain; charset=utf-8", 120, 50 * MB)


def test_a_file_of_unknown_type_is_refused() -> None:
    with pytest.raises(UserError, match="could not tell"):
        check_upload("mask", "blob", None, 120, 50 * MB)


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(UserError, match=re.escape("`empty.png` is empty")):
        check_upload("picture", "empty.png", "image/png", 0, 50 * MB)


def test_a_60_mb_file_is_refused_with_both_sizes() -> None:
    with pytest.raises(UserError, match=re.escape("`huge.png` is 62.9 MB; the picture can be at most 50 MB")):
        check_upload("picture", "huge.png", "image/png", 60 * 1024 * 1024, download_limit(settings()))


def test_the_download_cap_lowers_the_limit() -> None:
    assert download_limit(settings()) == 50 * MB
    assert download_limit(settings(MAX_DOWNLOAD_MB="8")) == 8 * MB


# Answers of the images endpoints


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_an_answer_decodes_to_pictures_with_their_size_and_revised_prompt() -> None:
    png = encode(solid((30, 20)), "PNG")
    batch = decode_batch({"data": [{"b64_json": b64(png), "revised_prompt": "A red card"}, {"b64_json": b64(png)}]})
    assert [picture.data for picture in batch.pictures] == [png, png]
    assert (batch.size, batch.revised_prompt, batch.pictures[0].extension) == ("30x20", "A red card", "png")


def test_an_answer_with_only_links_is_the_servers_failure() -> None:
    with pytest.raises(ApiError, match="only links") as caught:
        decode_batch({"data": [{"url": "https://example.com/a.png"}]})
    assert caught.value.kind is ApiErrorKind.SERVER_ERROR


def test_an_answer_with_a_broken_picture_is_the_servers_failure() -> None:
    with pytest.raises(ApiError, match="could not be read"):
        decode_batch({"data": [{"b64_json": "not base64!"}]})


# Requests to the fake OpenAI server, checked against the spec


@pytest.fixture
async def api(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIClient]:
    async with aiohttp.ClientSession() as session:
        yield OpenAIClient(session, base_url=fake_openai.base_url, api_key=KEY, timeout_seconds=5, max_retries=0)


def png_file(size: tuple[int, int] = (64, 64)) -> ImageFile:
    return ImageFile(encode(solid(size), "PNG"), "image.png", "image/png", *size)


async def test_generation_sends_the_options_as_json_and_returns_the_pictures(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    request = DrawRequest("gpt-image-2", count=2, size="1536x1024", user="hash-of-user")
    batch = await generate_images(api, request, "a lighthouse at dusk", "high")
    body = fake_openai.requests_to("/images/generations")[0].json
    assert body == {
        "model": "gpt-image-2",
        "prompt": "a lighthouse at dusk",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "user": "hash-of-user",
    }
    assert [(picture.width, picture.height) for picture in batch.pictures] == [(1536, 1024)] * 2


async def test_generation_leaves_out_what_the_user_did_not_choose(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    await generate_images(api, DrawRequest("gpt-image-2"), "a cat", None)
    assert fake_openai.requests_to("/images/generations")[0].json == {"model": "gpt-image-2", "prompt": "a cat", "n": 1}


async def test_models_that_answer_with_links_are_asked_for_base64(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    await generate_images(api, DrawRequest("dall-e-3"), "a cat", "hd")
    assert fake_openai.requests_to("/images/generations")[0].json["response_format"] == "b64_json"


async def test_dall_e_3_makes_the_pictures_asked_for_one_request_each(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue("/images/generations", ImagesReply(revised_prompt="A grey cat"), ImagesReply(), ImagesReply())
    batch = await generate_images(api, DrawRequest("dall-e-3", count=3, size="1024x1024"), "a cat", "hd")
    sent = fake_openai.requests_to("/images/generations")
    assert [request.json["n"] for request in sent] == [1, 1, 1]
    assert {request.json["prompt"] for request in sent} == {"a cat"}
    assert (len(batch.pictures), batch.size, batch.revised_prompt) == (3, "1024x1024", "A grey cat")
    assert batch.output_tokens == 3 * 1056  # what the fake bills per picture


async def test_when_a_later_request_fails_the_pictures_made_are_kept(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue("/images/generations", ImagesReply(), quota_exhausted())
    batch = await generate_images(api, DrawRequest("dall-e-3", count=3), "a cat", None)
    assert len(batch.pictures) == 1
    assert len(fake_openai.requests_to("/images/generations")) == 2  # no third request after the failure


async def test_when_the_first_of_several_requests_fails_the_error_reaches_the_caller(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue("/images/generations", moderation_blocked())
    with pytest.raises(ApiError) as caught:
        await generate_images(api, DrawRequest("dall-e-3", count=2), "something refused", None)
    assert caught.value.kind is ApiErrorKind.SAFETY_REFUSAL
    assert len(fake_openai.requests_to("/images/generations")) == 1


async def test_the_revised_prompt_comes_back_with_the_pictures(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue("/images/generations", ImagesReply(revised_prompt="A tabby cat on a windowsill"))
    batch = await generate_images(api, DrawRequest("gpt-image-2"), "a cat", None)
    assert batch.revised_prompt == "A tabby cat on a windowsill"


async def test_an_edit_sends_the_picture_and_mask_as_a_form(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    mask = ImageFile(mask_png((64, 64)), "mask.png", "image/png", 64, 64)
    inputs = EditInputs(png_file(), mask)
    request = DrawRequest("gpt-image-2", count=3, size="1024x1024", user="hash-of-user")
    batch = await edit_image(api, request, "add a hat", inputs)
    sent = fake_openai.requests_to("/images/edits")[0]
    assert sent.fields == {
        "model": "gpt-image-2",
        "n": "3",
        "size": "1024x1024",
        "user": "hash-of-user",
        "prompt": "add a hat",
    }
    assert sent.files["image"] == ("image.png", "image/png", inputs.image.data)
    assert sent.files["mask"] == ("mask.png", "image/png", mask.data)
    assert len(batch.pictures) == 3


async def test_a_variation_is_an_edit_against_openai(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    image = png_file()
    await vary_image(api, DrawRequest("gpt-image-2", count=2), image, endpoint=False)
    sent = fake_openai.requests_to("/images/edits")[0]
    assert sent.fields["prompt"] == VARIATION_PROMPT
    assert sent.files["image"] == ("image.png", "image/png", image.data)
    assert "mask" not in sent.files
    assert fake_openai.requests_to("/images/variations") == []


async def test_a_variation_uses_the_variations_endpoint_where_the_server_has_one(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    await vary_image(api, DrawRequest("sd-turbo", count=2, size="512x512"), png_file(), endpoint=True)
    sent = fake_openai.requests_to("/images/variations")[0]
    assert sent.fields == {"model": "sd-turbo", "n": "2", "size": "512x512", "response_format": "b64_json"}
    assert sent.files["image"][:2] == ("image.png", "image/png")
    assert fake_openai.requests_to("/images/edits") == []


async def test_a_safety_refusal_is_classified_as_one(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue("/images/generations", moderation_blocked())
    with pytest.raises(ApiError) as caught:
        await generate_images(api, DrawRequest("gpt-image-2"), "something refused", None)
    assert caught.value.kind is ApiErrorKind.SAFETY_REFUSAL


async def test_openais_bare_403_for_image_models_means_the_organization_is_not_verified(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue("/images/edits", org_not_verified())
    with pytest.raises(ApiError) as caught:
        await edit_image(api, DrawRequest("gpt-image-2"), "add a hat", EditInputs(png_file()))
    assert caught.value.kind is ApiErrorKind.ORGANIZATION_NOT_VERIFIED
    assert "Settings → Organization → General" in caught.value.user_message()


async def test_other_errors_pass_through_unchanged(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue("/images/generations", quota_exhausted())
    with pytest.raises(ApiError) as caught:
        await generate_images(api, DrawRequest("gpt-image-2"), "a cat", None)
    assert caught.value.kind is ApiErrorKind.QUOTA_EXHAUSTED


def test_choices_the_channels_model_does_not_make_are_refused_with_what_it_does() -> None:
    check_choices("gpt-image-2", "1536x1024", "low")
    check_choices("gpt-image-2", "2048x1152", None)  # gpt-image-2 takes custom sizes
    with pytest.raises(UserError, match=re.escape("`dall-e-3` does not make 1536x1024 pictures. It makes: 1024x1024")):
        check_choices("dall-e-3", "1536x1024", None)
    with pytest.raises(UserError, match=re.escape("`dall-e-3` has no low quality. It has: standard, hd")):
        check_choices("dall-e-3", None, "low")
