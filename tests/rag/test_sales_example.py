"""examples/sales_sql.py: the sales questions answered by TextToSQL through
the scripted stand-in, on SQLite and on PostgreSQL, checked against the
same numbers computed in Python; and the script run as a program."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tidal
from tidal import rag
from tidal.cli.demo import load_example

ex = load_example("sales_sql")
REPO = Path(__file__).resolve().parents[2]


def test_the_scripted_questions_get_the_right_numbers(db_app: tidal.App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ex.MODEL_ENV, raising=False)
    with ex.open_model(db_app) as llm:
        shop = ex.open_shop(db_app, llm)
        sales = db_app.query(ex.Sale)
        prices = {p.id: p.price for p in db_app.query(ex.Product)}
        now = datetime.now(UTC)

        fedora = shop.ask("How many units of Fruity Fedora were sold in the last 7 days?")
        expected = sum(s.units for s in sales if s.product_id == "fedora" and s.sold_at >= now - timedelta(days=7))
        assert fedora.rows.scalar() == expected > 0

        best = shop.ask("Which store sold the most units in the last 30 days?")
        per_store: Counter[str] = Counter()
        for s in sales:
            per_store[s.store_id] += s.units
        city = dict(ex.STORES)[per_store.most_common(1)[0][0]]
        assert best.rows[0] == {"city": city, "units": per_store.most_common(1)[0][1]}

        revenue = shop.ask("What was the revenue of each product?")
        totals: Counter[str] = Counter()
        for s in sales:
            totals[s.product_id] += s.units * prices[s.product_id]
        names = {pid: name for pid, name, _ in ex.PRODUCTS}
        assert {r["name"]: r["revenue"] for r in revenue.rows} == {names[k]: round(v, 2) for k, v in totals.items()}

        with pytest.raises(rag.UnsafeSQLError):  # the stand-in's pseudo-words for an unscripted question
            shop.ask("Please drop the sales table")
        assert db_app.db.count(ex.Sale) == len(sales)
        shop.close()


def test_generated_data_is_deterministic() -> None:
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert ex.generate(now) == ex.generate(now)
    assert 300 < len(ex.generate(now)) < 700


def test_the_example_runs_as_a_program(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ex.MODEL_ENV}
    env["TIDAL_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "sales_sql.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Q: How many units of Fruity Fedora were sold in the last 7 days?" in done.stdout
    assert "{'units': " in done.stdout and "{'city': " in done.stdout and "no answer" not in done.stdout
