"""The 2026-07-28 era's answers over HTTP, written as UTF-8 JSON.

The SDK (2.3) writes that era's JSON bodies and SSE events with ``json.dumps``' default, which escapes
every character past ASCII (``\\u4e2d``: 6 bytes for a 3-byte character, 12 for an emoji). A reply the
bus keeps within `MAX_REPLY_BYTES` of UTF-8 could then pass, three times over, the 1 MiB an SSE client
reads in one event: a waiting `read_inbox` of messages in Chinese, or of emoji, answered with an error
after it marked them read. The legacy era's answers are UTF-8 already (pydantic writes them).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from mcp.server import _streamable_http_modern as modern


def _dumps(value: Any, **options: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, **options)
    if text.isascii():  # most answers; CPython knows it without a scan
        return text
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate (no UTF-8 carries it): escaped, as the SDK would
        return json.dumps(value, **options)
    return text


def write_utf8() -> None:
    """Make the SDK's 2026-07-28 HTTP answers UTF-8 JSON (once per process; again is harmless)."""
    modern.json = SimpleNamespace(dumps=_dumps, loads=json.loads)  # type: ignore[assignment,attr-defined]
