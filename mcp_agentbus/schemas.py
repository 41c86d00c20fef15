"""Compact tool schemas for ``tools/list``: what a model needs to call a tool and read its result, in as
few tokens as it can be said (every connected agent pays for the tool list in its context).

Arguments keep their types, bounds, enums, defaults and descriptions, and lose what pydantic adds for
humans (titles) or that says nothing (``anyOf [T, null]`` with a null default is an optional T). Results
keep their top-level fields with types and descriptions; nested objects are described in the tool's
description or the text result, and are typed as objects here. The server still validates every
argument with the full model, so nothing is accepted that the full schema would refuse.
"""

from __future__ import annotations

from typing import Any

_DROPPED = ("title",)


def compact_input(schema: dict[str, Any]) -> dict[str, Any]:
    properties = {name: _optional(_strip(p)) for name, p in schema.get("properties", {}).items()}
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        out["required"] = schema["required"]
    if "$defs" in schema:
        out["$defs"] = {name: _strip(d) for name, d in schema["$defs"].items()}
    return out


def compact_output(schema: dict[str, Any]) -> dict[str, Any]:
    properties = {name: _shallow(p) for name, p in schema.get("properties", {}).items()}
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def _strip(node: Any) -> Any:
    """`node` without titles, recursively."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _DROPPED}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _optional(prop: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [T, {"type": "null"}], "default": null}`` as plain T: omitting it means null."""
    variants = prop.get("anyOf")
    if prop.get("default", 0) is None and isinstance(variants, list) and len(variants) == 2:
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) == 1:
            merged = {**rest[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
            return merged
    return prop


def _shallow(prop: dict[str, Any]) -> dict[str, Any]:
    """A result field as its JSON type(s) and description only."""
    out: dict[str, Any] = {}
    types = _types(prop)
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    if "description" in prop:
        out["description"] = prop["description"]
    return out


def _types(prop: dict[str, Any]) -> list[str]:
    if "$ref" in prop:
        return ["object"]
    if "anyOf" in prop:
        found: list[str] = []
        for variant in prop["anyOf"]:
            found += [t for t in _types(variant) if t not in found]
        return found
    if "enum" in prop:
        return ["string"]
    kind = prop.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [] if kind is None else [str(kind)]
