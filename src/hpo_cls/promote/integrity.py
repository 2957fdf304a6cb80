"""A registered model is code: its SHA-256 checksums are recorded when it is registered and checked before
``hpo-cls predict`` loads it, so a model folder changed in the store is refused, not run.

The checksums live in a tag of the model *version* (the registry's database), not beside the files they
protect: whoever can rewrite the artifacts cannot also rewrite the record without registry access.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable

from hpo_cls.errors import CheckpointError

__all__ = ["CHECKSUM_TAG", "model_checksums", "registered_checksums", "verify_model_files"]

CHECKSUM_TAG = "hpo_cls.sha256"
# Written by MLflow into every download of a ``models:/`` URI (the name and version it came as): data, not
# code, and different per download, so it cannot be checksummed.
_UNCHECKED = {"registered_model_meta"}
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def model_checksums(model_dir: str | Path) -> dict[str, str]:
    """``relative path -> SHA-256`` of every file of a model folder (MLmodel, code, member bundles)."""
    root = Path(model_dir)
    return {path.relative_to(root).as_posix(): _sha256(path) for path in sorted(root.rglob("*"))
            if path.is_file() and path.relative_to(root).as_posix() not in _UNCHECKED}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registered_checksums(model_uri: str, client) -> dict[str, str] | None:
    """The checksums recorded for a ``models:/name@alias`` or ``models:/name/<version>`` URI; None when the
    version has none (registered before they were recorded) or the URI names no registered version."""
    match = _REGISTERED.match(model_uri)
    if match is None:
        return None
    if match["alias"]:
        version = client.get_model_version_by_alias(match["name"], match["alias"])
    else:
        version = client.get_model_version(match["name"], match["version"])
    recorded = (version.tags or {}).get(CHECKSUM_TAG)
    return json.loads(recorded) if recorded else None


def verify_model_files(model_uri: str, model_dir: str | Path, expected: dict[str, str] | None,
                       warn: Callable[[str], None]) -> None:
    """Raise CheckpointError naming the first file of ``model_dir`` whose checksum differs from (or that is
    missing against) ``expected``; without ``expected``, warn that nothing could be checked."""
    if expected is None:
        warn(f"{model_uri} has no recorded checksums (registered by an older hpo-cls, or not a registered "
             "version); loading it unverified: load models only from stores you trust")
        return
    root = Path(model_dir)
    for relative, digest in sorted(expected.items()):
        path = root / relative
        if not path.is_file():
            raise CheckpointError(f"{model_uri}: {relative} is missing from the model; it was changed after "
                                  "registration, refusing to load it")
        if _sha256(path) != digest:
            raise CheckpointError(f"{model_uri}: {relative} differs from the file registered (SHA-256 mismatch); "
                                  "the model was changed after registration, refusing to load it")
