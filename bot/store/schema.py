"""The schema of both backends, by version, and the few row conversions they share.

Each list moves a database from version N to N+1; append, never edit, so existing databases migrate.
The two lists describe the same tables in each dialect: SQLite keeps times as ISO text and days as
'YYYY-MM-DD', PostgreSQL as timestamptz and date. Ledger rows without a user or guild are 0 (and an
image size '') in the daily roll-up, whose key cannot hold NULLs.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from bot.store.base import Picture, UsageRecord, budget_measure

SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE channels (
            channel_id INTEGER PRIMARY KEY,
            guild_id INTEGER,
            parent_id INTEGER,
            opened_by INTEGER,
            is_conversation INTEGER NOT NULL DEFAULT 0,
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            channel_id INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            author_id INTEGER,
            author_name TEXT NOT NULL,
            content TEXT NOT NULL,
            spoken INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX turns_by_channel ON turns (channel_id, id)",
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            feature TEXT NOT NULL,
            model TEXT NOT NULL,
            user_id INTEGER,
            guild_id INTEGER,
            channel_id INTEGER,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            images INTEGER NOT NULL DEFAULT 0,
            image_size TEXT,
            audio_seconds REAL NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX usage_by_guild ON usage (guild_id, created_at)",
        "CREATE INDEX usage_by_user ON usage (user_id, created_at)",
    ),
    (
        "CREATE TABLE guild_settings (guild_id INTEGER PRIMARY KEY, settings TEXT NOT NULL DEFAULT '{}')",
        "CREATE INDEX usage_by_user_feature ON usage (user_id, feature, created_at)",
        "CREATE INDEX usage_by_guild_feature ON usage (guild_id, feature, created_at)",
    ),
    (
        # Limits move into the database so that they hold across processes, and reports read daily roll-ups
        # kept in the same transaction as each ledger row, so their cost does not grow with the ledger.
        "ALTER TABLE usage ADD COLUMN speech_characters INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX usage_by_user_feature",
        "DROP INDEX usage_by_guild_feature",
        """CREATE TABLE usage_daily (
            guild_id INTEGER NOT NULL,
            day TEXT NOT NULL,
            user_id INTEGER NOT NULL,
            feature TEXT NOT NULL,
            model TEXT NOT NULL,
            image_size TEXT NOT NULL,
            requests INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            images INTEGER NOT NULL,
            audio_seconds REAL NOT NULL,
            speech_characters INTEGER NOT NULL,
            PRIMARY KEY (guild_id, day, user_id, feature, model, image_size)
        )""",
        "CREATE INDEX usage_daily_by_user ON usage_daily (user_id, day)",
        """CREATE TABLE spend_daily (
            scope TEXT NOT NULL,
            key INTEGER NOT NULL,
            feature TEXT NOT NULL,
            day TEXT NOT NULL,
            used REAL NOT NULL,
            PRIMARY KEY (scope, key, feature, day)
        ) WITHOUT ROWID""",
        """CREATE TABLE holds (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL,
            guild_id INTEGER,
            feature TEXT NOT NULL,
            amount REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX holds_by_user ON holds (user_id, feature)",
        "CREATE INDEX holds_by_guild ON holds (guild_id, feature)",
        "CREATE TABLE rate_hits (scope TEXT NOT NULL, key INTEGER NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX rate_hits_by_key ON rate_hits (scope, key, at)",
        "CREATE TABLE identify_slots (bucket INTEGER PRIMARY KEY, next_at REAL NOT NULL)",
        """INSERT INTO usage_daily SELECT COALESCE(guild_id, 0), substr(created_at, 1, 10), COALESCE(user_id, 0),
            feature, model, COALESCE(image_size, ''), COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(images),
            SUM(audio_seconds), 0 FROM usage GROUP BY 1, 2, 3, 4, 5, 6""",
        *(
            f"""INSERT INTO spend_daily SELECT '{scope}', {column}, feature, substr(created_at, 1, 10),
                SUM(CASE feature WHEN 'chat' THEN input_tokens + output_tokens WHEN 'images' THEN images
                    ELSE audio_seconds END)
                FROM usage WHERE {column} IS NOT NULL AND feature IN ('chat', 'images', 'audio') GROUP BY 2, 3, 4"""
            for scope, column in (("user", "user_id"), ("guild", "guild_id"))
        ),
    ),
)

