"""Shared rate limits: the algorithm behind :meth:`Store.rate_take
<tidal.stores.base.Store.rate_take>`, written once here for the stores that
run it in Python (memory, SQLite) and mirrored by the Redis store's
``scripts/rate_take.lua``.

A bucket's budget is ``limit`` units per ``period`` seconds, held as a token
bucket of capacity ``limit`` that refills continuously at ``limit / period``
units a second: a fresh (or long idle) bucket grants ``limit`` at once, then
``limit`` per period. So over any span of ``t`` seconds a bucket grants at
most ``limit * (1 + t / period)`` (the burst of one full bucket, and the
rate), and a caller taking as fast as it can gets exactly that. This is the
shape the model providers' own limits have, and a capacity of ``limit`` is
what lets one request of up to ``limit`` tokens through at all.

It is kept as GCRA (the generic cell rate algorithm): one number per bucket,
the *theoretical arrival time* ``tat``, the moment the bucket will be full
again. A take of ``amount`` moves it ``amount * period / limit`` later, and is
granted while the new ``tat`` stays within one ``period`` of now. Why GCRA
rather than a fixed or two-window count:

* it is exact: what it grants never exceeds the bound above, whatever the
  timing, where a two-window sliding count only estimates the previous
  window's share (it assumes those takes were spread evenly) and so admits
  more or less than ``limit`` per period depending on when they came, and a
  fixed window admits up to ``2 * limit`` across a window boundary;
* a refusal tells the exact wait (the new ``tat`` minus one period, minus
  now), so a caller sleeps once, not in a polling loop;
* amounts (tokens) cost the same as requests: one read, one write, O(1);
* the stored number tells when the bucket is full again, so a bucket left
  alone can be forgotten from then on (a Redis key expiry, a periodic purge)
  without changing any answer.
"""

from __future__ import annotations

import math


def check_rate(amount: float, limit: float, period: float) -> None:
    """Raise ValueError, naming the argument, for a take that makes no sense."""
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"rate limit must be a positive number of units per period, not {limit!r}")
    if not (math.isfinite(period) and period > 0):
        raise ValueError(f"rate period must be a positive number of seconds, not {period!r}")
    if not (math.isfinite(amount) and amount >= 0):
        raise ValueError(f"rate amount must be a number >= 0, not {amount!r}")
    if amount > limit:
        raise ValueError(
            f"rate amount {amount!r} is more than the bucket's limit of {limit!r} per period, so it could never "
            "be taken; split it, or raise the limit"
        )


def gcra(tat: float | None, now: float, amount: float, limit: float, period: float) -> tuple[float, float]:
    """One take: ``(new tat, 0.0)`` when granted, ``(tat, seconds to wait)``
    when refused. ``tat`` is the bucket's stored time (None for a bucket not
    stored: a full one); all times in seconds."""
    start = now if tat is None or tat < now else tat
    new = start + amount * (period / limit)
    wait = new - period - now
    if wait > 0:
        return start, wait
    return new, 0.0


PURGE_EVERY = 1024
"""Takes between two purges of full buckets, by the stores that purge (memory,
SQLite): a bucket whose ``tat`` has passed is full, the same as one never
stored, so forgetting it changes no answer and keeps the table as small as
the set of buckets in use."""
