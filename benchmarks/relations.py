"""Relations: insert throughput, and the lag of a relation trigger.

* insert: ``app.insert(rec)`` once per record (one transaction each), and
  ``app.insert_many`` of batches of 100 and of 1,000 records (one transaction
  per batch), into a relation without a trigger, and into one that an
  ``@C.update(on=..., instance="global")`` watches, whose inserts also write
  one outbox row per record in the same transaction. Records are built before
  the clock starts. With the trigger, the app's dispatcher and executor run
  while the records are inserted, as in an app (queueing and applying one
  update op per record, which increments a counter); after each timed loop
  ``flush_update`` waits for them, and the counter must equal the number of
  records inserted. Also reported: batches of 1,000 with the trigger, end to
  end (the clock stops when every triggered update is applied).
* trigger lag: records inserted one at a time at a fixed rate (a timer loop
  that sleeps until each record's slot) for a few seconds. The update op
  notes ``time.perf_counter()`` the first time it sees each record id (in a
  dict outside the state; the state keeps only a count and two sums of the
  records' sequence numbers). Lag = that time minus the time ``app.insert``
  returned; p50 and p99, and the insert rate achieved. Every inserted record
  must be applied exactly once (every id seen, op called once per record,
  count and sums in the committed state exact), or the run fails.

Floors: for inserts, plain ``sqlite3`` executing INSERTs of the same rows
(prepared before the clock starts) into tables made with the DDL Tidal uses,
in a file in the same folder, with the pragmas Tidal's database sets (WAL,
synchronous=NORMAL): one transaction per record or per batch; with the
trigger, each record's outbox row in the same transaction. (On ``memory://``
the relations live in an in-memory SQLite database; the floor is still the
file.) For the lag: the same timer loop handing ``(id, time)`` to a consumer
thread through ``queue.Queue``, i.e. how late a waiting thread wakes up on
this machine.

The apps have the runs log on (the App default), so each triggered update is
also written to ``runs``; what that costs is measured by ``runs_log``.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

import tidal

from .common import (
    Config,
    Metric,
    bench_app,
    check,
    median,
    ms,
    percentile,
    raw_sqlite,
    scratch_dir,
    sqlite_path,
)

NAME = "relations"
TITLE = "relations: insert throughput and relation-trigger lag"

RATES = (200, 1_000)
"""Insert rates (records/s) of the trigger-lag trials."""

BATCHES = (100, 1_000)

_RAW_NOTE = "floor: raw sqlite3 INSERTs of the same rows into a file (also for memory://, whose db is in memory)"
_TRIG_NOTE = "with a trigger: an outbox row per record; the dispatcher and executor apply the ops meanwhile"

METRICS = [
    Metric("one", "insert, 1 record per call", "records/s", higher_is_better=True, note=_RAW_NOTE),
    Metric("b100", "insert_many, batches of 100", "records/s", higher_is_better=True, note=_RAW_NOTE),
    Metric("b1000", "insert_many, batches of 1,000", "records/s", higher_is_better=True, note=_RAW_NOTE),
    Metric("one_trig", "trigger: insert, 1 record per call", "records/s", higher_is_better=True, note=_TRIG_NOTE),
    Metric("b100_trig", "trigger: insert_many, batches of 100", "records/s", higher_is_better=True, note=_TRIG_NOTE),
    Metric("b1000_trig", "trigger: insert_many, batches of 1,000", "records/s", higher_is_better=True, note=_TRIG_NOTE),
    Metric(
        "e2e_trig",
        "trigger: batches of 1,000 + flush_update (all applied)",
        "records/s",
        higher_is_better=True,
        note="the clock stops when every triggered update op is committed",
    ),
]
for _rate in RATES:
    METRICS += [
        Metric(f"lag{_rate}_p50", f"trigger lag at {_rate:,}/s, p50", "ms", note="applied - insert returned"),
        Metric(f"lag{_rate}_p99", f"trigger lag at {_rate:,}/s, p99", "ms"),
        Metric(
            f"lag{_rate}_rate",
            f"trigger lag at {_rate:,}/s: insert rate achieved",
            "records/s",
            higher_is_better=True,
            note="below the target rate: the inserting thread could not keep up",
        ),
    ]


class Doc(tidal.Record):
    """A relation without a trigger."""

    title: str
    body: str


class TriggeredDoc(tidal.Record):
    """The same fields, in a relation that a trigger watches."""

    title: str
    body: str


class Event(tidal.Record):
    """The records of the lag trials."""

    seq: int
    title: str


BODY = "a short document body of about a hundred characters, as a title and a paragraph would be."


def _sizes(cfg: Config) -> tuple[int, int, int, float]:
    """(trials, records inserted one by one, records per batch size, seconds per lag trial)."""
    return cfg.pick(3, 1), cfg.pick(3_000, 100), cfg.pick(5_000, 1_000), 3.0 if not cfg.quick else 0.3


def _docs(cls: type[tidal.Record], n: int, start: int = 0) -> list[Any]:
    return [cls(title=f"doc {i}", body=BODY) for i in range(start, start + n)]


def _rate(n: int, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


# -- floor: raw sqlite3 -------------------------------------------------------


def _ddl() -> list[str]:
    """The DDL Tidal's database uses for the ``doc`` table and the outbox."""
    with bench_app("sqlite", runs_log=False) as app:
        app.db.register(Doc)
        conn = raw_sqlite(sqlite_path(app))
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN ('doc', 'tidal_changes') AND sql IS NOT NULL"
        ).fetchall()
        conn.close()
    check(len(rows) == 2, f"expected the doc and outbox tables, found {len(rows)} statements")
    return [sql for (sql,) in rows]


