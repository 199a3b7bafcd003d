"""The /image cog without Discord: its commands' choices, captions and notes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from discord import app_commands

from bot.bot import Bot
from bot.config import Settings
from bot.pictures import Picture
from bot.render import MESSAGE_LIMIT
from cogs.images import Images, caption, delivery_notes, quality_label, size_label


def settings(**env: str) -> Settings:
    return Settings.from_env({"DISCORD_TOKEN": "token", "OPENAI_API_KEY": "sk-test", **env})


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    async with Bot(settings(IMAGE_MODEL="dall-e-3")) as bot:  # set up as start() would, closed afterwards
        yield bot


def choices(group: app_commands.Group, command: str, option: str) -> list[str | int | float]:
    subcommand = group.get_command(command)
    assert isinstance(subcommand, app_commands.Command)
    parameter = next(parameter for parameter in subcommand.parameters if parameter.name == option)
    return [choice.value for choice in parameter.choices]


async def test_loading_the_cog_adds_the_image_group_and_unloading_removes_it(bot: Bot) -> None:
    await bot.add_cog(Images(bot))
    group = bot.tree.get_command("image")
    assert isinstance(group, app_commands.Group)
    assert sorted(command.name for command in group.commands) == ["edit", "generate", "variation"]
    await bot.remove_cog("Images")
    assert bot.tree.get_command("image") is None


async def test_the_choices_follow_the_configured_model(bot: Bot) -> None:
    group = Images(bot).group
    assert choices(group, "generate", "size") == ["1024x1024", "1792x1024", "1024x1792"]
    assert choices(group, "generate", "quality") == ["standard", "hd"]
    assert choices(group, "edit", "size") == choices(group, "variation", "size") == choices(group, "generate", "size")


def test_sizes_read_as_shapes() -> None:
    assert [size_label(size) for size in ("auto", "1024x1024", "1536x1024", "1024x1536")] == [
        "auto (the model picks)",
        "1024×1024 (square)",
        "1536×1024 (landscape)",
        "1024×1536 (portrait)",
    ]


def test_qualities_say_what_they_cost_and_unknown_ones_read_as_they_are() -> None:
    assert quality_label("high") == "high (slowest, most detail)"
    assert quality_label("ultra") == "ultra"


def test_the_caption_shows_the_prompt_and_the_models_revised_prompt() -> None:
    text = caption("🎨 <@1> asked for", "a cat", "A tabby cat\non a windowsill", ["A note."])
    assert text == "🎨 <@1> asked for: a cat\n-# The model drew it as: A tabby cat on a windowsill\n\n-# A note."


def test_a_revised_prompt_equal_to_the_prompt_is_not_repeated() -> None:
    assert caption("🎨 <@1> asked for", "a cat", "a cat", []) == "🎨 <@1> asked for: a cat"


def test_a_variation_caption_has_no_prompt() -> None:
    assert caption("🔀 <@1> asked for variations of a picture", None, None, []) == (
        "🔀 <@1> asked for variations of a picture"
    )


def test_the_caption_fits_one_message_however_long_the_prompts() -> None:
    text = caption("🎨 <@1> asked for", "p" * 4000, "r" * 4000, ["A note."] * 3)
    assert len(text) <= MESSAGE_LIMIT
    assert text.endswith("-# A note.")


def picture(data: bytes, image_format: str = "png") -> Picture:
    return Picture(data, image_format, 1024, 1024)


def test_no_notes_when_every_picture_arrives_as_made() -> None:
    made = [picture(b"a"), picture(b"b")]
    assert delivery_notes(2, made, made) == []


def test_fewer_pictures_than_asked_are_noted() -> None:
    made = [picture(b"a")]
    assert delivery_notes(3, made, made) == ["The model made 1 of the 3 pictures asked for."]


def test_reencoded_pictures_are_noted_with_their_formats() -> None:
    made = [picture(b"a"), picture(b"b"), picture(b"c")]
    sent = [picture(b"a2", "jpeg"), made[1], picture(b"c2", "webp")]
    assert delivery_notes(3, made, sent) == ["Re-encoded as JPEG and WebP to fit this channel's upload limit."]
