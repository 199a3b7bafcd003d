"""Runs the real entry point (`python -m bot`'s main) with discord.py pointed at a local Discord emulator.

Usage: python tests/e2e/bot_process.py API_BASE GATEWAY_URL. Only the two discord.py constants the
emulator fixture also sets are changed; everything else is the product as deployed. With
TEST_TIKTOKEN_HANGS=1, loading tiktoken's vocabulary never ends, as behind a firewall that drops packets.
"""

import os
import sys
import threading
from pathlib import Path

import discord
import yarl

sys.path.insert(0, str(Path(__file__).parents[2]))

from bot.__main__ import main

api_base, gateway_url = sys.argv[1:3]
discord.http.Route.BASE = api_base
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
sys.argv[1:] = []  # the entry point reads its own arguments
if os.environ.get("TEST_TIKTOKEN_HANGS") == "1":
    import tiktoken

    # A stand-in that never returns, where tiktoken would download its vocabulary.
    tiktoken.get_encoding = lambda name: threading.Event().wait()  # type: ignore[assignment,return-value]
sys.exit(main())
