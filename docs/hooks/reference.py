"""MkDocs hook: the reference tables written from the code they document, at build time.

``<!-- spec: SECTION -->`` becomes the table of a spec section's keys (key, type, default, allowed values,
doc), read from the dataclasses of ``hpo_cls.spec.schema``; ``SECTION`` is ``top-level`` or a section key
(``data``, ``fixed``, ...). ``<!-- help: COMMAND -->`` becomes ``hpo-cls COMMAND --help``, from the argparse
parsers of ``hpo_cls.cli.args``. A page with such markers must cover every section (or every subcommand):
a key, section or command added to the code shows up in the docs, or the build fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import html
import re
import types
import typing
from pathlib import Path

from mkdocs.exceptions import PluginError

from hpo_cls.cli.args import command_parsers
from hpo_cls.spec.schema import SweepSpec

_MARKER = re.compile(r"^<!-- (spec|help): ([\w-]+) -->$", re.MULTILINE)
_HELP_WIDTH = 100


def on_page_markdown(markdown: str, page, config, files) -> str:
    found = {"spec": set(), "help": set()}

    def expand(match: re.Match) -> str:
        kind, name = match.groups()
        found[kind].add(name)
        return _spec_table(name) if kind == "spec" else _help_block(name)

    markdown = _MARKER.sub(expand, markdown)
    for kind, expected in (("spec", set(_sections())), ("help", set(command_parsers()))):
        if found[kind] and found[kind] != expected:
            raise PluginError(f"{page.file.src_uri}: {kind} markers missing for {sorted(expected - found[kind])}")
    return markdown


# --- the spec ---------------------------------------------------------------------------------------------

def _sections() -> dict[str, type]:
    """``top-level`` -> SweepSpec, and every section key -> its dataclass."""
    hints = typing.get_type_hints(SweepSpec)
    sections = {"top-level": SweepSpec}
    sections.update({f.name: hints[f.name] for f in _yaml_fields(SweepSpec) if dataclasses.is_dataclass(hints[f.name])})
    return sections


def _yaml_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _spec_table(section: str) -> str:
    sections = _sections()
    if section not in sections:
        raise PluginError(f"<!-- spec: {section} -->: no such section (known: {', '.join(sections)})")
    cls = sections[section]
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    for f in _yaml_fields(cls):
        doc = f.metadata.get("doc")
        if not doc:
            raise PluginError(f"{cls.__name__}.{f.name}: no doc (give the field doc=... in spec/schema.py)")
        key = f.name if section in ("top-level", "fixed") else f"{section}.{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            type_cell, default = f"section, [below](#{f.name})", "see below"
        else:
            type_cell, default = _type_name(tp), _default(f)
        rows.append(f"| `{key}` | {type_cell} | {default} | {_allowed(f.metadata)} | {_cell(html.escape(doc, quote=False))} |")
    return "\n".join(rows)


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        return _type_name(next(a for a in args if a is not type(None))) + " or unset"
    if origin is tuple:
        item = args[0]
        return "list of mappings" if dataclasses.is_dataclass(item) else f"list of {_type_name(item)}"
    return {bool: "bool", int: "int", float: "number", str: "string", Path: "path"}.get(tp, getattr(tp, "__name__", str(tp)))


def _default(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING:
        return "required"
    return _cell(f"`{_yaml(f.default)}`" if f.default is not None else "unset")


def _yaml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _allowed(meta) -> str:
    parts = []
    if meta.get("choices"):
        parts.append(" \\| ".join(f"`{c}`" for c in meta["choices"]))
    for key, word in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if meta.get(key) is not None:
            parts.append(f"{word} {_number(meta[key])}")
    if meta.get("length"):
        parts.append(f"{meta['length']} values")
    return ", ".join(parts)


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# --- the command line -------------------------------------------------------------------------------------

def _help_block(command: str) -> str:
    parsers = command_parsers()
    if command not in parsers:
        raise PluginError(f"<!-- help: {command} -->: no such subcommand (known: {', '.join(parsers)})")
    parser = parsers[command]
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=_HELP_WIDTH)
    return f"```text\n{parser.format_help().rstrip()}\n```"
