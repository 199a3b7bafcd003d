"""The Discord emulator, driven by a small plain discord.py bot defined here."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_emulator import ClientDied, DiscordEmulator, EmuFile, Intent, MessageFlag, Perm

UPLOAD_BYTES = b"col1,col2\n1,2\n"


class EchoBot(commands.Bot):
    """A minimal bot: replies "pong" to "ping" and keeps every message it saw from people."""

    def __init__(self, *, message_content: bool = True, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(
            command_prefix="!", intents=intents, allowed_mentions=discord.AllowedMentions.none(), **options
        )
        self.seen: list[discord.Message] = []
        add_commands(self.tree)

    async def on_message(self, message: discord.Message) -> None:
        """Record people's messages and answer "ping"."""
        if message.author.bot:
            return
        self.seen.append(message)
        if message.content == "ping":
            await message.reply("pong")

    def saw(self, content: str) -> discord.Message | None:
        """The first message seen with this content."""
        return next((m for m in self.seen if m.content == content), None)


class VoteView(discord.ui.View):
    """One button that turns the message into the result."""

    @discord.ui.button(label="Yes", custom_id="vote:yes")
    async def yes(self, interaction: discord.Interaction, button: discord.ui.Button[VoteView]) -> None:
        """Replace the question with the vote."""
        await interaction.response.edit_message(content="Voted yes", view=None)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    """A one-field form."""

    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(label="Your feedback", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Thank the user, quoting the field."""
        await interaction.response.send_message(f"Thanks: {self.text.value}", ephemeral=True)


def add_commands(tree: app_commands.CommandTree[EchoBot]) -> None:
    """Register the test commands on a tree."""

    @tree.command(description="Defer, then answer with two followups")
    async def slow(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.defer(thinking=True)
        await asyncio.sleep(0.05)
        await interaction.followup.send(f"echo: {text}")
        await interaction.followup.send("done", wait=True)

    @tree.command(description="Answer only after a pause")
    async def late(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.2)
        await interaction.response.send_message("late")

    @tree.command(description="Ask for a vote with a button")
    async def vote(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Vote?", view=VoteView())

    @tree.command(description="Open a feedback form")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal())

    @tree.command(description="Answer, then open a thread on the answer")
    async def discuss(interaction: discord.Interaction, topic: str) -> None:
        await interaction.response.send_message(f"Let's talk about {topic}")
        message = await interaction.original_response()
        assert isinstance(interaction.channel, discord.TextChannel)
        thread = await interaction.channel.create_thread(name=topic, message=message)
        await thread.send("Thread opened")

    @tree.command(description="Answer with a file")
    async def report(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Here it is", file=discord.File(io.BytesIO(UPLOAD_BYTES), "report.csv"))

    @tree.command(description="Measure an attached file")
    async def measure(interaction: discord.Interaction, file: discord.Attachment) -> None:
        data = await file.read()
        await interaction.response.send_message(f"{file.filename}: {len(data)} bytes")

    @tree.command(description="Pick a colour")
    async def colour(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name, ephemeral=True)

    @colour.autocomplete("name")
    async def colour_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ["red", "green", "blue"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @tree.context_menu(name="Quote")
    async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"> {message.content}", ephemeral=True)

    @tree.context_menu(name="Greet")
    async def greet(interaction: discord.Interaction, member: discord.Member) -> None:
        await interaction.response.send_message(f"Hello {member.display_name}")

    @tree.command(description="Ask whether the bot may post in #random")
    async def permissions(interaction: discord.Interaction) -> None:
        mine = interaction.app_permissions.send_messages
        theirs = interaction.permissions.manage_messages
        await interaction.response.send_message(f"bot can send: {mine}; you manage: {theirs}")


@pytest.fixture
async def bot(emulator: DiscordEmulator) -> AsyncIterator[EchoBot]:
    """The test bot, logged in to the emulator with its commands synced globally."""
    client = EchoBot()
    async with emulator.run_client(client):
        await client.tree.sync()
        yield client


def text_channel(bot: commands.Bot, channel_id: int) -> discord.TextChannel:
    """The bot's cached text channel."""
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_login_sees_the_guild_its_channels_and_its_role(emulator: DiscordEmulator, bot: EchoBot) -> None:
    guild = bot.get_guild(emulator.guild_id)

    assert guild is not None and bot.user is not None
    assert bot.user.id == emulator.bot_user.id
    assert sorted(c.name for c in guild.text_channels) == ["general", "random"]
    assert guild.me.guild_permissions.attach_files
    assert emulator.gateway.ops[:1] == ["IDENTIFY"]


async def test_sync_stores_guild_and_global_commands_with_stable_ids(emulator: DiscordEmulator, bot: EchoBot) -> None:
    guild = discord.Object(emulator.guild_id)
    bot.tree.copy_global_to(guild=guild)

    synced = await bot.tree.sync(guild=guild)
    again = await bot.tree.sync(guild=guild)

    names = {c["name"] for c in emulator.commands(emulator.guild_id)}
    assert names == {
        "slow",
        "late",
        "vote",
        "feedback",
        "discuss",
        "report",
        "measure",
        "colour",
        "Quote",
        "Greet",
        "permissions",
    }
    assert {c.name for c in synced} == names
    assert sorted(c.id for c in synced) == sorted(c.id for c in again)
    assert {c["name"] for c in emulator.commands()} == names


async def test_slash_command_defers_then_its_first_followup_replaces_the_thinking_message(
    emulator: DiscordEmulator, bot: EchoBot
) -> None:
    interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "slow", {"text": "hi"})
    await emulator.wait_for(lambda: interaction.followups, what="the second followup")

    assert interaction.callback_type == 5
    assert interaction.deferred_at is not None and interaction.deferred_at < 1.0
    assert interaction.original is not None and not interaction.original.loading
    assert interaction.original.revisions == ["", "echo: hi"]
    assert [m.content for m in emulator.messages(emulator.general.id)] == ["echo: hi", "done"]


