"""How Discord users are named to the API: a keyed hash per deployment, never their Discord id.

The provider sees a member as `safety_identifier` (for abuse detection) and as the `name` of their chat
messages (to tell apart people with the same display name). Both come from one HMAC-SHA256 of the Discord id
under a random key made at the deployment's first start and kept in its database: stable for a member across
restarts and processes, but not linkable to the Discord id, nor across deployments.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bot.store import Store

KEY_META = "identity_key"
KEY_BYTES = 32
SAFETY_IDENTIFIER_CHARS = 32  # the API takes up to 64
# 48 bits: a clash between two speakers of one conversation is not a practical worry.
NAME_CHARS = 12
MAX_KEPT_DIGESTS = 10_000


class Identity:
    """Names Discord users for the API with one keyed hash (see the module's docstring)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        # Every request names each user turn of its window: the digests are kept, not made again each time.
        self._digests: dict[int, str] = {}

    @classmethod
    async def load(cls, store: Store) -> Identity:
        """The deployment's identity: its key read from the store, made there first if this is the first start."""
        # setdefault: of two processes starting at once on one database, both end up with the key stored first.
        stored = await store.setdefault_meta(KEY_META, secrets.token_hex(KEY_BYTES))
        return cls(bytes.fromhex(stored))

    def _digest(self, user_id: int) -> str:
        digest = self._digests.get(user_id)
        if digest is None:
            if len(self._digests) >= MAX_KEPT_DIGESTS:
                self._digests.clear()
            digest = self._digests[user_id] = hmac.new(
                self._key, f"discord-user:{user_id}".encode(), hashlib.sha256
            ).hexdigest()
        return digest

    def safety_identifier(self, user_id: int) -> str:
        """The member's id for the provider's abuse detection."""
        return self._digest(user_id)[:SAFETY_IDENTIFIER_CHARS]

    def message_name(self, user_id: int) -> str:
        """The `name` of the member's chat messages: matches ^[a-zA-Z0-9_-]+$, one per member."""
        return f"user_{self._digest(user_id)[:NAME_CHARS]}"
