"""Voice messages through discord.py's real HTTP client, against a stand-in for Discord's REST API that records them."""

from __future__ import annotations

import base64
import io
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import av
import discord
import pytest
from aiohttp import BodyPartReader, web

from bot.voice_message import (
    NO_PERMISSION_NOTE,
    REFUSED_NOTE,
    VoiceMessageFile,
    can_send_voice_messages,
    deliver_spoken_answer,
    send_voice_message,
)
from bot.voice_recording import VoiceRecording, encode_voice_recording
from tests.fakes.openai_server import speech_audio

CHANNEL = 222_000_000_000_000_001
GUILD = 333_000_000_000_000_001
BOT = {"id": "111000000000000001", "username": "Speaker", "discriminator": "0", "global_name": None, "avatar": None}
BOT["bot"] = True  # type: ignore[assignment]
ASKER = {"id": "444000000000000001", "username": "ana", "discriminator": "0", "global_name": "Ana", "avatar": None}
SEND_VOICE_MESSAGES = 1 << 46
EVERYONE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | SEND_VOICE_MESSAGES  # view, send, attach, voice
NO_PINGS = {"parse": []}


def answer(data: Any, *, status: int = 200) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


@dataclass(frozen=True)
class Part:
    """One part of a multipart request."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Post:
    """A POST to a channel's messages, as Discord received it."""

    path: str
    parts: list[Part]

    @property
    def payload(self) -> dict[str, Any]:
        [payload] = [part for part in self.parts if part.name == "payload_json"]
        result: dict[str, Any] = json.loads(payload.data)
        return result

    def files(self) -> list[Part]:
        return [part for part in self.parts if part.name != "payload_json"]


@dataclass
class DiscordRest:
    """Just enough of Discord's REST API to log in and post messages; refusals are scripted as (status, code)."""

    posts: list[Post] = field(default_factory=list)
    refusals: deque[tuple[int, int]] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(555_000_000_000_000_001))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self.me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self.application)
        app.router.add_post("/api/v10/channels/{channel_id}/messages", self.create_message)
        return app

    async def me(self, request: web.Request) -> web.Response:
        return answer(BOT)

    async def application(self, request: web.Request) -> web.Response:
        return answer(
            {"id": BOT["id"], "name": "Speaker", "icon": None, "description": "", "bot_public": True}
            | {"bot_require_code_grant": False, "owner": ASKER, "verify_key": "00", "flags": 0}
        )

    async def create_message(self, request: web.Request) -> web.Response:
        parts = []
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader)
            content_type = part.headers.get("Content-Type", "")
            parts.append(Part(part.name or "", part.filename, content_type, bytes(await part.read())))
        post = Post(request.path, parts)
        self.posts.append(post)
        if self.refusals:
            status, code = self.refusals.popleft()
            return answer({"message": f"Refused ({code})", "code": code}, status=status)
        return answer(self.message(request.match_info["channel_id"], post))

    def message(self, channel_id: str, post: Post) -> dict[str, Any]:
        """The message Discord creates from a post, attachments as its CDN describes them."""
        payload, files = post.payload, post.files()
        attachments = []
        for entry, file in zip(payload.get("attachments", []), files, strict=True):
            attachment_id = str(next(self._ids))
            url = f"https://cdn.discordapp.com/attachments/{channel_id}/{attachment_id}/{entry['filename']}"
            attachments.append(
                {"id": attachment_id, "filename": entry["filename"], "size": len(file.data), "url": url}
                | {"proxy_url": url, "content_type": file.content_type}
                | {key: entry[key] for key in ("duration_secs", "waveform") if key in entry}
            )
        return {
            "id": str(next(self._ids)),
            "channel_id": channel_id,
            "type": 19 if "message_reference" in payload else 0,
            "author": BOT,
            "content": payload.get("content", ""),
            "flags": payload.get("flags", 0),
            "attachments": attachments,
            "embeds": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": "2026-12-01T12:00:00.000000+00:00",
            "edited_timestamp": None,
        }


@pytest.fixture
async def discord_rest(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DiscordRest]:
    rest = DiscordRest()
    runner = web.AppRunner(rest.app(), access_log=None, shutdown_timeout=0.05)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    # Route.BASE is read whenever discord.py builds a request, as in the e2e tests against the emulator.
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{runner.addresses[0][1]}/api/v10")
    yield rest
    await runner.cleanup()


