"""Tracking URIs: printed without secrets, and how long a failing store is worth retrying."""

from __future__ import annotations

import re

__all__ = ["redact_uri", "redact_text", "default_retry_seconds", "unreachable_reason", "NOT_A_VALID_URI"]

# What is wrong with a URI urllib cannot split. Never urllib's own message: it quotes the part it read as
# the port, which for a password holding an unencoded ``/`` or ``#`` is a piece of the password.
NOT_A_VALID_URI = "not a valid URI: its host or port cannot be read (a password holding / # @ or % must be " \
                  "percent-encoded)"

# ``scheme://user:password@`` anywhere in a text: the user stays, everything from the first ``:`` to the last
# ``@`` of the word goes. Matched as text, never parsed: a password with an unencoded ``/``, ``#``, ``@`` or
# ``%`` makes a URI unparsable, and a URI that urllib refuses (a bad port, an unclosed ``[``) is redacted too.
# (A word whose part between ``://`` and its last ``@`` has no ``:`` names a user only and stays as it is.)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s:@]*):(\S*)@")
# ``?token=...``, ``&password=...``, ``;api_key=...``: query values whose name says they are a secret.
_QUERY_SECRET = re.compile(
    r"(?i)([?&;][^\s=&;#?]*(?:pass|pwd|secret|token|key|auth|credential|signature|sig\b)[^\s=&;#?]*=)[^\s&;#]*")


def redact_uri(uri: str) -> str:
    """The URI with any password or secret query value replaced, for printing (``http://user:***@host``)."""
    return redact_text(uri)


def redact_text(text: str) -> str:
    """``text`` (a message, an error from MLflow) with the secrets of every URI in it replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}***", text)


def default_retry_seconds(tracking_uri: str) -> float:
    """How long a failing write is retried: a tracking server may be restarting or briefly unreachable
    (10 minutes); a local store that keeps failing (a full disk, a locked or read-only file) rarely
    recovers by itself, and the end of a sweep waits for its writes (30 s)."""
    scheme = tracking_uri.split("://", 1)[0].lower() if "://" in tracking_uri else ""
    local = scheme in ("sqlite", "file") or (not scheme and not tracking_uri.startswith("databricks"))
    return 30.0 if local else 600.0


# Ports of the stores a URI may name without one; other schemes (sqlite, file, databricks) are not probed.
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


def unreachable_reason(uri: str, timeout_s: float = 5.0) -> str | None:
    """Why the server a tracking URI names cannot be reached (one TCP connect, at most ``timeout_s``), or
    None when it answers or the store is local. MLflow itself retries an unreachable server for minutes."""
    import socket
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port  # raises ValueError: not a number, or out of range
    except ValueError:
        return NOT_A_VALID_URI
    default = _DEFAULT_PORTS.get(parts.scheme.split("+", 1)[0].lower())
    if default is None:
        return None
    if not parts.hostname:
        return "no host in the URI"
    try:
        socket.create_connection((parts.hostname, port or default), timeout=timeout_s).close()
    except OSError as exc:
        return f"{parts.hostname}:{port or default}: {exc.strerror or exc}"
    return None
