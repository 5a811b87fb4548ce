"""What the dashboard tests run `tidal serve` on: a component with a serve
op and an update per call, and one whose index update fails while the
file named by ``DASH_FAIL_FILE`` exists (so a retried op can succeed), a
relation trigger and a schedule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tidal

app = tidal.default_app()


class Note(tidal.Record):
    text: str


Prefs = app.component("Prefs")


@Prefs.init_state
def setup_prefs() -> dict[str, Any]:
    return {"events": [], "summary": ""}


@Prefs.serve("recommend")
def recommend(state: Any, props: Any) -> dict[str, Any]:
    return {"event": props["event"], "seen": len(state["events"])}


@Prefs.update("recommend")
def remember(state: Any, props: Any) -> dict[str, Any]:
    events = [*state["events"], props["event"]][-20:]
    return {"events": events, "summary": f"{len(events)} events, last {props['event']}"}


Docs = app.component("Docs")


@Docs.init_state
def setup_docs() -> dict[str, Any]:
    return {"titles": [], "count": 0}


@Docs.serve("add")
def count(state: Any, props: Any) -> int:
    return int(state["count"])


@Docs.update("add")
def index(state: Any, props: Any) -> dict[str, Any]:
    if props.get("fail") and Path(os.environ["DASH_FAIL_FILE"]).exists():
        raise RuntimeError(f"index offline: cannot add {props['title']}")
    return {"titles": [*state["titles"], props["title"]], "count": state["count"] + 1}


@Docs.update(on=Note, instance=lambda note: "notes")
def noted(state: Any, props: Any) -> dict[str, Any]:
    return {"count": state["count"] + 1}


@Docs.update(every="1h", instance="notes")
def compact(state: Any, props: Any) -> dict[str, Any]:
    return {}
