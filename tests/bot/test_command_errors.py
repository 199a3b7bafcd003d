"""The words for failed commands: each kind of failed check its own, and values Discord let through."""

from __future__ import annotations

from discord import app_commands

from bot.bot import describe_check_failure, permission_names


def test_each_failed_check_says_what_would_let_the_command_run() -> None:
    cooldown = app_commands.Cooldown(1, 30.0)
    said = [
        describe_check_failure(app_commands.NoPrivateMessage()),
        describe_check_failure(app_commands.MissingPermissions(["manage_guild", "manage_messages"])),
        describe_check_failure(app_commands.BotMissingPermissions(["attach_files", "embed_links"])),
        describe_check_failure(app_commands.CommandOnCooldown(cooldown, 12.2)),
        describe_check_failure(app_commands.MissingRole(123)),
        describe_check_failure(app_commands.MissingAnyRole([123, "DJ *"])),
        describe_check_failure(app_commands.CheckFailure()),
    ]
    assert said == [
        "💬 This command works only in a server.",
        "🔒 You need these permissions for that: Manage Server, Manage Messages.",
        "🔒 I need these permissions here for that: Attach Files, Embed Links.",
        "⏳ That command is cooling down. Try again in 13 s.",
        "🔒 That command needs the role <@&123>.",
        "🔒 That command needs one of these roles: <@&123>, **DJ \\***.",
        "🚫 You can't use this command here.",
    ]
    assert len(set(said)) == len(said)


def test_permissions_are_named_as_the_discord_client_names_them() -> None:
    assert permission_names(["manage_guild", "view_audit_log", "send_messages_in_threads"]) == [
        "Manage Server",
        "View Audit Log",
        "Send Messages in Threads",
    ]
