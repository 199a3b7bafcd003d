"""A local Discord emulator (REST, gateway, CDN) for end-to-end tests of an unmodified discord.py bot."""

from .emulator import ClientDied, DiscordEmulator
from .flags import ChannelType, Intent, MessageFlag, Perm
from .gateway import IdentifyRecord, IdentifyRefusal
from .models import (
    EmuAttachment,
    EmuChannel,
    EmuFile,
    EmuGuild,
    EmuInteraction,
    EmuMessage,
    EmuRequest,
    EmuRevision,
    EmuRole,
    EmuUser,
    Pings,
)

__all__ = [
    "ChannelType",
    "ClientDied",
    "DiscordEmulator",
    "EmuAttachment",
    "EmuChannel",
    "EmuFile",
    "EmuGuild",
    "EmuInteraction",
    "EmuMessage",
    "EmuRequest",
    "EmuRevision",
    "EmuRole",
    "EmuUser",
    "IdentifyRecord",
    "IdentifyRefusal",
    "Intent",
    "MessageFlag",
    "Perm",
    "Pings",
]
