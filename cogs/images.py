"""Pictures: /image generate, /image edit and /image variation with the configured image model."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import Admission, parent_id_of, role_ids_of
from bot.bot import Bot, missing_permissions
from bot.errors import UserError
from bot.images import (
    DrawRequest,
    ImageBatch,
    ImageOptions,
    check_choices,
    check_prompt,
    check_upload,
    check_variation_size,
    download_limit,
    edit_image,
    generate_images,
    input_rules,
    offered_options,
    parse_size,
    vary_image,
)
from bot.pictures import Picture, fit_for_discord, prepare_for_endpoint
from bot.render import MESSAGE_LIMIT, truncate, with_notes

log = logging.getLogger(__name__)

# At most 4 pictures a command: they all fit one message (Discord takes 10 files per message).
MAX_PICTURES = 4
DRAWING = "🎨 Drawing… this takes 10 to 60 seconds."
NEEDED_PERMISSIONS = ["attach_files"]
# The caption shares Discord's 2000 characters between the prompt, the revised prompt and the notes.
PROMPT_SHOWN_CHARS = 1000
REVISED_PROMPT_SHOWN_CHARS = 600
FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}
QUALITY_LABELS = {
    "auto": "auto (the model picks)",
    "low": "low (fastest)",
    "medium": "medium",
    "high": "high (slowest, most detail)",
    "standard": "standard",
    "hd": "hd (more detail)",
}


def size_label(size: str) -> str:
    """How a size reads in the command's choices: 1536×1024 (landscape)."""
    dimensions = parse_size(size)
    if dimensions is None:
        return f"{size} (the model picks)"
    width, height = dimensions
    shape = "square" if width == height else "landscape" if width > height else "portrait"
    return f"{width}×{height} ({shape})"


def quality_label(quality: str) -> str:
    """How a quality reads in the command's choices."""
    return QUALITY_LABELS.get(quality, quality)


def caption(headline: str, prompt: str | None, revised_prompt: str | None, notes: Sequence[str]) -> str:
    """The text above the pictures: who asked for what, the model's revised prompt, and notes."""
    text = headline if prompt is None else f"{headline}: {truncate(prompt, PROMPT_SHOWN_CHARS)}"
    if revised_prompt and revised_prompt.strip() != (prompt or "").strip():
        revised = " ".join(revised_prompt.split())  # a subtext line ends at the first newline
        text += f"\n-# The model drew it as: {truncate(revised, REVISED_PROMPT_SHOWN_CHARS)}"
    return truncate(with_notes(text, list(notes)), MESSAGE_LIMIT)


def delivery_notes(asked: int, made: Sequence[Picture], sent: Sequence[Picture]) -> list[str]:
    """Notes on pictures that differ from what was asked: fewer made, or re-encoded to fit the upload limit."""
    notes = []
    if len(made) < asked:
        notes.append(f"The model made {len(made)} of the {asked} pictures asked for.")
    reencoded = sorted(
        {FORMAT_NAMES[picture.format] for before, picture in zip(made, sent, strict=True) if picture != before}
    )
    if reencoded:
        notes.append(f"Re-encoded as {' and '.join(reencoded)} to fit this channel's upload limit.")
    return notes


