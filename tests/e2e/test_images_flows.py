"""/image end to end: the real bot on the Discord emulator, drawing through the fake OpenAI server."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import discord
import pytest
from PIL import Image

from bot.bot import Bot
from bot.errors import ApiError, ApiErrorKind
from bot.images import VARIATION_PROMPT
from cogs.images import DRAWING
from tests.databases import query
from tests.e2e.conftest import BotRunner
from tests.fakes.discord_emulator import DiscordEmulator, EmuFile, EmuInteraction, EmuMessage, Perm
from tests.fakes.openai_server import (
    FakeOpenAI,
    ImagesReply,
    ModerationReply,
    moderation_blocked,
    org_not_verified,
    quota_exhausted,
)

# The fake answers within milliseconds; the bot still has to download, convert and upload.
ANSWER_TIMEOUT = 10.0


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (96, 64)) -> EmuFile:
    return EmuFile("cat.jpg", encode(Image.new("RGB", size, (200, 120, 40)), "JPEG"), "image/jpeg")


def mask(size: tuple[int, int] = (96, 64)) -> EmuFile:
    image = Image.new("RGBA", size, (255, 255, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 20, 20))
    return EmuFile("mask.png", encode(image, "PNG"), "image/png")


@pytest.fixture
async def bot(run_bot: BotRunner) -> AsyncIterator[Bot]:
    """The bot with the default image settings (gpt-image-2, variations as edits)."""
    async with run_bot() as running:
        yield running


async def image_command(emulator: DiscordEmulator, subcommand: str, **options: object) -> EmuInteraction:
    return await emulator.invoke_slash(emulator.member, emulator.general.id, "image", {subcommand: options})


async def final_answer(emulator: DiscordEmulator, interaction: EmuInteraction) -> EmuMessage:
    """The deferred message once it no longer shows the drawing state."""

    def finished() -> EmuMessage | None:
        original = interaction.original
        return original if original is not None and original.content not in ("", DRAWING) else None

    return await emulator.wait_for(finished, timeout=ANSWER_TIMEOUT, what="the pictures or an error")


async def usage_rows(bot: Bot) -> list[tuple[object, ...]]:
    return await query(
        bot.settings.database_url,
        "SELECT feature, model, user_id, guild_id, channel_id, images, image_size, output_tokens > 0 FROM usage",
    )


def picture_size(attachment_data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(attachment_data)) as image:
        return image.size


async def test_generate_defers_at_once_then_shows_the_prompt_and_the_pictures(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    interaction = await image_command(
        emulator, "generate", prompt="a lighthouse at dusk", count=2, size="1536x1024", quality="high"
    )
    answer = await final_answer(emulator, interaction)

    assert interaction.callback_type == 5 and interaction.deferred_at is not None and interaction.deferred_at < 1.0
    assert answer.revisions == ["", DRAWING, f"🎨 {emulator.member.mention} asked for: a lighthouse at dusk"]
    assert [attachment.filename for attachment in answer.attachments] == ["image-1.png", "image-2.png"]
    assert [picture_size(attachment.data) for attachment in answer.attachments] == [(1536, 1024)] * 2
    assert fake_openai.requests_to("/images/generations")[0].json == {
        "model": "gpt-image-2",
        "prompt": "a lighthouse at dusk",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "user": bot.identity.safety_identifier(emulator.member.id),
    }


async def test_every_generated_picture_is_counted(emulator: DiscordEmulator, bot: Bot) -> None:
    await final_answer(emulator, await image_command(emulator, "generate", prompt="three cats", count=3))

    assert await usage_rows(bot) == [
        ("images", "gpt-image-2", emulator.member.id, emulator.guild_id, emulator.general.id, 3, "1024x1024", 1)
    ]  # with the tokens the API reported, for models priced by tokens


async def test_the_models_revised_prompt_is_shown_under_the_prompt(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.queue("/images/generations", ImagesReply(revised_prompt="A red lighthouse on a cliff at dusk"))

    answer = await final_answer(emulator, await image_command(emulator, "generate", prompt="a lighthouse"))

    assert answer.content.endswith("\n-# The model drew it as: A red lighthouse on a cliff at dusk")


async def test_edit_sends_the_picture_and_its_mask_and_shows_the_result(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    picture = photo()

    interaction = await image_command(emulator, "edit", image=picture, prompt="add a hat", mask=mask())
    answer = await final_answer(emulator, interaction)

    sent = fake_openai.requests_to("/images/edits")[0]
    assert sent.fields["prompt"] == "add a hat"
    assert sent.files["image"] == ("image.jpg", "image/jpeg", picture.data)  # GPT image models take JPEG
    mask_sent = Image.open(io.BytesIO(sent.files["mask"][2]))
    assert (mask_sent.format, mask_sent.size, mask_sent.getpixel((0, 0))[3]) == ("PNG", (96, 64), 0)
    assert answer.content == f"🖌️ {emulator.member.mention} edited a picture: add a hat"
    assert [attachment.filename for attachment in answer.attachments] == ["image-1.png"]


async def test_edit_without_a_mask_sends_a_png_as_it_is(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    picture = EmuFile("drawing.png", encode(Image.new("RGB", (64, 64), (10, 200, 90)), "PNG"), "image/png")

    answer = await final_answer(emulator, await image_command(emulator, "edit", image=picture, prompt="make it blue"))

    sent = fake_openai.requests_to("/images/edits")[0]
    assert sent.files["image"] == ("image.png", "image/png", picture.data)
    assert "mask" not in sent.files
    assert [attachment.filename for attachment in answer.attachments] == ["image-1.png"]


async def test_a_mask_of_another_shape_is_refused_in_place_of_the_drawing_state(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    interaction = await image_command(emulator, "edit", image=photo(), prompt="add a hat", mask=mask((64, 64)))
    answer = await final_answer(emulator, interaction)

    assert answer.content.startswith("🎭 The mask is 64×64 but the picture is 96×64")
    assert answer.attachments == []
    assert fake_openai.requests == []


async def test_variation_is_an_edit_with_the_image_model_against_openai(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    answer = await final_answer(emulator, await image_command(emulator, "variation", image=photo(), count=2))

    sent = fake_openai.requests_to("/images/edits")[0]
    assert (sent.fields["model"], sent.fields["prompt"], sent.fields["n"]) == ("gpt-image-2", VARIATION_PROMPT, "2")
    assert fake_openai.requests_to("/images/variations") == []
    assert answer.content == f"🔀 {emulator.member.mention} asked for variations of a picture"
    assert len(answer.attachments) == 2


async def test_variation_uses_the_servers_variations_endpoint_when_configured(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(IMAGE_MODEL="sd-turbo", IMAGE_VARIATIONS_ENDPOINT="true") as bot:
        interaction = await image_command(emulator, "variation", image=photo(), size="1024x1024")
        answer = await final_answer(emulator, interaction)

    sent = fake_openai.requests_to("/images/variations")[0]
    assert sent.fields == {
        "model": "sd-turbo",
        "n": "1",
        "size": "1024x1024",
        "response_format": "b64_json",
        "user": bot.identity.safety_identifier(emulator.member.id),
    }
    uploaded = Image.open(io.BytesIO(sent.files["image"][2]))
    assert (uploaded.format, uploaded.size) == ("PNG", (64, 64))  # the endpoint takes square PNGs
    assert "cropped to its centre square" in answer.content
    assert fake_openai.requests_to("/images/edits") == []


async def test_pictures_over_the_upload_limit_are_reencoded_until_they_fit(emulator: DiscordEmulator, bot: Bot) -> None:
    emulator.filesize_limit = 4_000  # the fake's 1024×1024 PNG is about 4.5 kB

    answer = await final_answer(emulator, await image_command(emulator, "generate", prompt="a calm sea"))

    attachment = answer.attachments[0]
    assert attachment.filename == "image-1.jpg"
    assert len(attachment.data) <= 4_000
    assert "-# Re-encoded as JPEG to fit this channel's upload limit." in answer.content


async def test_a_safety_refusal_says_so_in_plain_words(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.queue("/images/generations", moderation_blocked())

    answer = await final_answer(emulator, await image_command(emulator, "generate", prompt="something refused"))

    assert answer.content == ApiError(ApiErrorKind.SAFETY_REFUSAL, "").user_message()
    assert answer.attachments == []
    assert await usage_rows(bot) == []


async def test_an_unverified_organization_tells_the_owner_what_to_do(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.queue("/images/generations", org_not_verified())

    answer = await final_answer(emulator, await image_command(emulator, "generate", prompt="a cat"))

    assert answer.content == ApiError(ApiErrorKind.ORGANIZATION_NOT_VERIFIED, "").user_message()


async def test_exhausted_credit_reads_as_it_does_in_conversations(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.queue("/images/generations", quota_exhausted())

    answer = await final_answer(emulator, await image_command(emulator, "generate", prompt="a cat"))

    assert answer.content == ApiError(ApiErrorKind.QUOTA_EXHAUSTED, "").user_message()


async def test_a_text_file_gets_a_short_answer_and_no_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    notes = EmuFile("notes.txt", b"not a picture", "text/plain; charset=utf-8")

    interaction = await (await image_command(emulator, "variation", image=notes)).wait_done()

    assert interaction.ephemeral and interaction.original is not None
    assert interaction.original.content.startswith("🖼️ `notes.txt` (text/plain) is not a picture I can use.")
    assert fake_openai.requests == []


async def test_an_empty_file_gets_a_short_answer_and_no_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    empty = EmuFile("empty.png", b"", "image/png")

    interaction = await (await image_command(emulator, "edit", image=empty, prompt="add a hat")).wait_done()

    assert interaction.original is not None and interaction.original.content == (
        "🖼️ `empty.png` is empty. Attach the picture again."
    )
    assert fake_openai.requests == []


async def test_a_60_mb_picture_is_refused_without_downloading_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads: list[str] = []
    real_read = discord.Attachment.read

    async def recording_read(self: discord.Attachment, **kwargs: bool) -> bytes:
        downloads.append(self.filename)
        return await real_read(self, **kwargs)

    monkeypatch.setattr(discord.Attachment, "read", recording_read)
    huge = EmuFile("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(60 * 1024 * 1024), "image/png")

    interaction = await (await image_command(emulator, "variation", image=huge)).wait_done()

    assert interaction.original is not None and interaction.original.content == (
        "🖼️ `huge.png` is 62.9 MB; the picture can be at most 50 MB."
    )
    assert downloads == []
    assert fake_openai.requests == []


async def test_without_attach_files_the_bot_says_which_permission_it_needs(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    emulator.set_channel_permissions(emulator.general.id, emulator.bot_role, deny=Perm.ATTACH_FILES)

    interaction = await (await image_command(emulator, "generate", prompt="a cat")).wait_done()

    assert interaction.original is not None
    assert interaction.original.content == "🔒 I need these permissions in this channel to post pictures: Attach Files."
    assert fake_openai.requests == []


async def test_a_member_without_the_image_role_is_refused_before_any_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(IMAGES_ROLE_IDS=str(emulator.moderator_role.id)):
        refused = await image_command(emulator, "generate", prompt="a lighthouse")
        await refused.wait_done()
        allowed = await emulator.invoke_slash(
            emulator.moderator, emulator.general.id, "image", {"generate": {"prompt": "a lighthouse"}}
        )
        await emulator.wait_for(lambda: allowed.original is not None and allowed.original.attachments)
    assert refused.ephemeral
    assert emulator.moderator_role.mention in refused.messages[0].content
    assert len(fake_openai.requests_to("/images/generations")) == 1  # the moderator's only


async def test_a_flagged_prompt_is_refused_before_it_reaches_the_image_model(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue("/moderations", ModerationReply(flagged=True, categories=["violence"]))
    async with run_bot(MODERATE_PROMPTS="true"):
        interaction = await image_command(emulator, "generate", prompt="something violent")
        await emulator.wait_for(lambda: interaction.original and interaction.original.content not in ("", DRAWING))
    assert interaction.original is not None and "violence" in interaction.original.content
    assert fake_openai.requests_to("/images/generations") == []
