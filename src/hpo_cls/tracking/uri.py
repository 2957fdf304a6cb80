"""Tracking URIs: printed without secrets, and how long a failing store is worth retrying."""

from __future__ import annotations

import re

__all__ = ["redact_uri", "redact_text", "default_retry_seconds"]

# ``scheme://user:password@`` anywhere in a text: the user stays, the password goes. Matched as text, not
# parsed, so a URI that urllib refuses (a bad port, an unclosed ``[``) is redacted too, never raises.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#@:]*):([^\s/?#]*)@")
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
