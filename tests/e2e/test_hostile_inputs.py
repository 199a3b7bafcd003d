"""Every registered command and option, fed hostile values: each is answered clearly, nothing crashes, and what
is invalid never reaches the API.

The values are ones Discord lets through: it enforces choices, lengths and ranges itself, so strings are cut to
an option's length and numbers sit at its range's edges. One option is hostile at a time; the others take a
plain value.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.errors import GENERIC_FAILURE
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat_flows import CHAT, bot_messages, wait_for_text
from tests.e2e.test_images_flows import DRAWING, photo
from tests.fakes.audio_fixtures import mp3_file
from tests.fakes.discord_emulator import (
    ChannelType,
    DiscordEmulator,
    EmuChannel,
    EmuFile,
    EmuInteraction,
    EmuUser,
    MessageFlag,
)
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest

Json = dict[str, Any]
STRING, INTEGER, BOOLEAN, CHANNEL, NUMBER, ATTACHMENT = 3, 4, 5, 7, 10, 11
SUBCOMMAND = 1
# Members and the server may make any number of requests: a limit would hide what the values do.
NO_LIMITS = {
    "USER_REQUESTS_PER_MINUTE": "0",
    "GUILD_REQUESTS_PER_MINUTE": "0",
    "USER_DAILY_CHAT_TOKENS": "0",
    "GUILD_DAILY_CHAT_TOKENS": "0",
    "USER_DAILY_IMAGES": "0",
    "GUILD_DAILY_IMAGES": "0",
}
HOSTILE_TEXT = (
    "\u200b",  # zero-width space only
    "\u200b\u200d\ufeff",
    "\u202eexe.txt\u202c right-to-left override",
    "@everyone @here",
    "<@&1> <@1> <#1> <@!1>",
    "**__~~||`" * 300,  # a markdown bomb
    "```\n" * 500,
    "../../../etc/passwd",
    "%s%n{0}${jndi:ldap://x}",
    "x" * 4000,
)
# Pictures of a kind and files no converter takes: each refused before anything is uploaded.
TRANSIENT = (DRAWING, "🎛️", "🎧")


def _zip(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, b"not what it claims to be")
    return buffer.getvalue()


HOSTILE_FILES = (
    EmuFile("empty.png", b"", "image/png"),
    EmuFile("holiday.png", _zip("holiday.png"), "image/png"),  # a zip named .png
    EmuFile("talk.mp3", _zip("talk.mp3"), "audio/mpeg"),  # a zip named .mp3
    EmuFile("a" * 180 + ".ogg", b"OggS" + b"\x00" * 64, "audio/ogg"),  # a broken header under a long name
    EmuFile("passwd", b"root:x:0:0:root:/root:/bin/bash\n", None),
)


@dataclass(frozen=True)
class Case:
    """One command run with one hostile option value; `reached_api` says whether a request shows it got through."""

    user: EmuUser
    command: str
    options: Json
    what: str
    reached_api: Callable[[RecordedRequest], bool] | None = None


def plain_value(option: Json, emulator: DiscordEmulator) -> Any:
    """A value any command takes for an option it needs."""
    if option.get("choices"):
        return option["choices"][0]["value"]
    kind = option["type"]
    if kind == STRING:
        return "en" if option.get("min_length") == 2 else "hello"
    if kind in (INTEGER, NUMBER):
        return option.get("min_value", 1)
    if kind == BOOLEAN:
        return True
    if kind == CHANNEL:
        return emulator.general
    if kind == ATTACHMENT:
        return (
            photo()
            if "image" in option["description"].lower() or "picture" in option["description"].lower()
            else (EmuFile("talk.mp3", mp3_file(1.0), "audio/mpeg"))
        )
    raise AssertionError(f"no plain value for option type {kind}")


def hostile_values(option: Json, unseen: EmuChannel) -> list[Any]:
    """What a hostile member (or a confused Discord) can put in an option, within what Discord enforces."""
    if option.get("choices"):
        return []  # Discord takes only the listed values
    kind = option["type"]
    if kind == STRING:
        low, high = option.get("min_length", 1), option.get("max_length", 6000)
        cut = [text[:high] for text in HOSTILE_TEXT]
        return list(dict.fromkeys(text for text in cut if len(text) >= low))
    if kind in (INTEGER, NUMBER):
        low, high = option.get("min_value", -(2**53) + 1), option.get("max_value", 2**53 - 1)
        return [low, high]
    if kind == BOOLEAN:
        return [True, False]
    if kind == CHANNEL:
        return [unseen]
    if kind == ATTACHMENT:
        return list(HOSTILE_FILES)
    raise AssertionError(f"no hostile values for option type {kind}")


def refusal_check(path: str, option: str, value: Any) -> Callable[[RecordedRequest], bool] | None:
    """For a value the bot must refuse: how a request carrying it would look (None: it may reach the API)."""
    if isinstance(value, EmuFile):
        return lambda r: any(data == value.data for _, _, data in r.files.values())
    if path == "chat" and option == "model":
        return lambda r: r.path == CHAT and r.json.get("model") == value
    if path == "transcribe" and option == "language" and not re.fullmatch(r"[a-z]{2}", value.strip().lower()):
        return lambda r: r.fields.get("language") == value.strip().lower()
    return None


def cases(emulator: DiscordEmulator, unseen: EmuChannel) -> list[Case]:
    """Every chat-input command (and subcommand) with each of its options made hostile in turn."""
    found = []
    commands = sorted(emulator.commands(emulator.guild_id), key=lambda c: c["name"] == "settings")  # settings last
    for command in commands:
        if command.get("type", 1) != 1:
            continue
        user = emulator.admin if command["name"] in ("settings", "system") else emulator.member
        options = command.get("options") or []
        subcommands = [o for o in options if o["type"] == SUBCOMMAND] or [None]
        for sub in subcommands:
            defs = (sub or {}).get("options", []) if sub else options
            path = command["name"] if sub is None else f"{command['name']} {sub['name']}"
            needed = {d["name"]: plain_value(d, emulator) for d in defs if d.get("required")}
            wrap: Callable[[Json], Json] = (lambda o: o) if sub is None else (lambda o, s=sub["name"]: {s: o})
            found.append(Case(user, command["name"], wrap(needed), f"/{path} with plain values"))
            for option in defs:
                for value in hostile_values(option, unseen):
                    shown = repr(value)[:40]
                    check = refusal_check(path, option["name"], value)
                    found.append(
                        Case(
                            user,
                            command["name"],
                            wrap({**needed, option["name"]: value}),
                            f"/{path} {option['name']}={shown}",
                            check,
                        )
                    )
    return found


async def hostile_messages(emulator: DiscordEmulator) -> None:
    """Messages rather than commands: mentions with hostile text, a voice message and a file that are not
    what they claim, and the Transcribe message command on such a file; each gets its answer."""
    mention = emulator.bot_user.mention
    for text in (f"{mention} @everyone @here", f"{mention} " + "||x||" * 300, f"{mention} \u202e\u200b"):
        await emulator.send_message(emulator.random.id, emulator.member, text)
    await emulator.wait_for(
        lambda: len([m for m in bot_messages(emulator, emulator.random.id) if m.content.startswith("Echo:")]) == 3,
        timeout=10,
        what="the three mentions answered",
    )
    thread = await emulator.create_thread(emulator.general.id, emulator.member, "voices")
    fake_voice = EmuFile("voice-message.ogg", _zip("voice.ogg"), "audio/ogg", duration_secs=2.0, waveform="AAAA")
    await emulator.send_message(
        thread.id, emulator.member, attachments=[fake_voice], flags=MessageFlag.IS_VOICE_MESSAGE
    )
    await wait_for_text(emulator, thread.id, "couldn't read")
    posted = await emulator.send_message(emulator.random.id, emulator.member, attachments=[HOSTILE_FILES[2]])
    menu = await emulator.invoke_message_command(emulator.member, emulator.random.id, "Transcribe", int(posted["id"]))
    await menu.wait_done(timeout=10)


def settled(interaction: EmuInteraction) -> bool:
    """Whether the member sees a final answer: not "thinking", not a progress or drawing state."""
    original = interaction.original
    if interaction.responded_at is None and interaction.choices is None:
        return False
    return original is None or not (original.loading or original.content.startswith(TRANSIENT))


async def test_hostile_values_in_every_command_are_answered_clearly_and_invalid_ones_never_reach_the_api(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    unseen = EmuChannel(
        emulator.snowflake(),
        ChannelType.PUBLIC_THREAD,
        "archived long ago",
        emulator.guild_id,
        parent_id=emulator.general.id,
        owner_id=emulator.admin.id,
        archived=True,
    )
    emulator.world.add_channel(unseen)  # a thread the bot never heard of: Discord still offers it
    async with run_bot(**NO_LIMITS):
        ran: list[tuple[Case, EmuInteraction]] = []
        for case in cases(emulator, unseen):
            interaction = await emulator.invoke_slash(case.user, emulator.general.id, case.command, case.options)
            await interaction.wait_done(timeout=10)
            ran.append((case, interaction))
        for typed in ("", "\u202e", "@everyone", "x" * 100, "../"):
            choices = await emulator.invoke_autocomplete(
                emulator.member, emulator.general.id, "chat", {"prompt": "x", "model": typed}, "model"
            )
            await choices.wait_done()
            assert choices.choices is not None and len(choices.choices) <= 25
        for case, interaction in ran:
            await emulator.wait_for(lambda i=interaction: settled(i), timeout=15, what=case.what)
        await hostile_messages(emulator)
        # Afterwards the bot still answers a plain question, and the settings go back to the default.
        restore = await emulator.invoke_slash(emulator.admin, emulator.general.id, "system", {"restore_default": True})
        await restore.wait_done()
        await emulator.send_message(emulator.random.id, emulator.member, f"{emulator.bot_user.mention} still there?")
        await wait_for_text(emulator, emulator.random.id, "Echo: Member: still there?")

    assert len(ran) > 100, "fewer cases than commands and options should give"
    everything = list(emulator.world.messages.values())
    failures = [m.content[:80] for m in everything if GENERIC_FAILURE in m.content]
    assert failures == [], failures
    pinged = [
        m.content[:80]
        for m in everything
        if m.author.id == emulator.bot_user.id and (m.pings.everyone or m.pings.roles)
    ]
    assert pinged == [], pinged
    for case, _ in ran:
        if case.reached_api is not None:
            assert not [r for r in fake_openai.requests if case.reached_api(r)], f"{case.what} reached the API"
    bugs = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("bot", "cogs"))]
    assert bugs == [], bugs