@pytest.fixture
async def client(discord_rest: DiscordRest) -> AsyncIterator[discord.Client]:
    client = discord.Client(intents=discord.Intents(guilds=True))
    await client.login("bot-token")
    yield client
    await client.close()


@pytest.fixture(scope="module")
def recording() -> VoiceRecording:
    return encode_voice_recording([speech_audio(2.0, "opus")[0]], max_seconds=60)


def question(client: discord.Client) -> discord.Message:
    """The message a spoken answer replies to."""
    data: Any = {
        "id": "666000000000000001",
        "channel_id": str(CHANNEL),
        "type": 0,
        "author": ASKER,
        "content": "What is a lighthouse?",
        "attachments": [],
        "embeds": [],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": "2026-12-01T11:59:00.000000+00:00",
        "edited_timestamp": None,
    }
    return client._connection.create_message(channel=client.get_partial_messageable(CHANNEL), data=data)


def text_channel(client: discord.Client, *, denied: int = 0) -> discord.TextChannel:
    """A server channel where @everyone (and so the bot) has EVERYONE_PERMISSIONS minus `denied`."""
    state = client._connection
    everyone = {"id": str(GUILD), "name": "@everyone", "permissions": str(EVERYONE_PERMISSIONS), "position": 0}
    everyone |= {"color": 0, "hoist": False, "managed": False, "mentionable": False}
    me = {"user": BOT, "roles": [], "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0}
    guild = discord.Guild(
        data={"id": str(GUILD), "name": "Harbour", "owner_id": ASKER["id"], "roles": [everyone], "members": [me]},  # type: ignore[typeddict-item]
        state=state,
    )
    overwrite = {"id": str(GUILD), "type": 0, "allow": "0", "deny": str(denied)}
    data: Any = {"id": str(CHANNEL), "type": 0, "name": "general", "position": 0, "permission_overwrites": [overwrite]}
    return discord.TextChannel(state=state, guild=guild, data=data | {"guild_id": str(GUILD)})


# The request that makes a native voice message


async def test_a_voice_message_is_one_flagged_ogg_attachment_with_duration_and_waveform(
    client: discord.Client, discord_rest: DiscordRest, recording: VoiceRecording
) -> None:
    sent = await send_voice_message(client.get_partial_messageable(CHANNEL), recording)

    [post] = discord_rest.posts
    assert post.path == f"/api/v10/channels/{CHANNEL}/messages"
    assert post.payload == {
        "tts": False,
        "flags": 8192,
        "allowed_mentions": NO_PINGS,
        "attachments": [
            {
                "id": 0,
                "filename": "voice-message.ogg",
                "duration_secs": recording.duration_secs,
                "waveform": recording.waveform,
            }
        ],
    }
    assert "content" not in post.payload
    [file] = post.files()
    assert (file.name, file.filename, file.content_type) == ("files[0]", "voice-message.ogg", "audio/ogg")
    assert file.data == recording.data
    with av.open(io.BytesIO(file.data)) as ogg:  # what listeners' clients play: 48 kHz mono Opus of the stated length
        stream = ogg.streams.audio[0]
        seconds = sum(frame.samples for frame in ogg.decode(stream)) / stream.sample_rate
        found = (ogg.format.name, stream.codec_context.name, stream.sample_rate, stream.channels)
    assert found == ("ogg", "opus", 48_000, 1)
    assert seconds == pytest.approx(recording.duration_secs, abs=0.02)
    assert isinstance(recording.duration_secs, float) and len(base64.b64decode(recording.waveform)) <= 256
    # What discord.py (and so the bot) makes of Discord's answer:
    assert sent.flags.voice and sent.content == ""
    [attachment] = sent.attachments
    assert attachment.is_voice_message()
    assert attachment.duration == recording.duration_secs
    assert attachment.waveform == base64.b64decode(recording.waveform)


async def test_a_voice_message_can_reply_without_pinging_the_asker(
    client: discord.Client, discord_rest: DiscordRest, recording: VoiceRecording
) -> None:
    asked = question(client)
    sent = await send_voice_message(client.get_partial_messageable(CHANNEL), recording, reference=asked)

    payload = discord_rest.posts[0].payload
    assert payload["message_reference"] == {
        "message_id": asked.id,
        "channel_id": CHANNEL,
        "fail_if_not_exists": False,  # the answer still arrives when the question was deleted meanwhile
    }
    assert payload["allowed_mentions"] == NO_PINGS
    assert payload["flags"] == 8192 and "content" not in payload
    assert sent.type is discord.MessageType.reply


def test_the_file_entry_carries_the_voice_fields() -> None:
    recording = VoiceRecording(b"OggS", 1.5, base64.b64encode(b"\x00\x80\xff").decode())
    assert VoiceMessageFile(recording).to_dict(3) == {
        "id": 3,
        "filename": "voice-message.ogg",
        "duration_secs": 1.5,
        "waveform": "AID/",
    }


# Delivery and its fallback to a file


async def test_a_spoken_answer_goes_out_as_a_voice_message_when_allowed(
    client: discord.Client, discord_rest: DiscordRest, recording: VoiceRecording
) -> None:
    delivery = await deliver_spoken_answer(client.get_partial_messageable(CHANNEL), recording, can_send_voice=True)
    assert delivery.as_voice_message and delivery.note is None
    assert delivery.message.attachments[0].is_voice_message()
    assert len(discord_rest.posts) == 1


async def test_a_refused_voice_message_is_posted_again_as_a_file_naming_the_permission(
    client: discord.Client, discord_rest: DiscordRest, recording: VoiceRecording
) -> None:
    discord_rest.refusals.append((403, 50173))
    asked = question(client)
    delivery = await deliver_spoken_answer(
        client.get_partial_messageable(CHANNEL), recording, can_send_voice=True, reference=asked
    )

    voice_try, fallback = discord_rest.posts
    assert voice_try.payload["flags"] == 8192
    assert fallback.payload == {
        "content": NO_PERMISSION_NOTE,
        "tts": False,
        "allowed_mentions": NO_PINGS,
        "message_reference": {"message_id": asked.id, "channel_id": CHANNEL, "fail_if_not_exists": False},
        "attachments": [{"id": 0, "filename": "voice-message.ogg"}],
    }
    [file] = fallback.files()
    assert (file.filename, file.content_type, file.data) == ("voice-message.ogg", "audio/ogg", recording.data)
    assert not delivery.as_voice_message and delivery.note == NO_PERMISSION_NOTE
    assert "Send Voice Messages permission" in delivery.message.content
    assert not delivery.message.attachments[0].is_voice_message()


async def test_without_the_permission_only_the_file_is_posted(
    client: discord.Client, discord_rest: DiscordRest, recording: VoiceRecording
) -> None:
    delivery = await deliver_spoken_answer(client.get_partial_messageable(CHANNEL), recording, can_send_voice=False)
    [post] = discord_rest.posts
    assert "flags" not in post.payload and post.payload["content"] == NO_PERMISSION_NOTE
    assert not delivery.as_voice_message


@pytest.mark.parametrize("code", [50159, 50160, 50161])
async def test_a_voice_message_refused_for_its_form_falls_back_and_is_logged(
    client: discord.Client,
    discord_rest: DiscordRest,
    recording: VoiceRecording,
    code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    discord_rest.refusals.append((400, code))
    delivery = await deliver_spoken_answer(client.get_partial_messageable(CHANNEL), recording, can_send_voice=True)
    assert delivery.note == REFUSED_NOTE
    assert discord_rest.posts[1].payload["content"] == REFUSED_NOTE
    assert any(record.levelno == logging.WARNING and str(code) in record.getMessage() for record in caplog.records)


async def test_other_refusals_reach_the_caller(
    client: discord.Client, discord_rest: DiscordRest, recording: VoiceRecording
) -> None:
    discord_rest.refusals.append((403, 50001))  # Missing Access: a file would be refused as well
    with pytest.raises(discord.Forbidden):
        await deliver_spoken_answer(client.get_partial_messageable(CHANNEL), recording, can_send_voice=True)
    assert len(discord_rest.posts) == 1


# Whether the bot may send voice messages in a channel


async def test_the_permission_is_read_from_the_channel(client: discord.Client) -> None:
    assert can_send_voice_messages(text_channel(client))
    assert not can_send_voice_messages(text_channel(client, denied=SEND_VOICE_MESSAGES))


async def test_direct_messages_always_allow_voice_messages(client: discord.Client) -> None:
    assert client.user is not None
    dm = discord.DMChannel(me=client.user, state=client._connection, data={"id": str(CHANNEL), "type": 1})  # type: ignore[typeddict-item]
    assert can_send_voice_messages(dm)
    assert can_send_voice_messages(client.get_partial_messageable(CHANNEL))


async def test_a_partial_channel_in_a_server_cannot_tell_so_the_file_is_used(client: discord.Client) -> None:
    assert not can_send_voice_messages(client.get_partial_messageable(CHANNEL, guild_id=GUILD))
