"""`python -m bot doctor`: checks the settings, the API and Discord, and prints each problem with its fix."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import TextIO

import aiohttp

from bot.access import Gate
from bot.bot import Bot
from bot.config import Settings
from bot.doctor.api_checks import check_api, check_speech_api, speech_server_apart
from bot.doctor.database import open_inspection_store
from bot.doctor.discord_checks import base_permissions, channel_permissions, check_discord
from bot.doctor.report import Report
from bot.errors import ConfigError
from bot.render import count

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2


def main(env: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    """Run every check against the settings in `env`; return the exit code (0 only when all is well)."""
    report = Report(out)
    report.section("Configuration")
    try:
        settings = Settings.from_env(env)
    except ConfigError as error:
        for problem in error.problems:
            report.problem(problem, "set it in the environment or .env, then run the doctor again.")
        return EXIT_CONFIG
    report.ok("Every setting is present and valid.")
    check_configuration(settings, report)
    return asyncio.run(diagnose(settings, report))


def check_configuration(settings: Settings, report: Report) -> None:
    """Notes on settings that are valid but may not do what the owner expects."""
    moderating = settings.moderate_prompts or settings.moderate_answers
    if settings.moderation_log_channel_id is not None and not moderating:
        report.note("MODERATION_LOG_CHANNEL_ID is set, but MODERATE_PROMPTS and MODERATE_ANSWERS are both off.")
    if not settings.prices:
        report.note("PRICES is empty: /usage cannot estimate what use costs.")


async def diagnose(settings: Settings, report: Report) -> int:
    """Check the API and Discord; print the invite link; return the exit code."""
    store = await open_inspection_store(settings, report)
    try:
        async with aiohttp.ClientSession() as session:
            await check_api(settings, store, session, report)
            if speech_server_apart(settings):
                await check_speech_api(settings, store, session, report)
        application_id = await check_discord(settings, Gate(store, settings), report)
    finally:
        await store.close()
    if application_id is not None:
        report.line(f"\nInvite link: {Bot.invite_url(application_id)}")
    if report.problems:
        report.line(f"\n{count(report.problems, 'problem')} found.")
        return EXIT_PROBLEMS
    report.line("\nAll is well.")
    return EXIT_OK


__all__ = [
    "EXIT_CONFIG",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "Report",
    "base_permissions",
    "channel_permissions",
    "check_api",
    "check_discord",
    "check_speech_api",
    "main",
]