class Images(commands.Cog):
    """Draw, edit and vary pictures with the configured image model."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.group = build_image_group(self, offered_options(bot.settings))

    async def cog_load(self) -> None:
        """Add the /image group; its choices are built from the settings, so it cannot be a class attribute."""
        self.bot.tree.add_command(self.group)

    async def cog_unload(self) -> None:
        """Remove the /image group."""
        self.bot.tree.remove_command(self.group.name)

    async def generate(
        self, interaction: discord.Interaction[Bot], prompt: str, *, size: str | None, count: int, quality: str | None
    ) -> None:
        """Draw pictures from a prompt."""
        model = await self._model(interaction)
        check_prompt(prompt, model)
        check_choices(model, size, quality)
        # What the pictures will use is held against today's budgets until they are in the ledger.
        async with await self._admit(interaction, count) as admission:
            await _start_drawing(interaction)
            await self._moderate(interaction, prompt)
            request = self._request(interaction, model, count, size)
            batch = await generate_images(self.bot.api, request, prompt, quality)
            headline = f"🎨 {interaction.user.mention} asked for"
            await self._deliver(interaction, admission, request, batch, headline, prompt)

    async def edit(
        self,
        interaction: discord.Interaction[Bot],
        image: discord.Attachment,
        prompt: str,
        *,
        mask: discord.Attachment | None,
        size: str | None,
        count: int,
    ) -> None:
        """Change a picture as the prompt says; where the mask is transparent, if there is a mask."""
        model = await self._model(interaction)
        check_prompt(prompt, model)
        check_choices(model, size, None)
        rules = input_rules(self.bot.settings, model, variation=False)
        self._check_attachment("picture", image)
        if mask is not None:
            self._check_attachment("mask", mask)
        # What the pictures will use is held against today's budgets until they are in the ledger.
        async with await self._admit(interaction, count) as admission:
            await _start_drawing(interaction)
            await self._moderate(interaction, prompt)
            image_data = await _download(image)
            mask_data = await _download(mask) if mask is not None else None
            inputs = await prepare_for_endpoint(self.bot.jobs, image_data, mask_data, rules, owner=interaction.user.id)
            request = self._request(interaction, model, count, size)
            batch = await edit_image(self.bot.api, request, prompt, inputs)
            headline = f"🖌️ {interaction.user.mention} edited a picture"
            await self._deliver(interaction, admission, request, batch, headline, prompt, inputs.notes)

    async def variation(
        self, interaction: discord.Interaction[Bot], image: discord.Attachment, *, size: str | None, count: int
    ) -> None:
        """Make variations of a picture."""
        settings = self.bot.settings
        model = await self._model(interaction)
        check_variation_size(settings, size)
        rules = input_rules(settings, model, variation=True)
        self._check_attachment("picture", image)
        # What the pictures will use is held against today's budgets until they are in the ledger.
        async with await self._admit(interaction, count) as admission:
            await _start_drawing(interaction)
            image_data = await _download(image)
            inputs = await prepare_for_endpoint(self.bot.jobs, image_data, None, rules, owner=interaction.user.id)
            request = self._request(interaction, model, count, size)
            batch = await vary_image(self.bot.api, request, inputs.image, endpoint=settings.image_variations_endpoint)
            headline = f"🔀 {interaction.user.mention} asked for variations of a picture"
            await self._deliver(interaction, admission, request, batch, headline, None, inputs.notes)

    async def _admit(self, interaction: discord.Interaction[Bot], count: int) -> Admission:
        """Refuse where the bot cannot post pictures or the member may not draw (and count the request)."""
        # Called after the input checks, so a bad file does not use up one of the member's requests.
        if interaction.guild is None and not self.bot.settings.allow_dms:
            raise UserError("I don't draw in direct messages here. Use /image in a server channel.")
        if interaction.guild is not None and (
            missing := missing_permissions(interaction.app_permissions, NEEDED_PERMISSIONS)
        ):
            raise UserError(f"🔒 I need these permissions in this channel to post pictures: {', '.join(missing)}.")
        return await self.bot.gate.admit(
            "images",
            user_id=interaction.user.id,
            role_ids=role_ids_of(interaction.user),
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            parent_id=parent_id_of(interaction.channel),
            images=count,
        )

    async def _moderate(self, interaction: discord.Interaction[Bot], prompt: str) -> None:
        """With MODERATE_PROMPTS, refuse a flagged prompt before it reaches the image model."""
        await self.bot.moderator.check_prompt(
            prompt,
            feature="images",
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )

    def _check_attachment(self, what: str, attachment: discord.Attachment) -> None:
        """Refuse what cannot be a usable picture from what Discord says about it, before downloading anything."""
        limit = download_limit(self.bot.settings)
        check_upload(what, attachment.filename, attachment.content_type, attachment.size, limit)

    async def _model(self, interaction: discord.Interaction[Bot]) -> str:
        """The image model for this channel (an admin may have chosen one with /settings model)."""
        return await self.bot.gate.model_for(
            "images", interaction.guild_id, interaction.channel_id, parent_id=parent_id_of(interaction.channel)
        )

    def _request(self, interaction: discord.Interaction[Bot], model: str, count: int, size: str | None) -> DrawRequest:
        return DrawRequest(
            model=model,
            count=count,
            size=size,
            user=self.bot.identity.safety_identifier(interaction.user.id),
        )

    async def _deliver(
        self,
        interaction: discord.Interaction[Bot],
        admission: Admission,
        request: DrawRequest,
        batch: ImageBatch,
        headline: str,
        prompt: str | None,
        notes: Sequence[str] = (),
    ) -> None:
        """Count the pictures, fit them to the upload limit and show them under the caption."""
        await admission.spend(
            request.model,
            images=len(batch.pictures),
            image_size=batch.size,
            input_tokens=batch.input_tokens,
            output_tokens=batch.output_tokens,
        )
        log.info(
            "Drew %d %s pictures for user %s in guild %s",
            len(batch.pictures),
            batch.size,
            interaction.user.id,
            interaction.guild_id,
        )
        limit = interaction.filesize_limit
        sent = await fit_for_discord(self.bot.jobs, batch.pictures, limit, owner=interaction.user.id)
        notes = [*notes, *delivery_notes(request.count, batch.pictures, sent)]
        files = [
            discord.File(io.BytesIO(picture.data), filename=f"image-{number}.{picture.extension}")
            for number, picture in enumerate(sent, start=1)
        ]
        content = caption(headline, prompt, batch.revised_prompt, notes)
        await interaction.edit_original_response(content=content, attachments=files)


async def _start_drawing(interaction: discord.Interaction[Bot]) -> None:
    """Answer within Discord's 3 s and show that drawing has begun; pictures take 10 to 60 s."""
    await interaction.response.defer(thinking=True)
    await interaction.edit_original_response(content=DRAWING)


