"""The package's public surface and its shipped Lua scripts."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from mcp_agentbus.redis import replies
from mcp_agentbus.redis.connection import close, connect
from mcp_agentbus.redis.keys import LAYOUT, Keys
from mcp_agentbus.redis.scripts import BOUNDS, SCRIPT_NAMES, Script, keys_lua, lua_key_name, source
from mcp_agentbus.redis.store import _REFUSALS, common_argv
from mcp_agentbus.settings import Settings


def test_the_script_names_are_the_lua_files() -> None:
    files = resources.files("mcp_agentbus.redis") / "lua"
    on_disk = {p.name.removesuffix(".lua") for p in files.iterdir() if p.name.endswith(".lua")}
    assert set(SCRIPT_NAMES) == on_disk


def test_every_script_has_one_typed_reader() -> None:
    defined = [v for v in vars(replies).values() if isinstance(v, Script)]
    assert sorted(s.name for s in defined) == sorted(SCRIPT_NAMES)


def test_every_script_has_a_contract_header_and_resolved_includes() -> None:
    for name in SCRIPT_NAMES:
        text = source(name)
        header = text.split("\n", 6)
        assert header[0].startswith(f"-- {name}:"), name
        assert "-- KEYS:" in text and "-- ARGV:" in text and "-- returns:" in text, name
        assert "--@include" not in text, name


@pytest.mark.anyio
async def test_a_script_reads_each_bound_and_the_owner_from_its_argv(settings: Settings) -> None:
    """keys.lua splits ARGV[1] into the bounds, in BOUNDS order, and the owner after them."""
    distinct = settings.model_copy(update={name: 1_000 + i for i, name in enumerate(BOUNDS)})
    lua = keys_lua() + "\nreturn {" + ", ".join(name.upper() for name in BOUNDS) + ", OWNER, RETENTION_MS}"
    redis = connect(settings.redis_url)
    try:
        for owner in ("token:ops-1", "token:a,b", ""):  # an owner is all that follows the bounds
            argv = common_argv(distinct, owner)
            reply = await redis.eval(lua, 1, *Keys(settings.namespace).script_keys, *argv, "")
            assert reply == [*range(1_000, 1_000 + len(BOUNDS)), owner, distinct.retention_seconds * 1000]
    finally:
        await close(redis)


def test_the_lua_knows_every_refusal_the_store_maps_to_an_error() -> None:
    lua = (resources.files("mcp_agentbus.redis") / "lua" / "include" / "notices.lua").read_text()
    refused = re.search(r"local REFUSED = \{(.*?)\}", lua, re.S)
    assert refused is not None
    assert set(re.findall(r"(\w+) = true", refused.group(1))) == set(_REFUSALS)


def test_scripts_build_no_key_of_their_own() -> None:
    """Keys come only from the KEYS layout (families + id); no script spells a key prefix."""
    for name in SCRIPT_NAMES:
        assert not re.search(r"['\"]ab:", source(name)), name


def test_every_key_of_a_namespace_shares_one_hash_tag() -> None:
    keys = Keys("proj-1")
    for key in [
        *keys.script_keys,
        *(keys.prefix + name for name in LAYOUT),
        keys.task("t-1"),
        keys.agent("a"),
        keys.workflow("wf-1"),
    ]:
        assert key.startswith("ab:{proj-1}:"), key


def test_namespace_is_validated() -> None:
    for bad in ["", "a b", "{x}", "a:b", "x" * 65]:
        try:
            Keys(bad)
        except ValueError:
            continue
        raise AssertionError(f"namespace {bad!r} was accepted")


def test_every_key_a_script_names_is_generated_from_the_layout() -> None:
    """keys.lua is written from keys.LAYOUT, not by hand: a K_* name a script uses that the layout lacks
    would be a nil key at run time."""
    generated = keys_lua()
    made = set(re.findall(r"^local (K_\w+) = KEYS\[1\] \.\. '([^']+)'$", generated, re.M))
    assert made == {(lua_key_name(name), name) for name in LAYOUT}
    for name in SCRIPT_NAMES:
        used = set(re.findall(r"\bK_[A-Z_]+\b", source(name)))
        assert used <= {n for n, _ in made}, (name, used - {n for n, _ in made})
    for bound in BOUNDS:
        assert f"local {bound.upper()} = tonumber(BOUNDS[" in generated
    assert not (resources.files("mcp_agentbus.redis") / "lua" / "include" / "keys.lua").is_file()


def _code_names(text: str) -> list[str]:
    """Every name the script's code mentions, as often as it does (whole-line comments left out)."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return re.findall(r"[A-Za-z_]\w*", code)


def test_a_script_carries_only_the_helpers_keys_and_bounds_it_uses() -> None:
    """Redis runs a script's whole text on every call, so each helper, key and bound in it costs time:
    every one a script defines is used by it."""
    for name in SCRIPT_NAMES:
        text = source(name)
        mentions = _code_names(text)
        helpers = re.findall(r"^local function (\w+)\(", text, re.M)
        keys = re.findall(r"^local (K_\w+) = KEYS\[1\]", text, re.M)
        bounds = [b.upper() for b in BOUNDS if re.search(rf"^local {b.upper()} = ", text, re.M)]
        for defined in [*helpers, *keys, *bounds]:
            assert mentions.count(defined) > 1, (name, defined)
        assert "main" in helpers and "with_notices" in helpers, name


def test_a_helper_only_another_helper_calls_is_kept_with_it() -> None:
    """read_state calls no inbox helper itself, but the notices it returns read the newest message's
    fields (fields_of, inbox.lua); it tells no agent of a loss (tell_lost) and locks nothing."""
    text = source("read_state")
    helpers = set(re.findall(r"^local function (\w+)\(", text, re.M))
    assert {"notices", "fields_of", "renew_presence", "now_ms"} <= helpers
    assert not helpers & {"tell_lost", "emit", "inbox_bytes", "leave"}
    assert "local K_INBOX = " in text and "local K_EVENTS = " not in text
    assert "local EVENT_RETENTION = " not in text and "local RETENTION_MS = " in text
