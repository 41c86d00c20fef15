"""Compact tool schemas for ``tools/list``: what a model needs to call a tool well, in as few tokens
as it can be said (every connected agent pays for the tool list in its context; bench/tools_size.py
measures it against its budget).

Arguments keep their types, enums, numeric bounds, item counts, meaningful defaults, ``required`` and
descriptions. They lose what pydantic adds for humans (titles), what says nothing (``anyOf [T, null]``
with a null default is an optional T; a default of null, "", 0, false or [] is what omitting it
means), and the format details the server checks anyway: regex patterns and string lengths. The
server validates every argument with the full model, so nothing is accepted that the full schema
would refuse, and a bad value gets an ``invalid_argument`` error that names the field and its format.
Nested models are inlined (no ``$defs``/``$ref``).

A description may name the server's wait cap as WAIT_CAP: each server's listing says its own
(settings ``max_wait_seconds``), so an agent knows it before it waits.

Tool annotations keep the hints that differ from MCP's defaults.

Results are published as a bare object: the SDK client validates every structured result against
the listed output schema, which any result passes, and a model reads the result itself (the
structured content, or the text's parts of it, replies.py). The tool descriptions say what comes
back where a caller needs it; the result shapes are models.py's, documented in the README.
"""

from __future__ import annotations

from typing import Any

from mcp.types import ToolAnnotations

WAIT_CAP = "<wait cap>"  # in a description: the server's cap on wait_seconds, e.g. "25 s"
_DROPPED = frozenset({"title", "pattern", "minLength", "maxLength"})
_EMPTY_DEFAULTS: tuple[Any, ...] = (None, "", 0, [], {})  # False == 0, so false is among them


def compact_input(schema: dict[str, Any], wait_cap: float) -> dict[str, Any]:
    defs: dict[str, Any] = schema.get("$defs", {})
    cap = f"{wait_cap:g} s"
    properties = {name: _argument(p, defs, cap) for name, p in schema.get("properties", {}).items()}
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def compact_output(schema: dict[str, Any]) -> dict[str, Any]:
    """Every result is an object; its fields are not listed (see the module's docstring)."""
    del schema
    return {"type": "object"}


def compact_annotations(annotations: ToolAnnotations | None) -> ToolAnnotations | None:
    """The hints that differ from the MCP defaults (read-only false, destructive true, idempotent
    false, open-world true): an omitted hint means its default. A read-only tool's destructive and
    idempotent hints mean nothing (MCP), so they go too."""
    if annotations is None:
        return None
    read_only = annotations.read_only_hint is True
    return annotations.model_copy(
        update={
            "read_only_hint": True if read_only else None,
            "destructive_hint": None if read_only or annotations.destructive_hint is not False else False,
            "idempotent_hint": None if read_only or annotations.idempotent_hint is not True else True,
            "open_world_hint": False if annotations.open_world_hint is False else None,
        }
    )


def _argument(prop: dict[str, Any], defs: dict[str, Any], cap: str) -> dict[str, Any]:
    """One argument (or a field of a nested argument), compacted; `cap` fills in WAIT_CAP."""
    out = _optional(_strip(prop, defs))
    if "default" in out and out["default"] is not True and out["default"] in _EMPTY_DEFAULTS:
        del out["default"]
    if isinstance(out.get("description"), str):
        out["description"] = out["description"].replace(WAIT_CAP, cap)
    nested = out.get("properties")
    if isinstance(nested, dict):
        out.pop("description", None)  # a model's docstring: the argument's own description says it
        out["properties"] = {name: _argument(p, defs, cap) for name, p in nested.items()}
    items = out.get("items")
    if isinstance(items, dict):
        out["items"] = _argument(items, defs, cap)
    return out


def _strip(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with ``$ref`` inlined and without titles, patterns and string lengths, recursively."""
    if isinstance(node, list):
        return [_strip(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _strip({**defs[ref.removeprefix("#/$defs/")], **siblings}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):  # names, not keywords: keep every one
            out[key] = {name: _strip(p, defs) for name, p in value.items()}
        elif key not in _DROPPED:
            out[key] = _strip(value, defs)
    return out


def _optional(prop: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [T, {"type": "null"}], "default": null}`` as plain T: omitting it means null."""
    variants = prop.get("anyOf")
    if prop.get("default", 0) is None and isinstance(variants, list) and len(variants) == 2:
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) == 1:
            return {**rest[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
    return prop
