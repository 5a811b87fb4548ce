"""Defaults, each in one place with the reason for its value."""

from __future__ import annotations

DEFAULT_HOME = ".tidal"
"""Folder for the embedded store and the secret key, relative to the working
directory unless ``TIDAL_HOME`` says otherwise."""

DEFAULT_APP_NAME = "default"
"""Name of the app that Motion-style code (which never creates an App) uses."""

DEFAULT_CACHE_TTL = 86_400
"""Seconds a cached serve result may live (Motion's default, one day). With
the default version-keyed cache an entry also dies as soon as state changes."""

LEASE_SECONDS = 10.0
"""How long a claimed batch of update ops stays locked to its worker without
a heartbeat. Short, so that the ops of a killed worker are picked up again
quickly; a live worker renews the lease every third of it."""

SWEEP_SECONDS = 1.0
"""How often an idle executor looks in the store for work that no local
enqueue told it about (ops left by a crashed process, or enqueued by another
process). One query per executor, never one per instance."""

WORKER_THREADS = 2
"""Update threads per executor. Updates of one instance never run in
parallel, so more threads only help with many busy instances."""

MAX_BATCH = 256
"""Most update ops of one instance that one claim takes and one commit applies.
Batching is what makes thousands of updates per second possible on SQLite."""

LOCAL_CACHE_ENTRIES = 10_000
"""Serve results kept per process in the in-memory cache tier."""

SNAPSHOT_INSTANCES = 10_000
"""Instances whose decoded state snapshot a process keeps in memory. Past
this the least recently served is dropped, so memory stays flat however many
instances a long-running server meets; serving a dropped one again reads its
state in full (one read, then it is hot again)."""

FLUSH_POLL_SECONDS = 0.05
"""How often ``flush_update`` re-checks the store while it waits on work done
by another process (local commits wake it at once)."""

COMMIT_RETRIES = 5
"""How often an update batch is re-run when ``write_state`` or a migration
changed the state between claim and commit."""

SECRET_KEY_FILE = "secret.key"
"""Name of the generated HMAC key inside the home folder."""

BATCH_LINGER_SECONDS = 0.003
"""After a small batch, how long an update thread waits for more ops to pile
up before it claims again (unless someone waits in ``flush_update``). Without
it a fast executor claims ops one by one: every op then costs three write
transactions instead of a share of two, and the update thread keeps taking
the GIL and the write lock from the threads serving requests."""

SMALL_BATCH = 64
"""Batches smaller than this are followed by a linger."""

REDIS_VERSIONS_CACHED = 100_000
"""Instances whose state version a Redis store keeps cached in a process
(kept fresh by the server's invalidation pushes; about 200 bytes each). Past
this the least recently read is dropped, so memory stays flat however many
instances a long-running process meets; a dropped one costs one HGET the
next time. Set with ``TIDAL_REDIS_VERSIONS_CACHED``."""

REDIS_ENQUEUE_NAMES_CACHED = 10_000
"""Instances whose enqueue keys a Redis store keeps formatted in a process
(about 1 KB each; formatting them again costs a few microseconds), least
recently used dropped first. Set with ``TIDAL_REDIS_ENQUEUE_NAMES_CACHED``."""

HISTORY_VERSIONS = 5
"""Earlier versions kept per state key, so that an operator can look at them
and roll a key back (``tidal state history`` / ``rollback``). Only keys a
commit writes get an entry, so the cost follows the size of what changed;
0 turns history off. Set with ``TIDAL_HISTORY_VERSIONS``."""

OTLP_ENDPOINT = "http://localhost:4318/v1/traces"
"""Where traces go when export is asked for without an endpoint and none is
set in the environment: OpenTelemetry's default for OTLP over HTTP (a
Collector, Jaeger; Phoenix listens on port 6006 instead)."""

OTLP_TIMEOUT_S = 5.0
"""How long one export request may take, the OTLP exporter's retries
included. Only the exporter's own thread waits for it."""

OTLP_MAX_QUEUE = 100_000
"""Runs and model calls handed to a trace exporter and not yet sent past
which new ones are dropped (and counted): a receiver that is down must not
grow memory without bound. About 1 KB each."""

OTLP_MAX_BATCH = 512
"""Spans per export request (the SDK's BatchSpanProcessor default)."""

OTLP_FLUSH_S = 1.0
"""How often the exporter sends what it has when less than a batch waits."""

OTLP_CLOSE_S = 10.0
"""How long closing an app (or the process exiting) may wait for queued
spans to be sent."""

PINS_REFRESH_S = 5.0
"""How often a process re-reads which experiments were promoted
(``experiment_pins``) while serving instances of components with Variants:
a promotion made elsewhere reaches every process within this time."""

VARIANT_INSTANCES = 10_000
"""Instances whose resolved variants a process keeps (least recently used
dropped: resolving again is a hash per Variants param)."""
