"""The bot's core: settings, store, API client and the Discord client that loads the cogs."""

__version__ = "0.1.0"
