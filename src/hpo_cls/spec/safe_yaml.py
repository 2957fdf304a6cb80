"""YAML as a spec may hold it: UTF-8 text, bounded in what its aliases expand to.

PyYAML's constructor shares one object per anchor, so a 646-byte "billion laughs" file loads in
microseconds, and only later code that walks or copies the values expands it (10**10 strings). The node
graph is therefore measured, expanded, before anything is built from it: linear in the number of distinct
nodes, whatever the aliases multiply them to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpo_cls.errors import SpecError

__all__ = ["MAX_YAML_VALUES", "MAX_SPEC_BYTES", "read_text", "load_yaml"]

# A spec holds hundreds of values; a thousand times that is no spec.
MAX_YAML_VALUES = 100_000
# A spec is a few kB; read no more than this (``/dev/zero``, a log named by mistake, never ends or fills memory).
MAX_SPEC_BYTES = 1 << 20


class _Refused(Exception):
    pass


def read_text(path: Path) -> str:
    """The file's text; SpecError naming it when it is missing, unreadable, over :data:`MAX_SPEC_BYTES` or not
    UTF-8 text."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([f"{path}: over {MAX_SPEC_BYTES >> 20} MiB; a spec is a few kB of YAML text"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError([f"{path}: not a UTF-8 text file (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                         "a spec is YAML text"]) from None


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``, refusing aliases that expand past :data:`MAX_YAML_VALUES` values or refer
    to themselves; every problem a SpecError with one line starting with ``where``."""
    try:
        return _bounded_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{where}: invalid YAML: {at}{problem}"]) from None
    except _Refused as exc:
        raise SpecError([f"{where}: {exc}"]) from None
    except RecursionError:
        raise SpecError([f"{where}: invalid YAML: nested too deeply"]) from None


def _bounded_load(text: str) -> Any:
    loader = yaml.SafeLoader(text)  # its reader already refuses control characters
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    """A key written twice in one mapping: PyYAML keeps the later value silently; refused, as most config
    loaders do, naming the key and both lines. (Keys merged in with ``<<`` may be overridden, as YAML says.)"""
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                raise _Refused(f"line {key.start_mark.line + 1}: key {key.value[:80]!r} is already set on line "
                               f"{seen[key.value]}; remove one of them")
            seen[key.value] = key.start_mark.line + 1


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` stands for once every alias is written out (memoised per node)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise _Refused("a YAML alias refers to the value that contains it; write the value out")
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        _refuse_duplicate_keys(node)
        children = [item for pair in node.value for item in pair]
    else:
        children = []
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if size > MAX_YAML_VALUES:
        raise _Refused(f"YAML aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?); "
                       "write the values out")
    sizes[key] = size
    return size
