"""Running update ops in a child process (``update_task_type="process"``).

Update ops are Python: run in threads of the serving process, a CPU-heavy
one holds the GIL and every serve waits behind it. A process worker is a
forked child that runs the same components' update ops through its own
store connection, so the serving process only enqueues. It is the same
executor that ``tidal worker`` runs, started for you.

The parent wakes the child through a pipe, but only when a byte of shared
memory says the child has gone idle: writing to the pipe on every enqueue
would wake the child (and cost a context switch) thousands of times a
second while it is busy anyway. When the parent dies, the pipe's write end
closes and the child stops after its batch.

The child logs the runs of the ops it applies in its own runs log, which
writes them in batches. ``flush_update`` in the parent asks for them
(:meth:`ProcessWorker.runs_written`): an ``R`` on the pipe, answered, once
the child has written every run of what it committed, by a counter in
shared memory.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
import signal
import struct
import threading
import time
from typing import TYPE_CHECKING

from ..exceptions import ConfigError
from .executor import Executor

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("tidal.worker")


class ProcessWorker:
    """A forked child process that runs the app's update ops."""

    def __init__(self, app: Runtime) -> None:
        if not app.store.shared:
            raise ConfigError(
                f"update_task_type='process' needs a store other processes can open "
                f"(sqlite:///path), not {app.store.url}"
            )
        self.app = app
        self._idle = mmap.mmap(-1, 1)  # shared with the child across fork
        self._runs_done = mmap.mmap(-1, 8)  # how many run-log requests the child has answered
        self._runs_asked = 0
        self._ask_lock = threading.Lock()
        read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        ctx = multiprocessing.get_context("fork")
        self._process = ctx.Process(
            target=_child_main,
            args=(app, read_end, self._write_end, self._idle, self._runs_done),
            name=f"tidal-worker-{app.name}",
            daemon=True,
        )
        self._process.start()
        os.close(read_end)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def notify(self) -> None:
        """Tell the child there is work, if it is idle."""
        if self._idle[0]:
            self._idle[0] = 0
            self.hurry()

    def hurry(self) -> None:
        """Wake the child now: someone waits for updates."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_end, b"!")

    def runs_written(self, timeout: float) -> bool:
        """Ask the child to write the runs of every op it has committed to
        the runs log, and wait until it has (at most ``timeout`` seconds);
        whether it did."""
        with self._ask_lock:
            self._runs_asked += 1
            asked = self._runs_asked
            try:
                os.write(self._write_end, b"R")
            except OSError:  # closed, or full: the child is not reading
                return False
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while struct.unpack_from("Q", self._runs_done)[0] < asked:
            if not self._process.is_alive() or time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return True

    def _close_pipe(self) -> None:
        fd, self._write_end = self._write_end, -1
        if fd >= 0:  # once: the number may name another file afterwards
            with contextlib.suppress(OSError):
                os.close(fd)

    def forsake(self) -> None:
        """In a process forked from the one that started the worker: close
        this process's copy of the pipe's write end (the worker must see the
        pipe close when its parent goes, whoever else was forked) and leave
        the worker alone; it is not this process's child."""
        self._close_pipe()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the child finish its batch and exit."""
        self._close_pipe()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)


def _child_main(parent: Runtime, read_end: int, write_end: int, idle: mmap.mmap, runs_done: mmap.mmap) -> None:
    """Entry point of the forked child: a fresh store connection and executor
    over the parent's components. Nothing of the parent's store is touched:
    SQLite connections must not cross a fork."""
    os.close(write_end)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    app = parent.reopened()
    executor = Executor(app, idle_flag=idle)
    stopped = threading.Event()

    def on_term(*_: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_term)

    def pipe_reader() -> None:
        answered = 0  # requests for the runs log (R) answered so far
        while True:
            try:
                data = os.read(read_end, 4096)
            except OSError:
                data = b""
            if not data:  # parent closed the pipe or died
                stopped.set()
                return
            if b"R" in data:
                # Every run of what was committed before this request: the
                # batches between their commit and their runs' record first.
                with contextlib.suppress(TimeoutError):
                    app.wait_settled(None, None, time.monotonic() + 30)
                runlog = app.runlog
                if runlog is not None:
                    try:
                        runlog.flush()
                    except Exception:
                        log.exception("writing the runs log failed")
                answered += data.count(b"R")
                struct.pack_into("Q", runs_done, 0, answered)
            app.on_relation_change()  # the parent may have written records with triggers
            executor.hurry()

    threading.Thread(target=pipe_reader, name="tidal-worker-pipe", daemon=True).start()
    executor.start()
    stopped.wait()
    executor.stop()
    app.close()