async def test_thread_opened_on_an_answer_delivers_later_messages_with_the_thread_as_channel(
    emulator: DiscordEmulator, bot: EchoBot
) -> None:
    await emulator.invoke_slash(emulator.member, emulator.general.id, "discuss", {"topic": "cats"})
    thread = (await emulator.wait_for(lambda: emulator.threads(emulator.general.id), what="a thread"))[0]
    await emulator.wait_for(lambda: emulator.messages(thread.id), what="the bot's first thread message")

    await emulator.send_message(thread.id, emulator.member, "meow")
    seen = await emulator.wait_for(lambda: bot.saw("meow"), what="the thread message to reach on_message")

    assert thread.name == "cats" and thread.id == emulator.messages(emulator.general.id)[0].id
    assert [e["d"]["id"] for e in emulator.events("THREAD_CREATE")] == [str(thread.id)]
    assert isinstance(seen.channel, discord.Thread)
    assert seen.channel.parent_id == emulator.general.id


async def test_uploaded_file_is_stored_and_served_by_the_cdn(emulator: DiscordEmulator, bot: EchoBot) -> None:
    interaction = await emulator.invoke_slash(emulator.admin, emulator.general.id, "report")
    await interaction.wait_done()
    assert interaction.original is not None
    attachment = interaction.original.attachments[0]

    async with aiohttp.ClientSession() as session, session.get(attachment.url) as response:
        served = await response.read()

    assert (attachment.filename, attachment.content_type) == ("report.csv", "text/csv")
    assert served == UPLOAD_BYTES
    assert emulator.requests[-1].files[0].data == UPLOAD_BYTES


async def test_attachment_option_resolves_and_downloads(emulator: DiscordEmulator, bot: EchoBot) -> None:
    file = EmuFile("notes.txt", b"hello")

    interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "measure", {"file": file})
    await interaction.wait_done()

    assert interaction.original is not None and interaction.original.content == "notes.txt: 5 bytes"


async def test_message_context_menu_quotes_the_target_ephemerally(emulator: DiscordEmulator, bot: EchoBot) -> None:
    target = await emulator.send_message(emulator.general.id, emulator.member, "to be quoted")

    interaction = await emulator.invoke_message_command(
        emulator.moderator, emulator.general.id, "Quote", int(target["id"])
    )
    await interaction.wait_done()

    assert interaction.ephemeral and interaction.original is not None
    assert interaction.original.content == "> to be quoted"
    assert [m.content for m in emulator.messages(emulator.general.id)] == ["to be quoted"]


async def test_user_context_menu_gets_the_resolved_member(emulator: DiscordEmulator, bot: EchoBot) -> None:
    interaction = await emulator.invoke_user_command(emulator.admin, emulator.general.id, "Greet", emulator.moderator)
    await interaction.wait_done()

    assert interaction.original is not None and interaction.original.content == "Hello Moderator"


async def test_autocomplete_choices_are_recorded(emulator: DiscordEmulator, bot: EchoBot) -> None:
    interaction = await emulator.invoke_autocomplete(
        emulator.member, emulator.general.id, "colour", {"name": "gr"}, focused="name"
    )
    await interaction.wait_done()

    assert interaction.callback_type == 8
    assert interaction.choices == [{"name": "green", "value": "green"}]


async def test_on_message_reply_does_not_ping_with_allowed_mentions_none(
    emulator: DiscordEmulator, bot: EchoBot
) -> None:
    ping = await emulator.send_message(emulator.general.id, emulator.member, "ping")

    reply = await emulator.wait_for(
        lambda: next((m for m in emulator.messages(emulator.general.id) if m.content == "pong"), None)
    )

    assert reply.reply_to is not None and reply.reply_to.id == int(ping["id"])
    assert reply.allowed_mentions == {"parse": []}
    assert not reply.pings