async def _download(attachment: discord.Attachment) -> bytes:
    try:
        return await attachment.read()
    except discord.HTTPException:
        raise UserError(f"📥 I couldn't download `{attachment.filename}` from Discord. Please try again.") from None


def build_image_group(images: Images, options: ImageOptions) -> app_commands.Group:
    """The /image group; the size and quality choices follow the configured model."""
    group = app_commands.Group(name="image", description="Draw, edit and vary pictures with AI.")
    sizes = [app_commands.Choice(name=size_label(size), value=size) for size in options.sizes]
    qualities = [app_commands.Choice(name=quality_label(quality), value=quality) for quality in options.qualities]

    @group.command(name="generate", description="Draw pictures from a description.")
    @app_commands.describe(
        prompt="What to draw",
        size="Size of the pictures (default: the model's)",
        count="How many pictures (1 to 4)",
        quality="Quality: higher is slower (default: the model's)",
    )
    @app_commands.choices(size=sizes, quality=qualities)
    async def generate(
        interaction: discord.Interaction[Bot],
        prompt: app_commands.Range[str, 1, 4000],
        size: str | None = None,
        count: app_commands.Range[int, 1, MAX_PICTURES] = 1,
        quality: str | None = None,
    ) -> None:
        await images.generate(interaction, prompt, size=size, count=count, quality=quality)

    @group.command(name="edit", description="Change a picture as you describe.")
    @app_commands.describe(
        image="The picture to change (PNG, JPEG, WebP or GIF)",
        prompt="What to change, or what the whole new picture should show",
        mask="A PNG the size of the picture whose transparent parts mark what may change (default: all of it)",
        size="Size of the results (default: the model's)",
        count="How many pictures (1 to 4)",
    )
    @app_commands.choices(size=sizes)
    async def edit(
        interaction: discord.Interaction[Bot],
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 4000],
        mask: discord.Attachment | None = None,
        size: str | None = None,
        count: app_commands.Range[int, 1, MAX_PICTURES] = 1,
    ) -> None:
        await images.edit(interaction, image, prompt, mask=mask, size=size, count=count)

    @group.command(name="variation", description="Make variations of a picture.")
    @app_commands.describe(
        image="The picture to vary (PNG, JPEG, WebP or GIF)",
        size="Size of the results (default: the model's)",
        count="How many pictures (1 to 4)",
    )
    @app_commands.choices(size=sizes)
    async def variation(
        interaction: discord.Interaction[Bot],
        image: discord.Attachment,
        size: str | None = None,
        count: app_commands.Range[int, 1, MAX_PICTURES] = 1,
    ) -> None:
        await images.variation(interaction, image, size=size, count=count)

    return group


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Images(bot))
