"""The entry point: `python -m bot` loads .env, checks the settings and runs the bot until SIGTERM/SIGINT.

Installed with pip, the same entry point is the `discord-openai-bot` command.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import discord
from dotenv import load_dotenv

from bot import __version__, doctor
from bot.bot import Bot
from bot.config import DEVELOPER_PORTAL, TOKEN_FIX, Settings
from bot.errors import ConfigError, StartupError

log = logging.getLogger("bot")

EXIT_STOPPED = 0
EXIT_STUCK = 1
EXIT_CONFIG = 2
EXIT_DISCORD_REFUSED = 3
EXIT_UNREACHABLE = 4
# SIGTERM must end the process within 10 s (Heroku-style platforms kill it after that).
SHUTDOWN_TIMEOUT_SECONDS = 8.0


USAGE = """\
Usage: {prog} [doctor]

  {prog}          run the bot until SIGTERM or SIGINT (Ctrl+C)
  {prog} doctor   check the settings, the API and Discord without starting the bot,
  {pad}          and print each problem with its fix

Options: -h, --help (this text); -V, --version (the bot's version).

Settings come from the environment and from .env in the working directory (the environment wins).

Exit codes of {prog}: 0 stopped cleanly; 1 did not close in time; 2 a setting or the database
is wrong; 3 Discord refused the Message Content intent; 4 Discord could not be reached.
Exit codes of {prog} doctor: 0 all is well; 1 problems found; 2 a setting is wrong.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bot, or the doctor, or print the usage or version; return the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    prog = program_name(sys.argv[0])
    if arguments in (["-h"], ["--help"], ["doctor", "-h"], ["doctor", "--help"]):
        print(USAGE.format(prog=prog, pad=" " * len(prog)), end="")
        return EXIT_STOPPED
    if arguments in (["-V"], ["--version"]):
        print(f"discord-openai-bot {__version__}")
        return EXIT_STOPPED
    if arguments not in ([], ["doctor"]):
        print(f"Usage: {prog} [doctor]; {' '.join(arguments)!r} is not a command. See {prog} --help.", file=sys.stderr)
        return EXIT_CONFIG
    # Only the working directory's .env: an upward search would pick up one in any parent folder,
    # while relative paths in it (such as DATABASE_URL's) resolve from the working directory.
    load_dotenv(Path.cwd() / ".env", override=False)  # the environment wins over .env
    if arguments == ["doctor"]:
        return doctor.main(os.environ)
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
    log.info("Starting discord-openai-bot %s: %s", __version__, settings.summary())
    return asyncio.run(run(settings))


def program_name(argv0: str) -> str:
    """How the user started us: `python -m bot`, or the installed `discord-openai-bot` command."""
    name = Path(argv0).name
    return "python -m bot" if name in ("__main__.py", "") else name


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
            return EXIT_STOPPED
        log.info("Stopping…")
        try:
            await asyncio.wait_for(bot.close(), SHUTDOWN_TIMEOUT_SECONDS)
        except TimeoutError:
            log.error("The bot did not close within %.0f s; exiting anyway", SHUTDOWN_TIMEOUT_SECONDS)
            return EXIT_STUCK
        return EXIT_STOPPED
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