def _raw_rows(n: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``n`` doc rows and their outbox rows, as Tidal would write them."""
    stamp = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    docs, changes = [], []
    for i in range(n):
        record_id = uuid.uuid4().hex
        title = f"doc {i}"
        docs.append((record_id, stamp, stamp, title, BODY))
        record = {"id": record_id, "created_at": stamp, "updated_at": stamp, "title": title, "body": BODY}
        payload = orjson.dumps({"record": record, "old": None}).decode()
        changes.append((uuid.uuid4().hex, "doc", "insert", record_id, payload, time.time()))
    return docs, changes


_INSERT_DOC = "INSERT INTO doc (id, created_at, updated_at, title, body) VALUES (?, ?, ?, ?, ?)"
_INSERT_CHANGE = (
    "INSERT INTO tidal_changes (token, relation, event, record_id, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)


def _raw_insert(conn: Any, docs: list[Any], changes: list[Any] | None, size: int) -> float:
    """Rows per second of ``docs`` (and their outbox rows ``changes``)
    inserted ``size`` per transaction through plain sqlite3."""
    t0 = time.perf_counter()
    for start in range(0, len(docs), size):
        conn.execute("BEGIN")
        if size == 1:
            conn.execute(_INSERT_DOC, docs[start])
            if changes is not None:
                conn.execute(_INSERT_CHANGE, changes[start])
        else:
            conn.executemany(_INSERT_DOC, docs[start : start + size])
            if changes is not None:
                conn.executemany(_INSERT_CHANGE, changes[start : start + size])
        conn.execute("COMMIT")
    return len(docs) / (time.perf_counter() - t0)


def _raw_trial(ddl: list[str], n_one: int, n_batch: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for outbox in (False, True):
        suffix = "_trig" if outbox else ""
        with scratch_dir() as folder:
            conn = raw_sqlite(folder / "raw.db")
            conn.execute("PRAGMA wal_autocheckpoint=1000")  # SQLite's default, as on Tidal's db connections
            for sql in ddl:
                conn.execute(sql)
            for size, n, key in ((1, n_one, "one"), *((b, n_batch, f"b{b}") for b in BATCHES)):
                docs, changes = _raw_rows(n)
                out[key + suffix] = _raw_insert(conn, docs, changes if outbox else None, size)
            count = conn.execute("SELECT count(*) FROM doc").fetchone()[0]
            check(count == n_one + len(BATCHES) * n_batch, f"raw floor stored {count} rows")
            if outbox:
                changed = conn.execute("SELECT count(*) FROM tidal_changes").fetchone()[0]
                check(changed == count, f"raw floor stored {changed} outbox rows for {count} records")
            conn.close()
    out["e2e_trig"] = out["b1000_trig"]
    return out


def _paced(rate: int, n: int, insert: Callable[[int], object]) -> float:
    """Call ``insert(i)`` for ``i`` in ``range(n)``, call ``i`` not before
    ``i / rate`` seconds after the first (sleeping until then); returns the
    rate achieved."""
    clock, sleep = time.perf_counter, time.sleep
    t0 = clock()
    for i in range(n):
        delay = t0 + i / rate - clock()
        if delay > 0:
            sleep(delay)
        insert(i)
    return n / (clock() - t0)


def _lag_summary(rate: int, lags: Sequence[float], achieved: float) -> dict[str, float]:
    return {
        f"lag{rate}_p50": ms(median(lags)),
        f"lag{rate}_p99": ms(percentile(lags, 99)),
        f"lag{rate}_rate": achieved,
    }


def _queue_lag(rate: int, seconds: float) -> dict[str, float]:
    """The lag floor: a thread handoff through queue.Queue at ``rate``."""
    n = int(rate * seconds)
    q: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    got: dict[int, int] = {}

    def consume() -> None:
        while (item := q.get()) is not None:
            got[item[0]] = time.perf_counter_ns()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    sent: dict[int, int] = {}

    def send(i: int) -> None:
        q.put((i, 0))
        sent[i] = time.perf_counter_ns()

    achieved = _paced(rate, n, send)
    q.put(None)
    consumer.join(10)
    check(set(got) == set(sent), "queue floor lost items")
    # An item can be taken before the producer notes its time: lag 0 then.
    return _lag_summary(rate, [max(0, got[i] - sent[i]) for i in sent], achieved)


def baseline(cfg: Config) -> dict[str, float]:
    trials, n_one, n_batch, seconds = _sizes(cfg)
    ddl = _ddl()
    per_trial = [_raw_trial(ddl, n_one, n_batch) for _ in range(trials)]
    out = {key: median([t[key] for t in per_trial]) for key in per_trial[0]}
    for rate in RATES:
        out.update(_queue_lag(rate, seconds))
    return out


# -- through Tidal ------------------------------------------------------------


def _counter(app: tidal.App) -> tidal.Instance:
    """A component counting TriggeredDoc inserts on instance "global"."""
    C = app.component("Count")

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.update(on=TriggeredDoc, instance="global")
    def on_doc(state: Any, props: Any) -> dict[str, int]:
        return {"n": state["n"] + 1}

    return C("global")


def _insert_trial(store: str, n_one: int, n_batch: int, triggered: bool) -> dict[str, float]:
    cls: type[tidal.Record] = TriggeredDoc if triggered else Doc
    suffix = "_trig" if triggered else ""
    out: dict[str, float] = {}
    with bench_app(store) as app:
        inst = _counter(app) if triggered else None
        inserted = 0

        def settle(what: str) -> None:
            """Wait for the triggered updates; check each record was counted once."""
            if inst is None:
                return
            inst.flush_update()
            n = inst.read_state("n")
            check(n == inserted, f"{what} on {store}: trigger counted {n} of {inserted} inserts")

        app.insert_many(_docs(cls, 10, start=-10))  # warmup: tables made, executor started
        inserted += 10
        settle("warmup")
        docs = _docs(cls, n_one)

        def one() -> None:
            for doc in docs:
                app.insert(doc)

        out["one" + suffix] = _rate(n_one, one)
        inserted += n_one
        settle("single inserts")
        for size in BATCHES:
            docs = _docs(cls, n_batch)

            def batches(docs: list[Any] = docs, size: int = size) -> None:
                for start in range(0, len(docs), size):
                    app.insert_many(docs[start : start + size])

            if triggered and size == BATCHES[-1]:
                t0 = time.perf_counter()
                batches()
                t1 = time.perf_counter()
                inserted += n_batch
                settle(f"batches of {size}")
                t2 = time.perf_counter()
                out[f"b{size}{suffix}"] = n_batch / (t1 - t0)
                out["e2e_trig"] = n_batch / (t2 - t0)
            else:
                out[f"b{size}{suffix}"] = _rate(n_batch, batches)
                inserted += n_batch
                settle(f"batches of {size}")
        stored = app.sql(f'SELECT count(*) FROM "{cls.relation()}"').scalar()
        check(stored == inserted, f"{stored} records stored after inserting {inserted} on {store}")
        if inst is not None:
            inst.close()
    return out


def _lag_trial(store: str, rate: int, seconds: float) -> dict[str, float]:
    n = int(rate * seconds)
    clock = time.perf_counter_ns
    first_seen: dict[str, int] = {}
    calls: dict[str, int] = {}
    with bench_app(store) as app:
        C = app.component("Lag")

        @C.init_state
        def setup() -> dict[str, int]:
            return {"n": 0, "sum": 0, "sumsq": 0}

        @C.update(on=Event, instance="global")
        def on_event(state: Any, props: Any) -> dict[str, int]:
            record = props["record"]
            first_seen.setdefault(record.id, clock())
            calls[record.id] = calls.get(record.id, 0) + 1
            seq = record.seq
            return {"n": state["n"] + 1, "sum": state["sum"] + seq, "sumsq": state["sumsq"] + seq * seq}

        inst = C("global")
        for i in range(20):  # warmup: tables made, executor and dispatcher started
            app.insert(Event(seq=-1 - i, title="warmup"))
        inst.flush_update()
        base = {key: inst.read_state(key) for key in ("n", "sum", "sumsq")}
        first_seen.clear()
        calls.clear()

        events = [Event(seq=i, title=f"event {i}") for i in range(n)]
        returned: dict[str, int] = {}

        def insert(i: int) -> None:
            event = events[i]
            app.insert(event)
            returned[event.id] = clock()

        achieved = _paced(rate, n, insert)
        inst.flush_update()

        missing = set(returned) - set(first_seen)
        check(not missing, f"lag at {rate}/s on {store}: {len(missing)} of {n} inserted records never applied")
        extra = set(first_seen) - set(returned)
        check(not extra, f"lag at {rate}/s on {store}: {len(extra)} records applied that were not inserted")
        repeated = sum(1 for c in calls.values() if c != 1)
        check(repeated == 0, f"lag at {rate}/s on {store}: {repeated} records' update op ran more than once")
        got = {key: inst.read_state(key) - base[key] for key in base}
        want = {"n": n, "sum": n * (n - 1) // 2, "sumsq": (n - 1) * n * (2 * n - 1) // 6}
        check(got == want, f"lag at {rate}/s on {store}: state after {n} records is {got}, expected {want}")
        inst.close()
    return _lag_summary(rate, [first_seen[i] - returned[i] for i in returned], achieved)


def run(store: str, cfg: Config) -> dict[str, float]:
    trials, n_one, n_batch, seconds = _sizes(cfg)
    per_trial: list[dict[str, float]] = []
    for _ in range(trials):
        numbers: dict[str, float] = {}
        for triggered in (False, True):
            numbers.update(_insert_trial(store, n_one, n_batch, triggered))
        per_trial.append(numbers)
    out = {key: median([t[key] for t in per_trial]) for key in per_trial[0]}
    for rate in RATES:
        out.update(_lag_trial(store, rate, seconds))
    return out


if __name__ == "__main__":
    from .run_all import main

    main(["--only", NAME])
