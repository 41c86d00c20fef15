"""Python's garbage collector in a serving process, set for a server's load rather than a script's.

By default a young collection runs every 700 net allocations of container objects, which under load is
every request or two. Each one finds the objects of the requests in flight still alive and moves them
to an older generation, whose collections then walk every session's objects again: measured with 500
legacy sessions heartbeating, a fifth of the server's CPU went to the collector, and the more it fell
behind the more requests were in flight, so the more it collected (lag p99 0.5 to 3.3 s). With a young
generation of `YOUNG_THRESHOLD`, requests finish between collections and the collector costs about 1 %
(p99 33 to 97 ms). Cyclic garbage is still collected, a young collection's worth at a time: there, one
every few thousand requests, each a pause of about 30 ms, where Python's default made pauses of 100 ms
and more in its full collections.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # net container allocations between young collections (Python's default: 700)


def settle() -> None:
    """Call once the server is built, before it serves: what is loaded by then lives as long as the
    process and is frozen out of every collection; young collections run every `YOUNG_THRESHOLD`
    allocations, the older generations' thresholds as they were."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
