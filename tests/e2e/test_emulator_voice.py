"""Voice messages sent by a bot (discord.py 2.7 sends them only as raw HTTP), checked by Discord's rules."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from tests.e2e.test_emulator import EchoBot
from tests.fakes.discord_emulator import DiscordEmulator, MessageFlag, Perm

VOICE = int(MessageFlag.IS_VOICE_MESSAGE)
OGG = b"OggS\x00\x02" + bytes(58)
SAMPLES = bytes(range(0, 256, 4))
WAVEFORM = base64.b64encode(SAMPLES).decode()
Json = dict[str, Any]


def voice_payload(**changes: Any) -> Json:
    """A valid voice message body: the flag and one attachment entry with duration and waveform."""
    entry = {"id": "0", "filename": "voice-message.ogg", "duration_secs": 2.5, "waveform": WAVEFORM}
    return {"flags": VOICE, "attachments": [entry]} | changes


def multipart(payload: Json, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The multipart form discord.py would send (it uploads every file as application/octet-stream)."""
    form: list[dict[str, Any]] = [{"name": "payload_json", "value": json.dumps(payload)}]
    for index, (filename, data) in enumerate(files):
        form.append(
            {"name": f"files[{index}]", "value": data, "filename": filename, "content_type": "application/octet-stream"}
        )
    return form


async def post_voice(
    client: discord.Client, channel_id: int, payload: Json | None = None, files: list[tuple[str, bytes]] | None = None
) -> Json:
    """POST a voice message to a channel with the bot's HTTP client."""
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
    form = multipart(payload or voice_payload(), files or [("voice-message.ogg", OGG)])
    result: Json = await client.http.request(route, form=form)
    return result


