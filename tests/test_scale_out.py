"""The documented scale-out setup (README, "Scaling out"), end to end, with
real servers and real processes: state, queues and leases on Redis,
relations on PostgreSQL, both named only by ``TIDAL_STORE`` / ``TIDAL_DB``;
relation triggers and schedules run by two ``tidal worker`` processes at
once, so two dispatchers race over the PostgreSQL outbox and two schedulers
over the same ticks.

The records are inserted by this test's own App (an API process: it knows
the relation, not the components), through the outbox the workers watch.
Each trigger counts, per record id, how often it ran: every record must be
counted exactly once. The schedule appends its tick: each tick once, in
order, and it keeps ticking."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tidal
from tidal.codec import Codec, key_context, state_context
from tidal.stores.redis import RedisStore

SECRET = "scale-out-secret-key-0123456789abcdef"
SHARDS = ["s0", "s1", "s2", "s3"]
ROUNDS = 20
"""Rounds of inserts, a little apart, so that both workers' dispatchers see changes."""
PER_ROUND = 12
TICK = 0.5
"""The schedule's period, in seconds."""


class ScaleDoc(tidal.Record):
    shard: str
    n: int


SCALE_APP = textwrap.dedent(
    """
    import os

    import tidal
    from tidal.engine.dispatch import Dispatcher

    # Store and relations come from TIDAL_STORE and TIDAL_DB, as in the README.
    app = tidal.App("scale", runs_log=False, settings=tidal.Settings(lease_seconds=5.0, sweep_seconds=0.1))

    _run_once = Dispatcher.run_once

    def counted_run_once(self):  # notes how many changes this process's dispatcher handed over
        moved = _run_once(self)
        if moved:
            with open(os.path.join(os.environ["DISPATCHED"], f"{os.getpid()}.txt"), "a") as fh:
                fh.write(f"{moved}\\n")
        return moved

    Dispatcher.run_once = counted_run_once

    class ScaleDoc(tidal.Record):
        shard: str
        n: int

    Seen = app.component("Seen")

    @Seen.init_state
    def seen_setup():
        return {"count": {}}

    @Seen.update(on=ScaleDoc, events=("insert",), instance=lambda doc: doc.shard)
    def saw(state, props):
        count = dict(state["count"])
        count[props["record"].id] = count.get(props["record"].id, 0) + 1
        return {"count": count}

    Ticker = app.component("Ticker")

    @Ticker.init_state
    def ticker_setup():
        return {"ticks": []}

    @Ticker.update(every=TICK_SECONDS)
    def tick(state, props):
        return {"ticks": state["ticks"] + [props["tick"]]}
    """
).replace("TICK_SECONDS", repr(TICK))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def state(store: RedisStore, component: str, instance: str, key: str) -> Any:
    read = store.read_state(component, instance)
    if read is None:
        return None
    return Codec(SECRET.encode()).loads(read.changed[key], context=key_context(state_context(component, instance), key))


def handed_over(folder: Path) -> dict[str, int]:
    """Changes each worker process's dispatcher handed over (duplicates included)."""
    return {path.stem: sum(int(n) for n in path.read_text().split()) for path in folder.glob("*.txt")}


@pytest.mark.slow
def test_redis_state_postgres_relations_two_workers_each_trigger_once_and_schedules_tick(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    (tmp_path / "scaleapp.py").write_text(SCALE_APP)
    dispatched = tmp_path / "dispatched"
    dispatched.mkdir()
    env = {
        **os.environ,
        "TIDAL_STORE": redis_url,
        "TIDAL_DB": pg_url,
        "TIDAL_SECRET_KEY": SECRET,
        "TIDAL_HOME": str(tmp_path / "home"),
        "DISPATCHED": str(dispatched),
    }
    workers: list[subprocess.Popen[bytes]] = []
    store = RedisStore.from_url(redis_url)
    writer: tidal.App | None = None

    def log(k: int) -> str:
        return (tmp_path / f"w{k}.log").read_text(errors="replace")

    def alive() -> None:
        for k, w in enumerate(workers):
            assert w.poll() is None, f"worker w{k} exited with {w.returncode}:\n{log(k)}"

    try:
        for k in range(2):
            with open(tmp_path / f"w{k}.log", "wb") as fh:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tidal.cli", "worker", "scaleapp.py", "--threads", "2"],
                        cwd=tmp_path,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )

        def started() -> bool:
            alive()
            return all("worker on redis://" in log(k) for k in range(2))

        wait_for(started, 60, "both workers to load the app")

        # An API process: the relation, no components; the database says who watches it.
        writer = tidal.App(
            "scale", store=redis_url, db=pg_url, home=tmp_path / "home", secret_key=SECRET, runs_log=False
        )

        def triggers_declared() -> bool:
            alive()
            return bool(writer.sql("SELECT count(*) AS n FROM tidal_triggers").scalar())

        wait_for(triggers_declared, 60, "the workers to declare their trigger in PostgreSQL")

        ids: dict[str, list[str]] = {shard: [] for shard in SHARDS}
        n = 0
        for r in range(ROUNDS):
            docs = [ScaleDoc(shard=SHARDS[(n + j) % len(SHARDS)], n=n + j) for j in range(PER_ROUND)]
            n += PER_ROUND
            stored = writer.insert_many(docs[: PER_ROUND // 2]) + [writer.insert(d) for d in docs[PER_ROUND // 2 :]]
            for doc in stored:
                ids[doc.shard].append(doc.id)
            time.sleep(0.05 if r % 2 else 0.15)
        total = ROUNDS * PER_ROUND

        def all_applied() -> bool:
            alive()
            return sum(len(state(store, "Seen", shard, "count") or {}) for shard in SHARDS) >= total and all(
                store.pending("Seen", shard) == 0 for shard in SHARDS
            )

        wait_for(all_applied, 60, "every insert's trigger to be applied")
        assert writer.sql("SELECT count(*) AS n FROM tidal_changes").scalar() == 0  # the outbox is drained

        for shard in SHARDS:
            count = state(store, "Seen", shard, "count")
            assert set(count) == set(ids[shard]), f"{shard}: records the trigger missed or made up"
            twice = {doc_id: c for doc_id, c in count.items() if c != 1}
            assert not twice, f"{shard}: triggers applied more than once: {twice}"
            assert store.failures("Seen", shard) == []
            assert store.get_version("Seen", shard) == 1 + len(ids[shard])

        # Both dispatchers took part; what they handed over twice, the dedupe key dropped.
        by_process = handed_over(dispatched)
        print(f"\nchanges handed over per worker: {by_process} for {total} inserts")
        assert len(by_process) == 2 and sum(by_process.values()) >= total

        # The schedule ticks: each tick once, in order, aligned, and it goes on.
        first = state(store, "Ticker", "global", "ticks") or []
        wait_for(
            lambda: len(state(store, "Ticker", "global", "ticks") or []) >= len(first) + 3,
            30,
            "the schedule to tick three more times",
        )
        ticks = state(store, "Ticker", "global", "ticks")
        assert len(ticks) == len(set(ticks)), f"a tick applied twice: {Counter(ticks).most_common(3)}"
        assert ticks == sorted(ticks)
        for t in ticks:
            assert abs(t / TICK - round(t / TICK)) < 1e-6, f"tick {t} is not aligned to {TICK}s"
        assert store.failures("Ticker", "global") == []
        alive()
        for k in range(2):
            assert "Traceback" not in log(k), log(k)
    finally:
        if writer is not None:
            writer.close()
        for w in workers:
            if w.poll() is None:
                w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(30)
        store.close()
