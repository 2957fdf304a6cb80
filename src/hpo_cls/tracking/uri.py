"""Tracking URIs: printed without secrets, and how long a failing store is worth retrying."""

from __future__ import annotations

import urllib.parse

__all__ = ["redact_uri", "default_retry_seconds"]


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, for printing (``http://user:***@host``)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.password:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def default_retry_seconds(tracking_uri: str) -> float:
    """How long a failing write is retried: a tracking server may be restarting or briefly unreachable
    (10 minutes); a local store that keeps failing (a full disk, a locked or read-only file) rarely
    recovers by itself, and the end of a sweep waits for its writes (30 s)."""
    scheme = tracking_uri.split("://", 1)[0].lower() if "://" in tracking_uri else ""
    local = scheme in ("sqlite", "file") or (not scheme and not tracking_uri.startswith("databricks"))
    return 30.0 if local else 600.0
