"""Discord's error answers: JSON error bodies (with codes) and 429s with Discord's headers."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from aiohttp import web

from .models import Json

JSON_TYPE = "application/json"


class DiscordHTTPError(Exception):
    """An error answer in Discord's shape; `violation` marks a request the bot should never have sent."""

    def __init__(
        self, status: int, code: int, message: str, errors: Json | None = None, *, violation: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.violation = status, code, message, errors, violation

    def response(self) -> web.Response:
        """The JSON error response."""
        body: Json = {"code": self.code, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, status=self.status)


class RateLimited(Exception):
    """A 429 to answer with Discord's headers and body."""

    def __init__(self, retry_after: float, *, is_global: bool = False, scope: str = "user") -> None:
        super().__init__(f"rate limited for {retry_after}s")
        self.retry_after, self.is_global, self.scope = retry_after, is_global, scope

    def response(self) -> web.Response:
        """The 429 response (discord.py treats a 429 without a Via header as a Cloudflare ban)."""
        headers = {
            "Retry-After": str(math.ceil(self.retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
            "X-RateLimit-Scope": self.scope,
            "Via": "1.1 google",
        }
        if self.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": self.is_global}
        return json_response(body, status=429, headers=headers)


def field_error(code: str, message: str) -> Json:
    """One field's entry in an Invalid Form Body's `errors`."""
    return {"_errors": [{"code": code, "message": message}]}


def invalid_form(errors: Json) -> DiscordHTTPError:
    """Discord's 50035 Invalid Form Body, marked as a violation."""
    return DiscordHTTPError(400, 50035, "Invalid Form Body", errors, violation=True)


def unknown(what: str, code: int) -> DiscordHTTPError:
    """Discord's 404 for an unknown object."""
    return DiscordHTTPError(404, code, f"Unknown {what}")


MISSING_PERMISSIONS = DiscordHTTPError(403, 50013, "Missing Permissions")
MISSING_ACCESS = DiscordHTTPError(403, 50001, "Missing Access")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response as Discord sends it."""
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": JSON_TYPE} | (headers or {})
    )
