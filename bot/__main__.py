"""The entry point: `python -m bot` loads .env, checks the settings and runs the bot until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import aiohttp
import discord
from dotenv import load_dotenv

from bot import doctor
from bot.bot import Bot
from bot.config import DEVELOPER_PORTAL, TOKEN_FIX, Settings
from bot.errors import ConfigError, StartupError

log = logging.getLogger("bot")

EXIT_CONFIG = 2
EXIT_DISCORD_REFUSED = 3
EXIT_UNREACHABLE = 4
# SIGTERM must end the process within 10 s (Heroku-style platforms kill it after that).
SHUTDOWN_TIMEOUT_SECONDS = 8.0


def main() -> int:
    """Run the bot (or, as `python -m bot doctor`, check its set-up); return the process exit code."""
    load_dotenv(override=False)  # the environment wins over .env
    if sys.argv[1:] == ["doctor"]:
        return doctor.main(os.environ)
    if sys.argv[1:]:
        print(f"Usage: python -m bot [doctor]; {' '.join(sys.argv[1:])!r} is not a command.", file=sys.stderr)
        return EXIT_CONFIG
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    # discord.py's gateway chatter is noise at INFO.
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
    log.info("Starting with %s", settings)
    return asyncio.run(run(settings))


async def run(settings: Settings) -> int:
    """Run the bot until it is told to stop or Discord refuses it."""
    bot = Bot(settings)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    runner = asyncio.create_task(bot.start(settings.discord_token))
    stopper = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # re-raise why the bot stopped on its own
            return 0
        log.info("Stopping…")
        try:
            await asyncio.wait_for(bot.close(), SHUTDOWN_TIMEOUT_SECONDS)
        except TimeoutError:
            log.error("The bot did not close within %.0f s; exiting anyway", SHUTDOWN_TIMEOUT_SECONDS)
            return 1
        return 0
    except StartupError as error:
        log.error("%s", error)
        return EXIT_CONFIG
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN: %s into DISCORD_TOKEN.", TOKEN_FIX)
        return EXIT_CONFIG
    except discord.PrivilegedIntentsRequired:
        app = (
            f"{DEVELOPER_PORTAL}/{bot.application_id}/bot"
            if bot.application_id
            else f"{DEVELOPER_PORTAL} → your app → Bot"
        )
        log.error(
            "Discord refused the Message Content intent (close code 4014). Either turn on "
            "'Message Content Intent' under 'Privileged Gateway Intents' at %s, or set "
            "DISCORD_MESSAGE_CONTENT=false (the bot then answers only messages that mention it).",
            app,
        )
        return EXIT_DISCORD_REFUSED
    except (aiohttp.ClientError, TimeoutError) as error:
        log.error(
            "Could not reach Discord (%s). Check this machine's network connection and firewall, then start again.",
            type(error).__name__,
        )
        return EXIT_UNREACHABLE
    finally:
        stopper.cancel()
        if not bot.is_closed():
            await bot.close()
        if not runner.done():
            runner.cancel()


if __name__ == "__main__":
    sys.exit(main())
