"""Parameter counts of the networks a spec can build, kept per machine: a sweep's pre-flight checks
``max_params`` without importing torch (2-4 s of CPU on its driver, while the first trials' workers start) for
every network counted before. Torch-free.

A count is keyed by the network's architecture fields, its number of classes and a fingerprint of what
builds it (torch and torchvision versions, the source of ``hpo_cls.models``): any change there counts anew.
Best effort: an unreadable or unwritable file only means counting again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from hpo_cls.cache_dir import default_cache_root
from hpo_cls.package_versions import installed_version

__all__ = ["known_parameter_count", "remember_parameter_count", "COUNTS_FILE"]

COUNTS_FILE = "parameter-counts.json"


def known_parameter_count(architecture: tuple, num_classes: int, root: Path | None = None) -> int | None:
    """The count remembered for this network on this machine, or None."""
    count = _read(_path(root)).get(_key(architecture, num_classes))
    return count if isinstance(count, int) else None


def remember_parameter_count(architecture: tuple, num_classes: int, count: int, root: Path | None = None) -> None:
    path = _path(root)
    counts = _read(path)
    counts[_key(architecture, num_classes)] = int(count)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(counts, sort_keys=True))
        os.replace(tmp, path)  # concurrent sweeps: the last writer wins, a lost entry is counted again
    except OSError:
        tmp.unlink(missing_ok=True)


def _path(root: Path | None) -> Path:
    return Path(root or default_cache_root()).expanduser() / COUNTS_FILE


def _read(path: Path) -> dict:
    try:
        counts = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return counts if isinstance(counts, dict) else {}


def _key(architecture: tuple, num_classes: int) -> str:
    return json.dumps([_fingerprint(), num_classes, list(architecture)])


@functools.cache
def _fingerprint() -> str:
    digest = hashlib.sha1()
    for package in ("torch", "torchvision"):
        digest.update(f"{package}={installed_version(package)};".encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]
