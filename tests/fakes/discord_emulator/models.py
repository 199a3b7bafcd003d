"""Data the Discord emulator keeps: users, files, guilds, channels, messages, interactions, requests."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .flags import ChannelType, MessageFlag, now_iso, snowflake_time

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

MENTION_USER = re.compile(r"<@!?(\d+)>")
MENTION_ROLE = re.compile(r"<@&(\d+)>")
MENTION_EVERYONE = re.compile(r"@(everyone|here)")
Json = dict[str, Any]


@dataclass(frozen=True)
class EmuUser:
    """A Discord user (a person or the bot)."""

    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        """The text that mentions this user in a message."""
        return f"<@{self.id}>"

    def payload(self) -> Json:
        """The user object as Discord sends it."""
        data: Json = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(frozen=True)
class EmuFile:
    """A file a user attaches (voice messages also carry duration_secs and waveform)."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None
    duration_secs: float | None = None
    waveform: str | None = None


@dataclass(frozen=True)
class EmuAttachment:
    """A stored attachment: its bytes and the URL the emulator's CDN serves it at."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None
    duration_secs: float | None = None
    waveform: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def waveform_bytes(self) -> bytes | None:
        """The decoded waveform (one byte per sample), or None without a valid one."""
        return decode_waveform(self.waveform)

    def payload(self) -> Json:
        """The attachment object as Discord sends it."""
        data: Json = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
        }
        optional = {
            "content_type": self.content_type,
            "description": self.description,
            "duration_secs": self.duration_secs,
            "waveform": self.waveform,
            "width": self.width,
            "height": self.height,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        if self.duration_secs is not None:
            data["flags"] = 0
        return data


def decode_waveform(waveform: str | None) -> bytes | None:
    """A voice message waveform's samples, or None when it is absent or not base64."""
    if not waveform:
        return None
    try:
        return base64.b64decode(waveform, validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class EmuRole:
    """A guild role."""

    id: int
    name: str
    permissions: int
    position: int
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        """The text that mentions this role in a message."""
        return f"<@&{self.id}>"

    def payload(self) -> Json:
        """The role object as Discord sends it."""
        data: Json = {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    """A channel permission overwrite for a role (type 0) or a member (type 1)."""

    type: int
    allow: int = 0
    deny: int = 0


@dataclass
class EmuChannel:
    """A guild text channel, a thread, or a DM channel."""

    id: int
    type: ChannelType
    name: str | None
    guild_id: int | None
    parent_id: int | None = None
    position: int = 0
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    owner_id: int | None = None
    member_ids: set[int] = field(default_factory=set)
    recipient: EmuUser | None = None
    last_message_id: int | None = None
    auto_archive_duration: int = 4320
    archived: bool = False
    locked: bool = False
    invitable: bool = True
    created_at: str = field(default_factory=now_iso)

    @property
    def is_thread(self) -> bool:
        """Whether this channel is a thread."""
        return self.type in (ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD)


@dataclass(eq=False)
class EmuGuild:
    """A guild: its roles, its members (user id -> role ids, join time), its text channels and threads.

    `channels` holds the text channels in position order and `threads` the live threads; a deleted one
    leaves both. The bot is in the guild while `is_member(bot_id)`.
    """

    id: int
    name: str
    owner_id: int
    bot_role_id: int
    roles: dict[int, EmuRole] = field(default_factory=dict)
    member_roles: dict[int, list[int]] = field(default_factory=dict)
    joined_at: dict[int, str] = field(default_factory=dict)
    channels: dict[int, EmuChannel] = field(default_factory=dict)
    threads: dict[int, EmuChannel] = field(default_factory=dict)

    @property
    def everyone_role(self) -> EmuRole:
        """The @everyone role (its id is the guild's)."""
        return self.roles[self.id]

    @property
    def bot_role(self) -> EmuRole:
        """The bot's managed role."""
        return self.roles[self.bot_role_id]

    @property
    def general(self) -> EmuChannel:
        """The #general text channel."""
        return self.channel("general")

    @property
    def random(self) -> EmuChannel:
        """The #random text channel."""
        return self.channel("random")

    @property
    def text_channels(self) -> list[EmuChannel]:
        """The guild's text channels, in position order."""
        return list(self.channels.values())

    def channel(self, name: str) -> EmuChannel:
        """The text channel with this name."""
        found = next((c for c in self.channels.values() if c.name == name), None)
        if found is None:
            names = [c.name for c in self.channels.values()]
            raise LookupError(f"guild {self.name!r} has no channel #{name} (it has {names})")
        return found

    def is_member(self, user_id: int) -> bool:
        """Whether the user belongs to the guild."""
        return user_id in self.member_roles


@dataclass(frozen=True)
class Pings:
    """Who a message notifies, after applying its allowed_mentions."""

    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    everyone: bool = False

    def __bool__(self) -> bool:
        return bool(self.users or self.roles or self.everyone)


@dataclass(frozen=True)
class EmuRevision:
    """A message's state before one of its edits: shown from `since` until `at` (emulator clock seconds)."""

    content: str
    embeds: list[Json]
    attachment_ids: list[int]
    flags: int
    at: float
    since: float = 0.0


@dataclass
class EmuMessage:
    """A stored message: `history` holds its state before each edit, `pings` whom its creation notified."""

    id: int
    channel_id: int
    guild_id: int | None
    author: EmuUser
    content: str = ""
    type: int = 0
    flags: int = 0
    tts: bool = False
    embeds: list[Json] = field(default_factory=list)
    components: list[Json] = field(default_factory=list)
    attachments: list[EmuAttachment] = field(default_factory=list)
    allowed_mentions: Json | None = None
    reply_to: EmuMessage | None = None
    webhook_id: int | None = None
    interaction_metadata: Json | None = None
    history: list[EmuRevision] = field(default_factory=list)
    edited_at: str | None = None
    deleted: bool = False
    thread_id: int | None = None
    reactions: list[str] = field(default_factory=list)
    pings: Pings = field(default_factory=lambda: Pings())
    created_at: str = ""
    visible_at: float = 0.0

    def __post_init__(self) -> None:
        self.created_at = self.created_at or snowflake_time(self.id)

    @property
    def ephemeral(self) -> bool:
        """Whether only the interaction's user sees this message."""
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Whether this is a deferred response still showing "thinking"."""
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def revisions(self) -> list[str]:
        """Every content this message has had, oldest first, ending with the current one."""
        return [revision.content for revision in self.history] + [self.content]

    @property
    def timeline(self) -> list[tuple[float, str]]:
        """(emulator clock time it became visible, content) for every state, oldest first."""
        return [(revision.since, revision.content) for revision in self.history] + [(self.visible_at, self.content)]

    @property
    def is_voice_message(self) -> bool:
        """Whether the message carries the IS_VOICE_MESSAGE flag."""
        return bool(self.flags & MessageFlag.IS_VOICE_MESSAGE)

    @property
    def mentions(self) -> Pings:
        """The mentions Discord lists for the current content (edits never notify: see `pings`)."""
        return compute_pings(self.content, self.allowed_mentions, self.reply_to)

    @property
    def user_mentions(self) -> list[int]:
        """The user ids written as mentions in the content, in order, without repeats."""
        return list(dict.fromkeys(int(uid) for uid in MENTION_USER.findall(self.content)))


def compute_pings(content: str, allowed: Json | None, reply_to: EmuMessage | None) -> Pings:
    """Apply Discord's allowed_mentions rules to the mentions written in `content`."""
    users = {int(uid) for uid in MENTION_USER.findall(content)}
    roles = {int(rid) for rid in MENTION_ROLE.findall(content)}
    everyone = bool(MENTION_EVERYONE.search(content))
    replied = reply_to.author.id if reply_to is not None else None
    if allowed is None:
        if replied is not None:
            users.add(replied)
        return Pings(frozenset(users), frozenset(roles), everyone)
    parse = set(allowed.get("parse") or ())
    allowed_users = {int(uid) for uid in allowed.get("users") or ()}
    allowed_roles = {int(rid) for rid in allowed.get("roles") or ()}
    users = users if "users" in parse else users & allowed_users
    roles = roles if "roles" in parse else roles & allowed_roles
    if replied is not None and allowed.get("replied_user"):
        users.add(replied)
    return Pings(frozenset(users), frozenset(roles), everyone and "everyone" in parse)


@dataclass
class EmuInteraction:
    """An interaction the emulator dispatched and what the bot answered; times are seconds after dispatch."""

    id: int
    token: str
    type: int
    name: str
    user: EmuUser
    channel_id: int
    guild_id: int | None
    payload: Json
    dispatched_at: float
    callback_type: int | None = None
    acked_at: float | None = None
    deferred_at: float | None = None
    responded_at: float | None = None
    ephemeral: bool = False
    original: EmuMessage | None = None
    followups: list[EmuMessage] = field(default_factory=list)
    modal: Json | None = None
    choices: list[Json] | None = None
    emulator: DiscordEmulator | None = field(default=None, repr=False)

    @property
    def messages(self) -> list[EmuMessage]:
        """The original response (if any) followed by the followups."""
        return ([self.original] if self.original is not None else []) + self.followups

    async def wait_done(self, timeout: float = 5.0) -> EmuInteraction:  # noqa: ASYNC109 (see DiscordEmulator.wait_for)
        """Wait until the user sees an answer: a message, an edited deferral, a followup, a modal or choices."""
        assert self.emulator is not None
        await self.emulator.wait_for(
            lambda: self.responded_at is not None, timeout=timeout, what=f"interaction {self.name!r} to be answered"
        )
        return self


@dataclass
class EmuRequest:
    """One REST request the emulator received (json is the body, or a multipart's payload_json).

    `route` is the matched route template after /api/v10, such as "/channels/{channel_id}/messages".
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[EmuFile]
    at: float
    status: int = 0
    route: str = ""
