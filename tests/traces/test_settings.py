"""Turning export on from the environment, the optional extra, and the
span mapping's edge cases (no receiver needed)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

import tidal
from tidal.config import otlp_endpoint
from tidal.engine.spans import call_span, ids, provider_name
from tidal.engine.traces import TraceExporter
from tidal.exceptions import ConfigError


def exporters(app: tidal.App) -> list[Any]:
    assert app.runlog is not None
    return [s for s in app.runlog.sinks if isinstance(s, TraceExporter)]


def test_tidal_otlp_endpoint_turns_export_on(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv("TIDAL_OTLP_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    with tidal.App("env-on", store=f"sqlite:///{tmp_path}/a.db") as app:
        assert [e.endpoint for e in exporters(app)] == ["http://127.0.0.1:1/v1/traces"]
        app.export_traces()  # the same endpoint again: replaces, never doubles
        assert len(exporters(app)) == 1


def test_the_standard_variables_are_honoured(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert otlp_endpoint() == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:2/v1/traces")
    assert otlp_endpoint() == "http://127.0.0.1:2/v1/traces"
    with tidal.App("env-otel", store=f"sqlite:///{tmp_path}/a.db") as app:
        assert [e.endpoint for e in exporters(app)] == ["http://127.0.0.1:2/v1/traces"]
    monkeypatch.setenv("TIDAL_OTLP_ENDPOINT", "off")
    with tidal.App("env-off", store=f"sqlite:///{tmp_path}/b.db") as app:
        assert exporters(app) == []


def test_no_runs_log_no_traces(tmp_path: Any) -> None:
    with tidal.App("quiet", store=f"sqlite:///{tmp_path}/a.db", runs_log=False) as app, pytest.raises(ConfigError):
        app.export_traces("http://127.0.0.1:1/v1/traces")


def test_without_the_extra_export_says_what_to_install(tmp_path: Any) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry': raise ImportError(name + ' is not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tidal\n"
        f"app = tidal.App('x', store='sqlite:///{tmp_path}/x.db')\n"
        "try:\n"
        "    app.export_traces('http://127.0.0.1:1/v1/traces')\n"
        "except tidal.ConfigError as exc:\n"
        "    print(exc)\n"
        "app.close()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "pip install 'tidal[traces]'" in result.stdout


def test_ids_are_stable_and_calls_find_their_parents() -> None:
    assert ids("run1") == ids("run1") != ids("run2")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    chat = call_span({"id": "c1", "run_id": "run1", "model": "m", "endpoint": "https://api.openai.com/v1",
                      "operation": "chat", "started_at": start, "latency_ms": 5.0})  # fmt: skip
    tool = call_span({"id": "c2", "run_id": "run1", "model": "m", "endpoint": "", "operation": "tool",
                      "parent_call": "c1", "note": {"tool": "add", "child_run": "run9"}, "started_at": start,
                      "status": "error", "error": "denied: not yours"})  # fmt: skip
    assert chat.trace_id == tool.trace_id == ids("run1")[0]
    assert chat.parent_id == ids("run1")[1] and tool.parent_id == chat.span_id
    assert chat.end_ns - chat.start_ns == 5_000_000 and chat.client and not tool.client
    assert chat.attributes["gen_ai.provider.name"] == "openai" and chat.attributes["server.port"] == 443
    assert tool.name == "execute_tool add" and tool.links == (ids("run9"),)
    assert tool.error == "denied: not yours" and tool.attributes["error.type"] == "denied"


def test_providers() -> None:
    assert provider_name("http://127.0.0.1:11434/v1") == "ollama"
    assert provider_name("https://x.openai.azure.com/openai") == "azure.ai.openai"
    assert provider_name("local://minilm") == "tidal"
    assert provider_name("http://10.0.0.1:8000/v1") == "openai_compatible"