async def test_message_over_2000_characters_is_refused(emulator: DiscordEmulator, bot: EchoBot) -> None:
    with pytest.raises(discord.HTTPException) as refused:
        await text_channel(bot, emulator.general.id).send("x" * 2001)

    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert emulator.messages(emulator.general.id) == []
    assert len(emulator.violations) == 1 and "content" in emulator.violations[0]
    emulator.violations.clear()


async def test_injected_429_is_waited_out_and_retried(emulator: DiscordEmulator, bot: EchoBot) -> None:
    emulator.rate_limit_next("POST", r"^/channels/\d+/messages$", retry_after=0.3)

    started = asyncio.get_running_loop().time()
    await text_channel(bot, emulator.general.id).send("after the limit")
    waited = asyncio.get_running_loop().time() - started

    posts = [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert [r.status for r in posts] == [429, 200]
    assert waited >= 0.3
    assert [m.content for m in emulator.messages(emulator.general.id)] == ["after the limit"]


async def test_gateway_drop_resumes_and_replays_missed_messages(emulator: DiscordEmulator, bot: EchoBot) -> None:
    await emulator.drop_gateway(resumable=True)
    await emulator.send_message(emulator.general.id, emulator.member, "sent while disconnected")

    await emulator.wait_for(lambda: bot.saw("sent while disconnected"), what="the missed message after RESUME")

    assert emulator.gateway.ops.count("IDENTIFY") == 1
    assert "RESUME" in emulator.gateway.ops


async def test_permissions_reach_interactions_and_rest(emulator: DiscordEmulator, bot: EchoBot) -> None:
    emulator.set_channel_permissions(emulator.random.id, emulator.bot_user, deny=Perm.SEND_MESSAGES)

    interaction = await emulator.invoke_slash(emulator.moderator, emulator.random.id, "permissions")
    await interaction.wait_done()
    with pytest.raises(discord.Forbidden) as refused:
        await text_channel(bot, emulator.random.id).send("not allowed")

    assert interaction.original is not None
    assert interaction.original.content == "bot can send: False; you manage: True"
    assert refused.value.code == 50013


async def test_without_message_content_intent_only_mentions_carry_content(emulator: DiscordEmulator) -> None:
    client = EchoBot(message_content=False)
    async with emulator.run_client(client):
        await emulator.send_message(emulator.general.id, emulator.member, "secret")
        await emulator.send_message(emulator.general.id, emulator.member, f"{emulator.bot_user.mention} hello")
        await emulator.wait_for(lambda: len(client.seen) == 2)

    assert [m.content for m in client.seen] == ["", f"{emulator.bot_user.mention} hello"]


async def test_voice_message_and_dm_arrive_as_discord_sends_them(emulator: DiscordEmulator, bot: EchoBot) -> None:
    voice = EmuFile("voice-message.ogg", b"OggS", "audio/ogg", duration_secs=1.5, waveform="AAAA")
    dm = emulator.dm_channel(emulator.member)

    await emulator.send_message(dm.id, emulator.member, attachments=[voice], flags=MessageFlag.IS_VOICE_MESSAGE)
    seen = await emulator.wait_for(lambda: bot.seen[:1], what="the voice message")

    assert isinstance(seen[0].channel, discord.DMChannel)
    assert seen[0].flags.voice and seen[0].attachments[0].is_voice_message()


async def test_client_that_dies_in_setup_fails_fast(emulator: DiscordEmulator) -> None:
    client = EchoBot()

    async def broken_setup() -> None:
        raise RuntimeError("setup broke")

    client.setup_hook = broken_setup  # type: ignore[method-assign]
    with pytest.raises(ClientDied) as died:
        async with emulator.run_client(client):
            pass

    assert isinstance(died.value.__cause__, RuntimeError)


async def test_event_payload_that_crashes_the_gateway_task_fails_the_wait(emulator: DiscordEmulator) -> None:
    client = EchoBot()
    with pytest.raises(ClientDied) as died:
        async with emulator.run_client(client):
            await emulator.dispatch_event("MESSAGE_CREATE", {"id": "1"})
            await emulator.wait_for(lambda: False, timeout=5.0, what="nothing")

    assert isinstance(died.value.__cause__, KeyError)


async def test_button_click_updates_its_message(emulator: DiscordEmulator, bot: EchoBot) -> None:
    asked = await (await emulator.invoke_slash(emulator.member, emulator.general.id, "vote")).wait_done()
    assert asked.original is not None

    click = await emulator.click_component(emulator.member, asked.original.id, "vote:yes")
    await click.wait_done()

    assert click.callback_type == 7
    assert asked.original.revisions == ["Vote?", "Voted yes"]
    assert asked.original.components == []


async def test_modal_submission_reaches_on_submit(emulator: DiscordEmulator, bot: EchoBot) -> None:
    opened = await (await emulator.invoke_slash(emulator.member, emulator.general.id, "feedback")).wait_done()
    assert opened.modal is not None and opened.modal["title"] == "Feedback"

    submitted = await (await emulator.submit_modal(opened, {"feedback:text": "great"})).wait_done()

    assert submitted.original is not None and submitted.original.content == "Thanks: great"


async def test_edits_keep_history_and_other_peoples_messages_cannot_be_edited(
    emulator: DiscordEmulator, bot: EchoBot
) -> None:
    channel = text_channel(bot, emulator.general.id)
    sent = await channel.send("draft")
    await sent.edit(content="final")
    theirs = await emulator.send_message(emulator.general.id, emulator.member, "mine")

    with pytest.raises(discord.Forbidden) as refused:
        await channel.get_partial_message(int(theirs["id"])).edit(content="hijacked")

    assert emulator.message(sent.id).revisions == ["draft", "final"]
    assert refused.value.code == 50005


async def test_rest_reads_channels_members_and_history(emulator: DiscordEmulator, bot: EchoBot) -> None:
    for text in ("one", "two", "three"):
        await emulator.send_message(emulator.general.id, emulator.member, text)

    channel = await bot.fetch_channel(emulator.general.id)
    assert isinstance(channel, discord.TextChannel)
    member = await channel.guild.fetch_member(emulator.moderator.id)
    history = [m.content async for m in channel.history(limit=2)]

    assert history == ["three", "two"]
    assert emulator.moderator_role.id in [role.id for role in member.roles]


async def test_answer_after_the_deadline_is_refused_as_unknown_interaction(emulator: DiscordEmulator) -> None:
    emulator.interaction_deadline = 0.1
    client = EchoBot()
    async with emulator.run_client(client, fail_on_errors=False):
        await client.tree.sync()
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "late")
        await emulator.wait_for(lambda: emulator.client_errors, what="discord.py to log the refused answer")

    callbacks = [r.status for r in emulator.requests if r.path.endswith("/callback")]
    assert interaction.callback_type is None and callbacks == [404]
    assert "Unknown interaction" in emulator.client_errors[0]


