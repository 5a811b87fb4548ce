"""The executor: claims batches of update ops from the store, runs them, and
commits each batch's state changes atomically.

One executor serves a whole process (the app's update threads, or a ``tidal
worker``); it never keeps anything per instance, so idle instances cost
nothing. Ordering and exclusivity come from the store's ``claim``; fencing
from ``commit``; so this module holds no locks around state at all.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..constants import BATCH_LINGER_SECONDS, COMMIT_RETRIES, SMALL_BATCH
from ..context import CurrentRun, current_run
from ..core.layout import KeyLayout, WholeLayout, check_delta, unstorable
from ..core.policies import should_discard
from ..core.props import Properties
from ..core.state import IMMUTABLE_TYPES, Snapshot, overlay
from ..exceptions import LeaseLostError, StateSerializationError, StoreError, VersionConflictError
from ..stores import Claim
from .runlog import Entry
from .serving import call_sync

if TYPE_CHECKING:
    from ..core.component import ComponentSpec
    from ..relations.record import Record
    from .runtime import Runtime

log = logging.getLogger("tidal.executor")


class Executor:
    """Runs update ops of the app's components in ``worker_threads`` threads."""

    def __init__(
        self,
        app: Runtime,
        *,
        threads: int | None = None,
        idle_flag: Any = None,
        components: list[str] | None = None,
    ) -> None:
        self.app = app
        self._only = components  # claim only these components' ops (None: every component's)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._threads_wanted = threads or app.settings.worker_threads
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()
        self._hurry = threading.Event()
        # A writable one-byte buffer set to 1 while this executor waits for
        # work, so that a producer in another process knows to wake it.
        self._idle_flag = idle_flag
        self._stop = threading.Event()
        self._active: dict[str, Claim] = {}
        self._local = threading.local()  # per update thread: its last claim
        # Instances a thread lingers over (see _loop): enqueues for them wake nobody.
        self._lingering: set[tuple[str, str]] = set()
        self._active_lock = threading.Lock()
        self.committed_ops = 0
        self.failed_ops = 0
        self.lost_leases = 0

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        for n in range(self._threads_wanted):
            thread = threading.Thread(target=self._loop, name=f"tidal-update-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="tidal-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        self.app.start_helpers()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batches in hand are committed."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def notify(self, component: str | None = None, instance: str | None = None) -> None:
        """Tell idle threads that work was enqueued (for ``instance`` of
        ``component``, if given). Not when a thread of ours holds that
        instance: it claims again after its commit and takes the new ops
        then, whereas a thread woken now could only fail to claim them."""
        if instance is not None:
            with self._active_lock:
                held = (component, instance) in self._lingering or any(
                    c.instance == instance and c.component == component for c in self._active.values()
                )
            if held:
                return
        self._wake.set()

    def hurry(self) -> None:
        """Someone waits for updates: claim again now instead of lingering."""
        self._hurry.set()
        self._wake.set()

    def _loop(self) -> None:
        try:
            self._work()
        finally:
            self._close_event_loop()

    def _close_event_loop(self) -> None:
        """Close this thread's event loop of async update ops, if it made one."""
        loop = getattr(self._local, "loop", None)
        if loop is not None:
            self._local.loop = None
            loop.close()

    def _work(self) -> None:
        sweep = self.app.settings.sweep_seconds
        while not self._stop.is_set():
            self._wake.clear()
            self._local.claim = None
            worked = self._safe_run_once()
            if worked is None:
                return
            if worked == 0 and self._idle_flag is not None:
                # Say we are idle first, then look once more: an op enqueued
                # in between is either seen now or its producer sees the flag.
                self._idle_flag[0] = 1
                worked = self._safe_run_once()
                if worked is None:
                    return
                if worked:
                    self._idle_flag[0] = 0
            claim = self._local.claim
            if worked == 0:
                self._wake.wait(sweep)
            elif worked < SMALL_BATCH and claim is not None and not claim.others_waiting and not self._hurry.is_set():
                # A small batch and no other instance waiting: let this one's
                # ops pile up a little, and let no other thread take them in
                # smaller batches meanwhile. With others waiting, claim at once.
                key = (claim.component, claim.instance)
                with self._active_lock:
                    self._lingering.add(key)
                self._hurry.wait(BATCH_LINGER_SECONDS)
                # Still marked until the next claim is in: an enqueue during
                # that claim's round trip must not wake another thread for it.
                self._local.lingered = key
            self._hurry.clear()

    def _safe_run_once(self) -> int | None:
        """``run_once`` that logs errors instead of raising; None: stop now."""
        try:
            return self.run_once()
        except StoreError:
            if self._stop.is_set() or self.app._closed:
                return None
            log.exception("store error in update loop; retrying")
        except Exception:  # never let one bad batch kill the thread
            log.exception("unexpected error in update loop")
        return 0

    def _heartbeat(self) -> None:
        lease = self.app.settings.lease_seconds
        while not self._stop.wait(lease / 3):
            with self._active_lock:
                claims = list(self._active.values())
            for claim in claims:
                try:
                    if not self.app.store.renew(claim, lease) and claim.token in self._active:
                        log.warning("lease on %s/%s lost before renewal", claim.component, claim.instance)
                except Exception:
                    log.exception("lease renewal failed")

    # -- work -------------------------------------------------------------

    def runnable_components(self) -> list[str]:
        return [
            name
            for name, comp in self.app.components.items()
            if comp.runs_in_background and (self._only is None or name in self._only)
        ]

    def run_once(self) -> int:
        """Claim and process one batch; returns how many ops it held (0: no work)."""
        lingered, self._local.lingered = getattr(self._local, "lingered", None), None
        claim = None
        try:
            components = self.runnable_components()
            if components:
                settings = self.app.settings
                claim = self.app.store.claim(
                    components,
                    self.owner,
                    settings.lease_seconds,
                    settings.max_batch,
                    count_newer=any(self.app.components[name].counts_backlog for name in components),
                )
            if claim is not None:
                self._local.claim = claim
                with self._active_lock:
                    self._active[claim.token] = claim
        finally:
            if lingered is not None:  # held again now, or no longer ours to wait for
                with self._active_lock:
                    self._lingering.discard(lingered)
        if claim is None:
            return 0
        try:
            self.process(claim)
        finally:
            with self._active_lock:
                self._active.pop(claim.token, None)
        return len(claim.ops)

    def drain(self, until: Callable[[], bool] | None = None) -> int:
        """Process batches until none is left (or ``until()`` says done);
        returns how many ran."""
        n = 0
        try:
            while not (until is not None and until()) and self.run_once():
                n += 1
        finally:
            self._close_event_loop()
        return n

    def process(self, claim: Claim) -> None:
        """Run a claimed batch and commit it (re-running it if the state
        changed underneath, e.g. by ``write_state``)."""
        app = self.app
        component = app.components.get(claim.component)
        if component is None:  # pragma: no cover - claim filters by component
            app.store.release(claim)
            return
        known = claim.version  # as of the claim: trusted for the first try only
        for _ in range(COMMIT_RETRIES):
            snap = app.snapshot(component, claim.instance, known)
            known = None
            changes, done, failed, bump, runs, live = self._apply(component, claim, snap)
            # From the commit to the end of its effects here, flush_update waits
            # (see Runtime.settling).
            with app.settling(claim.component, claim.instance):
                try:
                    version = app.store.commit(
                        claim.component,
                        claim.instance,
                        changes,
                        claim=claim,
                        done=done,
                        failed=failed,
                        expected_version=snap.version,
                        bump=bump,
                    )
                except VersionConflictError:
                    continue
                except LeaseLostError as exc:
                    self.lost_leases += 1
                    log.warning("not committing %d op(s): %s", len(claim.ops), exc)
                    return
                with self._active_lock:  # its lease is gone: the heartbeat must not miss it
                    self._active.pop(claim.token, None)
                if changes:
                    layout = app.layout(component)
                    if live is not None and isinstance(layout, WholeLayout):
                        raw = {**snap.raw_items, **changes}
                        app.install(component, layout.live_snapshot(version, raw, snap.decoder, claim.instance, live))
                    else:
                        app.install(component, layout.advance(snap, version, changes, ()))
                runlog = app.runlog
                if runlog is not None:
                    for entry in runs:
                        runlog.record(
                            entry._replace(
                                id=entry.id or runlog.new_id(),
                                version_read=snap.version,
                                version_written=version if entry.status == "ok" else None,
                            )
                        )
                self.committed_ops += len(done)
                self.failed_ops += len(failed)
                app.notify_committed()
                return
        log.warning("gave up on %s/%s after %d version conflicts", claim.component, claim.instance, COMMIT_RETRIES)
        app.store.release(claim)

    def _serve_in_background(self, component: ComponentSpec, flow: str, state: Any, props: Properties) -> None:
        """A relation-triggered serve op: run it, store its result as a
        derived record if the trigger says ``into``, and hand the result to
        the flow's update ops."""
        route = component.serve_routes.get(flow)
        if route is None:
            raise LookupError(f"component {component.name} has no serve op for flow {flow!r}")
        result = call_sync(route, state, props)
        props._serve_result = result
        trigger = next((t for t in component.triggers if t.flow == flow and t.serve), None)
        if trigger is None or trigger.into is None or props.get("event") == "delete":
            return
        source = props["record"]
        derived: Record
        if isinstance(result, trigger.into):
            derived = result if "id" in result.model_fields_set else result.model_copy(update={"id": source.id})
        elif isinstance(result, dict):
            derived = trigger.into.model_validate({"id": source.id, **result})
        else:
            raise TypeError(
                f"serve op of {component.name} flow {flow!r} returned {type(result).__name__}; with into= it must "
                f"return a dict of {trigger.into.__name__} fields or a {trigger.into.__name__}"
            )
        self.app.db.insert_many([derived], upsert=True)

    def _call(self, fn: Any, state: Any, props: Properties) -> Any:
        """Run an update op; an ``async def`` one on this thread's own event
        loop (kept for the thread's life: a loop per op would cost more than
        most ops)."""
        result = fn(state, props)
        if inspect.isawaitable(result):
            loop = getattr(self._local, "loop", None)
            if loop is None:
                loop = self._local.loop = asyncio.new_event_loop()
            result = loop.run_until_complete(result)
        return result

    def _apply(
        self, component: ComponentSpec, claim: Claim, snap: Snapshot
    ) -> tuple[dict[str, bytes], list[int], dict[int, str], int, list[Entry], dict[str, Any] | None]:
        app = self.app
        layout = app.layout(component)
        encode = app.encoder(component, claim.instance)
        decode = app.decoder(component.name, claim.instance)
        changes: dict[str, bytes] = {}
        done: list[int] = []
        failed: dict[int, str] = {}
        runs: list[Entry] = []
        bump = 0
        name, instance = component.name, claim.instance
        # Immutable values the batch's earlier ops returned, handed on as they
        # are rather than decoded again from their bytes for each op.
        carried: dict[str, Any] | None = {} if isinstance(layout, KeyLayout) else None
        # A whole-state component's ops each get a fresh load of the stored
        # state, with the objects that cannot be stored (see unstorable) live.
        live: dict[str, Any] | None = unstorable(snap.loaded) if isinstance(layout, WholeLayout) else None
        raw = snap.raw_items
        runlog = app.runlog
        variants = app.variants(component, instance) if component.variant_params else None
        for op in claim.ops:
            t0, wall0 = time.perf_counter(), time.time()
            flow, props, ran = "?", None, False
            # The run's id is known before its ops run, so that what they do
            # (a model call) can name the run it belongs to.
            run_id = runlog.new_id() if runlog is not None else ""
            token = current_run.set(CurrentRun(run_id, name, instance, "?", "update", app))
            try:
                flow, props, *mode = app.codec.loads(op.payload, what=("payload of op", op.id))
                if not isinstance(props, Properties):
                    raise TypeError(f"payload of op {op.id} holds {type(props).__name__}, not props")
                # The definition that queued the op runs it, when this process
                # has it: two components may share a name (Motion's test
                # modules each define a Counter).
                owner = app.definition(mode[1]) if len(mode) > 1 else None
                routes = (owner or component).update_routes.get(flow, [])
                background_serve = bool(mode and mode[0] == "serve")
                if not routes and not background_serve:
                    raise LookupError(f"component {component.name} has no update op for flow {flow!r}")
                current_run.set(CurrentRun(run_id, name, instance, flow, "update", app))
                state = layout.update_state(overlay(raw, changes), decode, claim.instance)
                if live:
                    dict.update(state, live)
                if carried:
                    dict.update(state, carried)
                if background_serve:
                    self._serve_in_background(component, flow, state, props)
                delta: dict[str, Any] = {}
                for route in routes:
                    if should_discard(
                        route.discard_policy,
                        route.discard_after,
                        enqueued_at=op.enqueued_at,
                        newer_same_flow=op.newer_same_flow,
                    ):
                        continue
                    ran = True
                    where = f"update op {route.name!r} of {component.name} flow {flow!r}"
                    result = check_delta(self._call(route.fn, state, props), where)
                    for key, value in result.items():
                        dict.__setitem__(state, key, value)
                    delta.update(result)
                try:
                    encoded = layout.encode(state, delta, encode)
                except StateSerializationError as exc:
                    raise StateSerializationError(
                        f"update op of {component.name} flow {flow!r} returned a value that cannot be stored: {exc}"
                    ) from exc
            except Exception:
                error = traceback.format_exc()
                log.warning("update op %d of %s/%s failed:\n%s", op.id, claim.component, claim.instance, error)
                failed[op.id] = error
                runs.append(
                    Entry(
                        id=run_id, component=name, instance=instance, flow=flow, kind="update", status="error",
                        props=props, result=None, cached=False, version_read=None, version_written=None,
                        op_id=op.id, started=wall0, latency=time.perf_counter() - t0, error=error,
                        waited=wall0 - op.enqueued_at, variants=variants,
                    )
                )  # fmt: skip
                continue
            finally:
                current_run.reset(token)
            changes.update(encoded)
            if live is not None and delta:
                live = unstorable(dict(dict.items(state)))
            if carried is not None:
                for key, value in delta.items():
                    if type(value) in IMMUTABLE_TYPES:
                        carried[key] = value
                    else:
                        carried.pop(key, None)
            done.append(op.id)
            if encoded:
                bump += 1
            status = "ok" if ran or background_serve else "discarded"
            runs.append(
                Entry(
                    id=run_id, component=name, instance=instance, flow=flow, kind="update", status=status,
                    props=props, result=sorted(delta), cached=False, version_read=None, version_written=None,
                    op_id=op.id, started=wall0, latency=time.perf_counter() - t0, error=None,
                    waited=wall0 - op.enqueued_at, variants=variants,
                )
            )  # fmt: skip
        return changes, done, failed, bump, runs, live
