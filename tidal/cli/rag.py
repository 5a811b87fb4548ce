"""``tidal rag``: a retrieval index's audit and statistics.

The index is defined by the app's code, so these commands take a TARGET
(as ``tidal worker`` does) and the index's NAME."""

from __future__ import annotations

import click

from .. import rag as rag_api
from .output import emit, json_option
from .target import app_options, load_app


@click.group("rag")
def rag() -> None:
    """Retrieval indexes (tidal.rag.Index): audit, statistics."""


def _index(target: str, name: str, app_name: str, store: str | None) -> rag_api.Index:
    app = load_app(target, app_name, store)
    found = rag_api.indexes(app)
    if name not in found:
        raise click.BadParameter(f"{target} defines no index {name!r}; it defines {sorted(found)}", param_hint="NAME")
    return found[name]


@rag.command("audit")
@click.argument("target")
@click.argument("name")
@click.option("--repair", is_flag=True, help="Re-index what diverged.")
@app_options
@json_option
def audit(target: str, name: str, repair: bool, app_name: str, store: str | None, as_json: bool) -> None:
    """Compare index NAME of TARGET's app with its source relation: missing,
    stale, orphaned chunks, wrong embedder. Exit status 1 if anything
    diverged and was not repaired."""
    index = _index(target, name, app_name, store)
    try:
        report = index.audit(repair=repair)
    finally:
        index.app.close()
    if as_json:
        emit(report.as_dict())
    else:
        counts = ", ".join(f"{k} {v}" for k, v in report.counts().items())
        state = "clean" if report.clean else ("repaired" if report.repaired else "diverged")
        click.echo(f"{name}: {report.documents} documents, {report.chunks} chunks: {state} ({counts})")
        for kind in ("missing", "stale", "orphaned", "wrong_embedder"):
            ids = getattr(report, kind)
            if ids:
                click.echo(f"  {kind}: {' '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
    if not report.clean and not report.repaired:
        raise SystemExit(1)


@rag.command("stats")
@click.argument("target")
@click.argument("name", required=False)
@app_options
@json_option
def stats(target: str, name: str | None, app_name: str, store: str | None, as_json: bool) -> None:
    """Documents, chunks, lag and the last audit of TARGET's indexes (or NAME)."""
    app = load_app(target, app_name, store)
    try:
        found = rag_api.indexes(app)
        if name is not None and name not in found:
            raise click.BadParameter(
                f"{target} defines no index {name!r}; it defines {sorted(found)}", param_hint="NAME"
            )
        rows = [found[n].stats().as_dict() for n in sorted(found) if name is None or n == name]
    finally:
        app.close()
    if as_json:
        emit(rows)
        return
    for s in rows:
        audit_note = "never audited" if not s["last_audit"] else f"last audit {s['last_audit']['at']}"
        building = f" (building {s['building']})" if s["building"] else ""
        click.echo(
            f"{s['name']}: generation {s['generation']}{building}, "
            f"{s['documents_indexed']}/{s['documents']} documents, {s['chunks']} chunks, lag {s['lag']}, "
            f"embedder {s['embedder']}, {audit_note}"
        )


COMMANDS = [rag]
