"""Settings read from arguments and the environment.

=================== ===========================================================
``TIDAL_HOME``      folder for the embedded store and secret key (``./.tidal``)
``TIDAL_STORE``     store URL: ``sqlite:///path``, ``memory://``
                    (default ``sqlite:///$TIDAL_HOME/<app>.db``)
``TIDAL_SECRET_KEY`` HMAC key for stored pickles; every process sharing a store
                    needs the same one (default: generated once into
                    ``$TIDAL_HOME/secret.key``)
``TIDAL_HISTORY_VERSIONS`` earlier versions kept per state key for
                    ``tidal state history`` / ``rollback`` (default 5; 0: off)
``TIDAL_OTLP_ENDPOINT`` export runs and model calls as OpenTelemetry spans to
                    this OTLP/HTTP URL (``.../v1/traces``); ``off``: never, even
                    with ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, which
                    otherwise turns export on too (docs/traces.md)
=================== ===========================================================
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from . import constants


def home_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """The home folder: the argument, else ``TIDAL_HOME``, else ``./.tidal``."""
    return Path(home or os.environ.get("TIDAL_HOME") or constants.DEFAULT_HOME)


def default_store_url(app_name: str, home: Path) -> str:
    """``TIDAL_STORE`` if set, else a SQLite file named after the app in ``home``."""
    return os.environ.get("TIDAL_STORE") or f"sqlite:///{home / (app_name + '.db')}"


def secret_key(home: Path, explicit: str | bytes | None = None) -> bytes:
    """The HMAC key: the argument, else ``TIDAL_SECRET_KEY``, else the key file
    in ``home``, created (readable by its owner only) on first use."""
    value = explicit if explicit is not None else os.environ.get("TIDAL_SECRET_KEY")
    if value:
        return value.encode() if isinstance(value, str) else value
    path = home / constants.SECRET_KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    try:  # O_EXCL: when two processes race, the loser reads the winner's key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def history_versions() -> int:
    """``TIDAL_HISTORY_VERSIONS`` if set, else the default."""
    raw = os.environ.get("TIDAL_HISTORY_VERSIONS")
    if raw is None or raw.strip() == "":
        return constants.HISTORY_VERSIONS
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"TIDAL_HISTORY_VERSIONS must be a whole number >= 0, got {raw!r}") from None


_OFF = ("", "0", "off", "false", "no", "none")


def otlp_endpoint() -> str:
    """Where traces go: ``TIDAL_OTLP_ENDPOINT``, else OpenTelemetry's
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else its
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``, else
    :data:`~tidal.constants.OTLP_ENDPOINT`."""
    own = os.environ.get("TIDAL_OTLP_ENDPOINT", "").strip()
    if own.lower() not in _OFF:
        return own
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + "/v1/traces"
    return constants.OTLP_ENDPOINT


def traces_from_env() -> str | None:
    """What the environment says of trace export when the app does not:
    ``"tidal"`` when ``TIDAL_OTLP_ENDPOINT`` turns it on, ``"otel"`` when
    only OpenTelemetry's ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` does, None
    when it is off (unset, ``TIDAL_OTLP_ENDPOINT=off``, or
    ``OTEL_SDK_DISABLED=true``)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    own = os.environ.get("TIDAL_OTLP_ENDPOINT")
    if own is not None:
        return None if own.strip().lower() in _OFF else "tidal"
    return "otel" if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() else None


def _bound(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable} must be a whole number >= 1, got {raw!r}")
    return value


def redis_versions_cached() -> int:
    """``TIDAL_REDIS_VERSIONS_CACHED`` if set, else
    :data:`~tidal.constants.REDIS_VERSIONS_CACHED`."""
    return _bound("TIDAL_REDIS_VERSIONS_CACHED", constants.REDIS_VERSIONS_CACHED)


def redis_enqueue_names_cached() -> int:
    """``TIDAL_REDIS_ENQUEUE_NAMES_CACHED`` if set, else
    :data:`~tidal.constants.REDIS_ENQUEUE_NAMES_CACHED`."""
    return _bound("TIDAL_REDIS_ENQUEUE_NAMES_CACHED", constants.REDIS_ENQUEUE_NAMES_CACHED)


@dataclass
class Settings:
    """Tunables of one App; every field has a documented default in
    :mod:`tidal.constants`."""

    lease_seconds: float = constants.LEASE_SECONDS
    sweep_seconds: float = constants.SWEEP_SECONDS
    worker_threads: int = constants.WORKER_THREADS
    max_batch: int = constants.MAX_BATCH
    local_cache_entries: int = constants.LOCAL_CACHE_ENTRIES
    snapshot_instances: int = constants.SNAPSHOT_INSTANCES
    """Instances whose state snapshot a process keeps (least recently used
    dropped first); see :data:`tidal.constants.SNAPSHOT_INSTANCES`."""
    history_versions: int = field(default_factory=history_versions)
    """Earlier versions kept per state key (0: none); see
    :data:`tidal.constants.HISTORY_VERSIONS`."""
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("lease_seconds", "sweep_seconds", "worker_threads", "max_batch", "snapshot_instances"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Settings.{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.history_versions, int) or self.history_versions < 0:
            raise ValueError(f"Settings.history_versions must be a whole number >= 0, got {self.history_versions!r}")
