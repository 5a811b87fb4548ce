"""``tidal rag audit`` and ``tidal rag stats``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

from tidal.cli import main

TARGET = """
import numpy as np
import tidal
from tidal import rag
from tidal.models.standin import embedding

class Note(tidal.Record):
    body: str

class Emb:
    name = "standin-16"
    def embed(self, texts):
        return np.asarray([embedding(t, 16) for t in texts], dtype=np.float32)

app = tidal.App("notes", store="sqlite:///{db}")
notes = rag.Index(app, "notes", source=Note, text=lambda n: n.body, embedder=Emb())
"""


def test_audit_and_stats(tmp_path: Path) -> None:
    target = tmp_path / "notes_app.py"
    target.write_text(TARGET.format(db=tmp_path / "notes.db"))
    runner = CliRunner()
    import importlib.util

    spec = importlib.util.spec_from_file_location("notes_setup", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["notes_setup"] = module  # its records are pickled by module name
    spec.loader.exec_module(module)
    module.app.insert_many([module.Note(id=f"n{i}", body=f"note {i}") for i in range(3)])
    module.notes.flush()
    module.app.sql("DELETE FROM rag_chunks WHERE doc_id = 'n1'", write=True)
    module.app.close()
    del sys.modules["notes_setup"]

    result = runner.invoke(main, ["rag", "audit", f"{target}:app", "notes", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["missing"] == ["n1"] and not report["clean"]
    result = runner.invoke(main, ["rag", "audit", f"{target}:app", "notes", "--repair"])
    assert result.exit_code == 0, result.output
    assert "repaired" in result.output and "missing 1" in result.output
    result = runner.invoke(main, ["rag", "audit", f"{target}:app", "notes"])
    assert result.exit_code == 0 and "clean" in result.output
    result = runner.invoke(main, ["rag", "stats", f"{target}:app", "--json"])
    assert result.exit_code == 0, result.output
    (stats,) = json.loads(result.output)
    assert (stats["documents"], stats["chunks"], stats["lag"]) == (3, 3, 0) and stats["last_audit"]["clean"]
    result = runner.invoke(main, ["rag", "stats", f"{target}:app", "nope"])
    assert result.exit_code == 2
