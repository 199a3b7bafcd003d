"""Runs the real entry point (`python -m bot`'s main) with discord.py pointed at a local Discord emulator.

Usage: python tests/e2e/bot_process.py API_BASE GATEWAY_URL. Only the two discord.py constants the
emulator fixture also sets are changed; everything else is the product as deployed.
"""

import sys
from pathlib import Path

import discord
import yarl

sys.path.insert(0, str(Path(__file__).parents[2]))

from bot.__main__ import main

api_base, gateway_url = sys.argv[1:3]
discord.http.Route.BASE = api_base
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
sys.argv[1:] = []  # the entry point reads its own arguments
sys.exit(main())
