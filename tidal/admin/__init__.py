"""Operations: the one place the CLI, the HTTP API and the dashboard read
operational data from, and act through.

Every function takes an :class:`~tidal.App` and returns frozen dataclasses
whose ``as_dict()`` is JSON-ready. Asking for a component, instance, state
key, version or failed op that does not exist raises
:class:`~tidal.exceptions.NotFoundError`, which names what does exist::

    from tidal import admin

    for key in admin.state(app, "Prefs", "user-42").keys:
        print(key.key, key.version, key.size)
    admin.rollback(app, "Prefs", "user-42", "summary", version=3)

One module per responsibility, all re-exported here:

- :mod:`.catalog`: components, their flows, instances;
- :mod:`.state_keys`: an instance's state keys, a key's history, rollback;
- :mod:`.backlog`: queue depth and lag, an instance's waiting ops, failed
  ops retried or dropped;
- :mod:`.query`: read-only SQL;
- :mod:`.runs_log`: runs, run statistics, the timeline, the writer's health;
- :mod:`.model_usage`: model calls' cost, tokens and latency per model, per
  flow, per instance and day; a run's calls;
- :mod:`.common`: what they share (``as_dict()``, not-found checks).
"""

from __future__ import annotations

from ..engine.freshness import Freshness
from ..exceptions import FailedOp
from .backlog import (
    InstanceQueue,
    RetryResult,
    drop_failed,
    failures,
    instance_queue,
    queues,
    retry_failed,
)
from .catalog import ComponentInfo, FlowInfo, InstanceInfo, component, components, instance, instances
from .model_usage import (
    GROUPINGS,
    InstanceDayUsage,
    ModelCallInfo,
    ModelUsage,
    RunModelTotals,
    calls_of_run,
    run_model_totals,
    usage_by_flow,
    usage_by_instance_day,
    usage_by_model,
)
from .query import SqlResult, sql
from .runs_log import (
    RUN_STATUSES,
    RunInfo,
    RunStats,
    TimelineBucket,
    run_stats,
    run_timeline,
    runs,
    runs_log_health,
    runs_log_warning,
)
from .state_keys import KeyState, KeyVersionInfo, RollbackResult, StateInfo, key_history, rollback, state

__all__ = [
    # components and instances (catalog)
    "ComponentInfo",
    "FlowInfo",
    "InstanceInfo",
    "component",
    "components",
    "instance",
    "instances",
    # state keys, history, rollback (state_keys)
    "KeyState",
    "KeyVersionInfo",
    "RollbackResult",
    "StateInfo",
    "key_history",
    "rollback",
    "state",
    # queues and failed ops (backlog)
    "FailedOp",
    "Freshness",
    "InstanceQueue",
    "RetryResult",
    "drop_failed",
    "failures",
    "instance_queue",
    "queues",
    "retry_failed",
    # read-only SQL (query)
    "SqlResult",
    "sql",
    # the runs log (runs_log)
    "RUN_STATUSES",
    "RunInfo",
    "RunStats",
    "TimelineBucket",
    "run_stats",
    "run_timeline",
    "runs",
    "runs_log_health",
    "runs_log_warning",
    # model calls: cost, tokens, latency (model_usage)
    "GROUPINGS",
    "InstanceDayUsage",
    "ModelCallInfo",
    "ModelUsage",
    "RunModelTotals",
    "calls_of_run",
    "run_model_totals",
    "usage_by_flow",
    "usage_by_instance_day",
    "usage_by_model",
]
