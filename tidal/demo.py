"""``tidal demo``: the per-user preferences example, narrated.

Shows what Tidal does: every serve answers at once from the state committed
so far, updates fold each interaction into that user's own persisted state
in the background, and the state survives the process.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

from .app import App, set_default_app


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` from the working directory or the checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        path = root / "examples" / f"{name}.py"
        if path.exists():
            spec = importlib.util.spec_from_file_location(f"tidal_example_{name}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(
        f"examples/{name}.py not found in {Path.cwd()} or next to the tidal package; "
        "run `tidal demo` from a checkout of the repository"
    )


def run_preferences(console: Console, *, keep: bool = False, home: str | None = None) -> dict[str, Any]:
    """Play the example's script of user interactions; returns the final profiles."""
    app = App("demo", home=home)
    set_default_app(app)
    example = load_example("preferences")
    prefs = example.Preferences
    users = sorted({user for user, *_ in example.SCRIPT})
    if not keep:
        for user in users:
            app.store.delete_instance(prefs.name, user)
    console.print(f"[bold]Tidal demo[/bold]: per-user preferences, state in [cyan]{app.store.url}[/cyan]\n")
    handles = {user: prefs(user, init_state_params={"name": user}) for user in users}

    table = Table(title="each interaction: served now, learned in the background")
    for col in ("#", "user", "does", "served (µs)", "recommended (from state v)", "profile after update"):
        table.add_column(col, overflow="fold")
    for step, (user, action, topic, item) in enumerate(example.SCRIPT, 1):
        inst = handles[user]
        version = inst.get_version()
        started = time.perf_counter()
        suggestions = inst.run("interact", props={"action": action, "topic": topic, "item": item})
        served_us = (time.perf_counter() - started) * 1e6
        inst.flush_update("interact")
        table.add_row(
            str(step),
            user,
            f"{action} {item or topic}",
            f"{served_us:.0f}",
            f"{', '.join(suggestions)}  (v{version})",
            f"{inst.read_state('summary')}  (v{inst.get_version()})",
        )
    console.print(table)

    final = {user: {k: h.read_state(k) for k in ("summary", "events", "owned")} for user, h in handles.items()}
    for handle in handles.values():
        handle.close()
    console.print(
        "\nEvery profile above is persisted per user: run [bold]tidal demo --keep[/bold] and "
        "the users pick up where they left off."
    )
    app.close()
    set_default_app(None)
    return final


def run_zscore(console: Console, *, home: str | None = None) -> None:
    """Run Motion's z-score example unchanged apart from its import."""
    app = App("demo", home=home)
    set_default_app(app)
    example = load_example("zscore")
    app.store.delete_instance(example.ZScore.name, "sensor-1")
    console.print(f"[bold]Tidal demo[/bold]: z-score anomaly detector, state in [cyan]{app.store.url}[/cyan]\n")
    example.main()
    app.close()
    set_default_app(None)