class VoiceBot(EchoBot):
    """The echo bot with /speak (defer, voice followup, then an edit) and /shout (voice with text in the answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals: dict[str, discord.HTTPException] = {}

        @self.tree.command(description="Answer with a voice message, then try to caption it")
        async def speak(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            route = discord.http.Route(
                "POST",
                "/webhooks/{webhook_id}/{webhook_token}",
                webhook_id=interaction.application_id,
                webhook_token=interaction.token,
            )
            await self.http.request(route, form=multipart(voice_payload(), [("voice-message.ogg", OGG)]))
            try:
                await interaction.edit_original_response(content="a caption")
            except discord.HTTPException as refused:
                self.refusals["speak"] = refused

        @self.tree.command(description="Defer as a voice message, then fill it in")
        async def murmur(interaction: discord.Interaction) -> None:
            callback = discord.http.Route(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                interaction_id=interaction.id,
                interaction_token=interaction.token,
            )
            await self.http.request(callback, json={"type": 5, "data": {"flags": VOICE}})
            original = discord.http.Route(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                webhook_id=interaction.application_id,
                webhook_token=interaction.token,
            )
            await self.http.request(original, form=multipart(voice_payload(), [("voice-message.ogg", OGG)]))

        @self.tree.command(description="Answer with a voice message that also has text")
        async def shout(interaction: discord.Interaction) -> None:
            route = discord.http.Route(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                interaction_id=interaction.id,
                interaction_token=interaction.token,
            )
            body = {"type": 4, "data": voice_payload(content="spoken and written")}
            try:
                await self.http.request(route, form=multipart(body, [("voice-message.ogg", OGG)]))
            except discord.HTTPException as refused:
                self.refusals["shout"] = refused
                await interaction.response.send_message("That voice message was refused.")


@pytest.fixture
async def voice_bot(emulator: DiscordEmulator) -> AsyncIterator[VoiceBot]:
    """The voice bot, logged in, with its commands synced."""
    client = VoiceBot()
    async with emulator.run_client(client):
        await client.tree.sync()
        yield client


async def test_a_voice_message_from_the_bot_keeps_its_metadata_and_needs_no_attach_files(
    emulator: DiscordEmulator, voice_bot: VoiceBot
) -> None:
    emulator.set_channel_permissions(emulator.general.id, emulator.bot_user, deny=Perm.ATTACH_FILES)

    sent = await post_voice(voice_bot, emulator.general.id)
    channel = voice_bot.get_channel(emulator.general.id)
    assert isinstance(channel, discord.TextChannel)
    fetched = await channel.fetch_message(int(sent["id"]))
    stored = emulator.message(int(sent["id"]))
    attachment = emulator.attachment(stored.attachments[0].id)
    async with aiohttp.ClientSession() as session, session.get(attachment.url) as response:
        served = await response.read()

    assert sent["flags"] & VOICE and sent["content"] == ""
    assert sent["attachments"][0] | {"duration_secs": 2.5, "waveform": WAVEFORM} == sent["attachments"][0]
    assert fetched.flags.voice and fetched.attachments[0].is_voice_message()
    assert fetched.attachments[0].duration == 2.5 and fetched.attachments[0].waveform == SAMPLES
    assert stored.is_voice_message and attachment.content_type == "audio/ogg"
    assert attachment.data == served == OGG and attachment.waveform_bytes == SAMPLES


@pytest.mark.parametrize(
    ("payload", "files", "code"),
    [
        (voice_payload(content="hello"), None, 50159),
        (voice_payload(embeds=[{"description": "a card"}]), None, 50159),
        (voice_payload(), [("voice-message.ogg", OGG), ("second.ogg", OGG)], 50160),
        (voice_payload(), [("notes.txt", b"not audio")], 50160),
        (voice_payload(attachments=[{"id": "0", "duration_secs": 2.5}]), None, 50161),
        (voice_payload(attachments=[{"id": "0", "waveform": WAVEFORM}]), None, 50161),
        (voice_payload(attachments=[]), None, 50161),
    ],
    ids=["content", "embed", "two-files", "not-audio", "no-waveform", "no-duration", "no-entry"],
)
async def test_a_voice_message_discord_would_refuse_gets_its_error_code(
    emulator: DiscordEmulator,
    voice_bot: VoiceBot,
    payload: Json,
    files: list[tuple[str, bytes]] | None,
    code: int,
) -> None:
    with pytest.raises(discord.HTTPException) as refused:
        await post_voice(voice_bot, emulator.general.id, payload, files)

    assert (refused.value.status, refused.value.code) == (400, code)
    assert emulator.messages(emulator.general.id) == []
    assert len(emulator.violations) == 1
    emulator.violations.clear()


@pytest.mark.parametrize("waveform", [base64.b64encode(bytes(257)).decode(), "not base64!"], ids=["long", "garbled"])
async def test_a_waveform_over_256_samples_or_not_base64_is_invalid_metadata(
    emulator: DiscordEmulator, voice_bot: VoiceBot, waveform: str
) -> None:
    entry = {"id": "0", "filename": "voice-message.ogg", "duration_secs": 1.0, "waveform": waveform}

    with pytest.raises(discord.HTTPException) as refused:
        await post_voice(voice_bot, emulator.general.id, voice_payload(attachments=[entry]))

    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert "ATTACHMENT_METADATA_INVALID" in emulator.violations[0]
    emulator.violations.clear()


async def test_without_send_voice_messages_the_bot_is_refused_with_50173(
    emulator: DiscordEmulator, voice_bot: VoiceBot
) -> None:
    emulator.set_channel_permissions(emulator.general.id, emulator.bot_user, deny=Perm.SEND_VOICE_MESSAGES)
    everyone = emulator.guild.everyone_role
    emulator.set_role_permissions(everyone, everyone.permissions & ~Perm.SEND_VOICE_MESSAGES)

    codes = []
    for channel in (emulator.general, emulator.random):
        with pytest.raises(discord.Forbidden) as refused:
            await post_voice(voice_bot, channel.id)
        codes.append(refused.value.code)

    assert codes == [50173, 50173]
    assert emulator.violations == []


async def test_a_voice_message_cannot_be_edited(emulator: DiscordEmulator, voice_bot: VoiceBot) -> None:
    sent = await post_voice(voice_bot, emulator.general.id)
    route = discord.http.Route(
        "PATCH", "/channels/{channel_id}/messages/{message_id}", channel_id=emulator.general.id, message_id=sent["id"]
    )

    with pytest.raises(discord.HTTPException) as refused:
        await voice_bot.http.request(route, json={"content": "a caption"})

    assert (refused.value.status, refused.value.code) == (400, 50162)
    assert emulator.message(int(sent["id"])).revisions == [""]
    emulator.violations.clear()


async def test_a_deferred_command_answered_by_a_voice_followup_cannot_then_be_edited(
    emulator: DiscordEmulator, voice_bot: VoiceBot
) -> None:
    interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "speak")
    refusal = await emulator.wait_for(lambda: voice_bot.refusals.get("speak"), what="the refused edit")

    assert interaction.original is not None and interaction.followups == []
    assert interaction.original.is_voice_message and not interaction.original.loading
    assert interaction.original.attachments[0].duration_secs == 2.5
    assert (refusal.status, refusal.code) == (400, 50162)
    emulator.violations.clear()


async def test_a_deferral_with_the_voice_flag_becomes_a_voice_message_by_editing_it(
    emulator: DiscordEmulator, voice_bot: VoiceBot
) -> None:
    interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "murmur")
    await emulator.wait_for(lambda: interaction.original and not interaction.original.loading, what="the voice answer")

    assert interaction.original is not None and interaction.original.is_voice_message
    assert interaction.original.attachments[0].waveform == WAVEFORM
    assert [r.status for r in emulator.requests if r.method == "PATCH"] == [200]


async def test_an_interaction_response_voice_message_follows_the_same_rules(
    emulator: DiscordEmulator, voice_bot: VoiceBot
) -> None:
    interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "shout")
    await interaction.wait_done()

    assert voice_bot.refusals["shout"].code == 50159
    assert interaction.original is not None and interaction.original.content == "That voice message was refused."
    emulator.violations.clear()