TURN_COLUMNS_V4 = (
    # Token counts are taken once, when a turn is stored; the Discord message ids and the state let a restart
    # find what a crash interrupted and answer it.
    "ALTER TABLE turns ADD COLUMN guild_id {id}",
    "ALTER TABLE turns ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE turns ADD COLUMN message_id {id}",
    "ALTER TABLE turns ADD COLUMN reply_ids TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE turns ADD COLUMN state TEXT NOT NULL DEFAULT 'done'",
    "CREATE INDEX turns_in_flight ON turns (created_at) WHERE state != 'done'",
)
SQLITE_MIGRATIONS += (tuple(statement.format(id="INTEGER") for statement in TURN_COLUMNS_V4),)

PICTURES_V5 = (
    # Pictures shared in a turn: what the model needs to see them again for a few turns (the turn row names
    # them, with their token cost); deleted with their turn, whichever way it goes.
    "ALTER TABLE turns ADD COLUMN pictures TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE turn_pictures (
        id {serial} PRIMARY KEY,
        turn_id {id} NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
        channel_id {id} NOT NULL,
        position INTEGER NOT NULL,
        data {blob} NOT NULL
    )""",
    "CREATE INDEX turn_pictures_by_turn ON turn_pictures (turn_id, position)",
    "CREATE INDEX turn_pictures_by_channel ON turn_pictures (channel_id, id)",
)
SQLITE_MIGRATIONS += (
    tuple(statement.format(id="INTEGER", serial="INTEGER", blob="BLOB") for statement in PICTURES_V5),
)

# PostgreSQL arrived with the schema SQLite reached at version 3, so its first version is that whole schema.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE channels (
            channel_id BIGINT PRIMARY KEY,
            guild_id BIGINT,
            parent_id BIGINT,
            opened_by BIGINT,
            is_conversation BOOLEAN NOT NULL DEFAULT FALSE,
            system_prompt TEXT,
            settings JSONB NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE guild_settings (guild_id BIGINT PRIMARY KEY, settings JSONB NOT NULL DEFAULT '{}')""",
        """CREATE TABLE turns (
            id BIGSERIAL PRIMARY KEY,
            channel_id BIGINT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            author_id BIGINT,
            author_name TEXT NOT NULL,
            content TEXT NOT NULL,
            spoken BOOLEAN NOT NULL DEFAULT FALSE,
            created_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX turns_by_channel ON turns (channel_id, id)",
        """CREATE TABLE usage (
            id BIGSERIAL PRIMARY KEY,
            created_at TIMESTAMPTZ NOT NULL,
            feature TEXT NOT NULL,
            model TEXT NOT NULL,
            user_id BIGINT,
            guild_id BIGINT,
            channel_id BIGINT,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            images INTEGER NOT NULL DEFAULT 0,
            image_size TEXT,
            audio_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            speech_characters BIGINT NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX usage_by_guild ON usage (guild_id, created_at)",
        "CREATE INDEX usage_by_user ON usage (user_id, created_at)",
        """CREATE TABLE usage_daily (
            guild_id BIGINT NOT NULL,
            day DATE NOT NULL,
            user_id BIGINT NOT NULL,
            feature TEXT NOT NULL,
            model TEXT NOT NULL,
            image_size TEXT NOT NULL,
            requests BIGINT NOT NULL,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            images BIGINT NOT NULL,
            audio_seconds DOUBLE PRECISION NOT NULL,
            speech_characters BIGINT NOT NULL,
            PRIMARY KEY (guild_id, day, user_id, feature, model, image_size)
        )""",
        "CREATE INDEX usage_daily_by_user ON usage_daily (user_id, day)",
        """CREATE TABLE spend_daily (
            scope TEXT NOT NULL,
            key BIGINT NOT NULL,
            feature TEXT NOT NULL,
            day DATE NOT NULL,
            used DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, key, feature, day)
        )""",
        """CREATE TABLE holds (
            id BIGSERIAL PRIMARY KEY,
            user_id BIGINT NOT NULL,
            guild_id BIGINT,
            feature TEXT NOT NULL,
            amount DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX holds_by_user ON holds (user_id, feature)",
        "CREATE INDEX holds_by_guild ON holds (guild_id, feature)",
        "CREATE TABLE rate_hits (scope TEXT NOT NULL, key BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX rate_hits_by_key ON rate_hits (scope, key, at)",
        "CREATE TABLE identify_slots (bucket INTEGER PRIMARY KEY, next_at TIMESTAMPTZ NOT NULL)",
        # SQLite's json_patch (RFC 7396 merge patch): objects merge recursively, null removes a key.
        """CREATE FUNCTION bot_merge_patch(target JSONB, patch JSONB) RETURNS JSONB
        LANGUAGE plpgsql IMMUTABLE AS $$
        DECLARE
            result JSONB;
            entry RECORD;
        BEGIN
            IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
                RETURN patch;
            END IF;
            result := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::JSONB END;
            FOR entry IN SELECT key, value FROM jsonb_each(patch) LOOP
                IF jsonb_typeof(entry.value) = 'null' THEN
                    result := result - entry.key;
                ELSE
                    result := jsonb_set(result, ARRAY[entry.key], bot_merge_patch(result -> entry.key, entry.value));
                END IF;
            END LOOP;
            RETURN result;
        END
        $$""",
    ),
    tuple(statement.format(id="BIGINT") for statement in TURN_COLUMNS_V4),
    tuple(statement.format(id="BIGINT", serial="BIGSERIAL", blob="BYTEA") for statement in PICTURES_V5),
)

# A reservation in one round trip instead of six (BEGIN, a lock per key, a read per budget, COMMIT): the same
# steps as the SQLite store's _reserve, inside the database. Each of its statements reads a fresh snapshot,
# so what is read after the locks includes every reservation committed before them. The locks last until the
# statement calling it commits. A later change to it is a new migration with CREATE OR REPLACE.
POSTGRES_MIGRATIONS += (
    (
        """CREATE FUNCTION bot_reserve(
            lock_keys TEXT[], wanted_feature TEXT, member BIGINT, server BIGINT, wanted FLOAT8, moment FLOAT8,
            today DATE, budget_scopes TEXT[], budget_keys BIGINT[], budget_limits FLOAT8[], rate_scopes TEXT[],
            rate_keys BIGINT[], rate_limits FLOAT8[], rate_window FLOAT8, grown_hold BIGINT, hold_seconds FLOAT8,
            OUT refused TEXT, OUT refused_scope TEXT, OUT refused_limit FLOAT8, OUT refused_used FLOAT8,
            OUT retry_after FLOAT8, OUT new_hold BIGINT
        ) LANGUAGE plpgsql AS $$
        DECLARE
            lock_key TEXT;
            i INTEGER;
            taken FLOAT8;
            oldest FLOAT8;
        BEGIN
            FOREACH lock_key IN ARRAY lock_keys LOOP
                PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
            END LOOP;
            FOR i IN 1 .. COALESCE(array_length(budget_scopes, 1), 0) LOOP
                -- One statement, so what is spent and what is held are read in one snapshot.
                SELECT COALESCE((SELECT s.used FROM spend_daily s WHERE s.scope = budget_scopes[i]
                        AND s.key = budget_keys[i] AND s.feature = wanted_feature AND s.day = today), 0)
                    + COALESCE((SELECT SUM(h.amount) FROM holds h WHERE h.feature = wanted_feature
                        AND h.expires_at > moment AND CASE WHEN budget_scopes[i] = 'user'
                            THEN h.user_id = budget_keys[i] ELSE h.guild_id = budget_keys[i] END), 0)
                    INTO taken;
                IF NOT (taken < budget_limits[i] AND taken + wanted <= budget_limits[i]) THEN
                    refused := 'budget';
                    refused_scope := budget_scopes[i];
                    refused_limit := budget_limits[i];
                    refused_used := taken;
                    RETURN;
                END IF;
            END LOOP;
            FOR i IN 1 .. COALESCE(array_length(rate_scopes, 1), 0) LOOP
                DELETE FROM rate_hits r WHERE r.scope = rate_scopes[i] AND r.key = rate_keys[i]
                    AND r.at <= moment - rate_window;
                SELECT r.at INTO oldest FROM rate_hits r WHERE r.scope = rate_scopes[i] AND r.key = rate_keys[i]
                    ORDER BY r.at DESC LIMIT 1 OFFSET rate_limits[i]::INTEGER - 1;
                IF FOUND THEN
                    refused := 'rate';
                    refused_scope := rate_scopes[i];
                    refused_limit := rate_limits[i];
                    refused_used := rate_limits[i];
                    retry_after := GREATEST(oldest + rate_window - moment, 0);
                    RETURN;
                END IF;
            END LOOP;
            INSERT INTO rate_hits (scope, key, at) SELECT t.scope, t.key, moment
                FROM unnest(rate_scopes, rate_keys) AS t(scope, key);
            IF grown_hold IS NOT NULL THEN
                UPDATE holds SET amount = holds.amount + wanted WHERE holds.id = grown_hold;
                new_hold := grown_hold;
            ELSIF wanted > 0 THEN
                INSERT INTO holds (user_id, guild_id, feature, amount, expires_at)
                    VALUES (member, server, wanted_feature, wanted, moment + hold_seconds) RETURNING id INTO new_hold;
            END IF;
        END
        $$""",
    ),
)


class OutdatedSchema(RuntimeError):
    """The database's schema is not the one this bot writes."""

    def __init__(self, found: int, expected: int) -> None:
        super().__init__(f"schema version {found}; this bot writes version {expected}")
        self.found = found
        self.expected = expected


def pictures_text(pictures: tuple[Picture, ...]) -> str:
    """A turn's pictures as its row names them (no data): JSON of file name, type and token cost."""
    if not pictures:
        return ""
    return json.dumps([{"name": p.filename, "type": p.mime_type, "tokens": p.tokens} for p in pictures])


def pictures_of(text: str) -> tuple[Picture, ...]:
    """The pictures a turn row names, without their data (store.picture_data fetches it)."""
    if not text:
        return ()
    return tuple(Picture(item["name"], item["type"], int(item["tokens"])) for item in json.loads(text))


def reply_ids_text(ids: tuple[int, ...]) -> str:
    """Discord message ids as both backends keep them: comma-separated."""
    return ",".join(str(message_id) for message_id in ids)


def reply_ids_of(text: str) -> tuple[int, ...]:
    """The message ids kept by reply_ids_text."""
    return tuple(int(part) for part in text.split(",") if part)


def timestamp(moment: datetime) -> str:
    """A time as SQLite stores it (UTC ISO 8601), so text comparison orders it correctly."""
    if moment.tzinfo is None:
        raise ValueError("stored times must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def utc_day(moment: datetime) -> date:
    """The UTC day of a moment: the day its use counts against."""
    if moment.tzinfo is None:
        raise ValueError("stored times must be timezone-aware")
    return moment.astimezone(UTC).date()


def day_key(moment: datetime) -> str:
    """The UTC day of a moment as SQLite stores days."""
    return utc_day(moment).isoformat()


def ledger_values(usage: UsageRecord) -> tuple[object, ...]:
    """A ledger row's columns after created_at, in the order both backends insert them."""
    return (
        usage.feature,
        usage.model,
        usage.user_id,
        usage.guild_id,
        usage.channel_id,
        usage.input_tokens,
        usage.output_tokens,
        usage.images,
        usage.image_size,
        usage.audio_seconds,
        usage.speech_characters,
    )


def rollup_keys(usage: UsageRecord) -> tuple[int, int, str, str, str]:
    """(guild_id, user_id, feature, model, image_size) of the daily roll-up row a call adds to."""
    return (usage.guild_id or 0, usage.user_id or 0, usage.feature, usage.model, usage.image_size or "")


def spend_rows(usage: UsageRecord) -> list[tuple[str, int, float]]:
    """(scope, key, amount) for each daily budget a call counts against: its member's and its server's."""
    amount = budget_measure(usage)
    if amount <= 0:
        return []
    rows = []
    if usage.user_id is not None:
        rows.append(("user", usage.user_id, amount))
    if usage.guild_id is not None:
        rows.append(("guild", usage.guild_id, amount))
    return rows


# The roll-up's sums, in the order usage_sums reads them (both backends' reports select them).
ROLLUP_SUMS = (
    "SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(images), SUM(audio_seconds), SUM(speech_characters)"
)


def usage_sums(row: Any) -> dict[str, Any]:
    """The summed columns of a roll-up query (ROLLUP_SUMS), as UsageTotals takes them."""
    return {
        "requests": int(row[0]),
        "input_tokens": int(row[1]),
        "output_tokens": int(row[2]),
        "images": int(row[3]),
        "audio_seconds": float(row[4]),
        "speech_characters": int(row[5]),
    }
