"""URLs as they may be shown: never with a password or a secret query in them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """A URL with its password (and any secret user:password pair) replaced by ***, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def url_host(url: str) -> str:
    """The host (and port, if given) of a URL, without any user:password in it: safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: leave it out rather than fail while logging
        port = None
    return f"{host}:{port}" if port is not None else host


def public_url(url: str) -> str:
    """A URL without its user:password and query (either may hold a secret): safe to print."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, url_host(url), parts.path, "", ""))


def database_kind(database_url: str) -> str:
    """What DATABASE_URL names, for the log: SQLite and its file, or a server's kind, host and database."""
    if database_url.startswith("sqlite:///"):
        return f"SQLite {database_url.removeprefix('sqlite:///')}"
    scheme = urlsplit(database_url).scheme
    kind = "PostgreSQL" if scheme in ("postgres", "postgresql") else scheme or "unknown"
    return f"{kind} {url_host(database_url)}{urlsplit(database_url).path}"