async def test_an_interaction_token_past_its_lifetime_is_refused_as_an_invalid_webhook_token(
    emulator: DiscordEmulator,
) -> None:
    emulator.interaction_token_lifetime = 0.02  # Discord: 15 minutes
    client = EchoBot()
    async with emulator.run_client(client, fail_on_errors=False):
        await client.tree.sync()
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "slow", {"text": "hi"})
        await emulator.wait_for(lambda: emulator.client_errors, what="discord.py to log the refused followup")

    followups = [r.status for r in emulator.requests if r.route == "/webhooks/{app_id}/{token}"]
    assert interaction.deferred_at is not None and followups == [401]
    assert "50027" in emulator.client_errors[0] and "Invalid Webhook Token" in emulator.client_errors[0]


async def test_unhandled_error_in_an_event_fails_the_wait_at_once(emulator: DiscordEmulator) -> None:
    client = EchoBot()

    async def explode(message: discord.Message) -> None:
        raise RuntimeError("handler broke")

    client.on_message = explode  # type: ignore[method-assign]
    with pytest.raises(AssertionError, match="handler broke"):
        async with emulator.run_client(client):
            await emulator.send_message(emulator.general.id, emulator.member, "hi")
            await emulator.wait_for(lambda: False, timeout=5.0, what="nothing")


async def test_unimplemented_route_is_an_emulator_fault(emulator: DiscordEmulator, bot: EchoBot) -> None:
    route = discord.http.Route("GET", "/guilds/{guild_id}/bans", guild_id=emulator.guild_id)

    with pytest.raises(discord.NotFound):
        await bot.http.request(route)

    assert emulator.errors == [f"the emulator does not implement GET /guilds/{emulator.guild_id}/bans (404)"]
    emulator.errors.clear()


async def test_wait_for_timeout_describes_the_emulator_state(emulator: DiscordEmulator, bot: EchoBot) -> None:
    await emulator.send_message(emulator.general.id, emulator.member, "hello")

    with pytest.raises(AssertionError, match="#general: member: 'hello'"):
        await emulator.wait_for(lambda: False, timeout=0.1, what="a reply")


async def test_privileged_intent_not_enabled_in_the_portal_closes_with_4014(emulator: DiscordEmulator) -> None:
    emulator.privileged_intents = Intent(0)

    with pytest.raises(ClientDied) as died:
        async with emulator.run_client(EchoBot()):
            pass

    assert isinstance(died.value.__cause__, discord.PrivilegedIntentsRequired)
