"""The stand-in model server, through the real ``openai`` client: what it
answers is a pure function of the request, and its faults look to the client
like a hosted API's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from tidal.cli import main
from tidal.exceptions import ConfigError
from tidal.models.http import LOCAL_BACKENDS, local_backend
from tidal.models.standin import StandIn

from .conftest import REPO, StandInServer, running_standin

ASK = [{"role": "user", "content": "Tell me about rivers."}]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
                "hours": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                "place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
            },
            "required": ["city", "unit"],
        },
    },
}


def dump(completion: Any) -> dict[str, Any]:
    return {k: v for k, v in completion.model_dump().items()}


# --------------------------------------------------------------------------- text


def test_the_same_request_gets_the_same_answer(standin: StandInServer) -> None:
    client = standin.client()
    first = client.chat.completions.create(model="stand-in", messages=ASK, temperature=0.7)
    again = client.chat.completions.create(model="stand-in", messages=ASK, temperature=0.7)
    assert dump(first) == dump(again)
    body = {"model": "stand-in", "messages": ASK, "n": 2, "logprobs": True, "top_logprobs": 2}
    raw = [httpx.post(f"{standin.base_url}/chat/completions", json=body).content for _ in range(2)]
    assert raw[0] == raw[1]  # byte for byte, id and created included
    assert first.choices[0].message.content
    other_seed = client.chat.completions.create(model="stand-in", messages=ASK, temperature=0.7, seed=1)
    other_model = client.chat.completions.create(model="gpt-4o-mini", messages=ASK, temperature=0.7)
    assert other_seed.choices[0].message.content != first.choices[0].message.content
    assert other_model.choices[0].message.content != first.choices[0].message.content


def test_usage_counts_words_and_messages(standin: StandInServer) -> None:
    completion = standin.client().chat.completions.create(model="stand-in", messages=ASK)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 4 + 4  # four words, one message
    content = completion.choices[0].message.content or ""
    assert usage.completion_tokens == len(content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0


def test_n_choices_differ(standin: StandInServer) -> None:
    completion = standin.client().chat.completions.create(model="stand-in", messages=ASK, n=3)
    contents = [c.message.content for c in completion.choices]
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len(set(contents)) == 3


def test_max_tokens_cuts_the_same_text(standin: StandInServer) -> None:
    client = standin.client()
    full = client.chat.completions.create(model="stand-in", messages=ASK)
    cut = client.chat.completions.create(model="stand-in", messages=ASK, max_tokens=2)
    words = (full.choices[0].message.content or "").split()
    assert full.choices[0].finish_reason == "stop"
    assert cut.choices[0].finish_reason == "length"
    assert (cut.choices[0].message.content or "").split() == words[:2]
    assert cut.usage is not None and cut.usage.completion_tokens == 2


def test_stop_sequences_end_the_text_before_them(standin: StandInServer) -> None:
    client = standin.client()
    words = (client.chat.completions.create(model="stand-in", messages=ASK).choices[0].message.content or "").split()
    stopped = client.chat.completions.create(model="stand-in", messages=ASK, stop=[f" {words[2]}"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == " ".join(words[:2])


def test_logprobs_and_top_logprobs(standin: StandInServer) -> None:
    completion = standin.client().chat.completions.create(
        model="stand-in", messages=ASK, n=2, logprobs=True, top_logprobs=3
    )
    means = []
    for choice in completion.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        entries = choice.logprobs.content
        assert "".join(e.token for e in entries) == choice.message.content
        for entry in entries:
            assert -5 < entry.logprob <= 0
            assert entry.bytes == list(entry.token.encode())
            assert len(entry.top_logprobs) == 3
            assert entry.token in [t.token for t in entry.top_logprobs]
            assert [t.logprob for t in entry.top_logprobs] == sorted(
                (t.logprob for t in entry.top_logprobs), reverse=True
            )
        means.append(sum(e.logprob for e in entries) / len(entries))
    assert means[0] != means[1]  # a best-of-n by mean logprob has one winner


def test_legacy_completions(standin: StandInServer) -> None:
    completion = standin.client().completions.create(model="stand-in", prompt="Once upon", max_tokens=3, logprobs=2)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.logprobs is not None and choice.logprobs.tokens is not None
    assert "".join(choice.logprobs.tokens) == choice.text
    assert choice.logprobs.top_logprobs is not None and all(len(t) == 2 for t in choice.logprobs.top_logprobs)
    assert completion.usage is not None and completion.usage.prompt_tokens == 2


# --------------------------------------------------------------------------- streaming


def test_streaming_matches_the_plain_answer_and_ends_with_usage(standin: StandInServer) -> None:
    client = standin.client()
    plain = client.chat.completions.create(model="stand-in", messages=ASK)
    chunks = list(
        client.chat.completions.create(
            model="stand-in", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert all(c.id == plain.id for c in chunks)


def test_stream_helper_accumulates_tool_call_deltas(standin: StandInServer) -> None:
    client = standin.client()
    messages = [{"role": "user", "content": "What does get_weather say for Oslo?"}]
    with client.chat.completions.stream(model="stand-in", messages=messages, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        for _ in stream:
            pass
        final = stream.get_final_completion()
    plain = client.chat.completions.create(model="stand-in", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    calls = final.choices[0].message.tool_calls
    assert calls and final.choices[0].finish_reason == "tool_calls"
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert calls[0].function.arguments == plain.choices[0].message.tool_calls[0].function.arguments  # type: ignore[index, union-attr]


# --------------------------------------------------------------------------- tools


def test_a_named_tool_is_called_with_arguments_from_its_schema(standin: StandInServer) -> None:
    client = standin.client()
    messages: list[Any] = [{"role": "user", "content": "Use get weather please"}]
    completion = client.chat.completions.create(model="stand-in", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("celsius", "fahrenheit")
    assert 1 <= arguments["days"] <= 7 and isinstance(arguments["detailed"], bool)
    assert len(arguments["hours"]) >= 1 and isinstance(arguments["place"]["lat"], float)
    again = client.chat.completions.create(model="stand-in", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert again.choices[0].message.tool_calls[0].id == call.id  # type: ignore[index]

    messages += [
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"},
    ]
    answer = client.chat.completions.create(model="stand-in", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert answer.choices[0].finish_reason == "stop"
    assert "sunny, 21 degrees" in (answer.choices[0].message.content or "")


def test_no_tool_named_means_a_text_answer(standin: StandInServer) -> None:
    completion = standin.client().chat.completions.create(model="stand-in", messages=ASK, tools=[WEATHER])  # type: ignore[list-item]
    assert completion.choices[0].message.tool_calls is None and completion.choices[0].message.content


# --------------------------------------------------------------------------- scripts and structured output


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    manager: Person | None


def test_parse_gets_an_instance_of_the_schema(standin: StandInServer) -> None:
    completion = standin.client().chat.completions.parse(
        model="stand-in", messages=[{"role": "user", "content": "Who?"}], response_format=Person
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)


def test_scripted_answers_json_and_tool_calls(standin: StandInServer) -> None:
    standin.script(
        [
            {"match": "score", "answers": ["7", "3"], "cached_tokens": 2},
            {"match": "extract", "json": {"name": "Ada", "age": 36, "tags": [], "manager": None}},
            {"match": "broken", "answer": "{not json"},
            {"match": "lookup", "tool_calls": [{"name": "find", "arguments": {"q": "Ada"}}]},
            {"match": "Ada", "role": "tool", "answer": "Found her."},
        ]
    )
    client = standin.client()
    scored = client.chat.completions.create(model="judge", messages=[{"role": "user", "content": "score it"}], n=2)
    assert [c.message.content for c in scored.choices] == ["7", "3"]
    assert scored.usage.prompt_tokens_details.cached_tokens == 2  # type: ignore[union-attr]
    parsed = client.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "extract"}], response_format=Person
    )
    assert parsed.choices[0].message.parsed == Person(name="Ada", age=36, tags=[], manager=None)
    with pytest.raises(ValueError):
        client.chat.completions.parse(
            model="m", messages=[{"role": "user", "content": "broken"}], response_format=Person
        )
    called = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "lookup"}])
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, json.loads(call.function.arguments)) == ("find", {"q": "Ada"})  # type: ignore[union-attr]
    after = client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "lookup"},
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Ada Lovelace"},
        ],
    )
    assert after.choices[0].message.content == "Found her."


def test_a_malformed_script_is_refused(standin: StandInServer) -> None:
    response = standin.http.post("/script", json=[{"match": "(", "answer": "x"}])
    assert response.status_code == 400 and "rule 0" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- embeddings


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_put_similar_texts_close(standin: StandInServer) -> None:
    client = standin.client()
    texts = ["how do I open a file", "how to open a file", "the quarterly revenue grew strongly"]
    result = client.embeddings.create(model="text-embedding-3-small", input=texts)  # base64 on the wire
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 64 and math.isclose(math.sqrt(cosine(v, v)), 1, abs_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.6 > cosine(vectors[0], vectors[2])
    floats = client.embeddings.create(model="e", input=texts[0], dimensions=16, encoding_format="float")
    assert len(floats.data[0].embedding) == 16
    assert result.usage.prompt_tokens == 6 + 5 + 5
    with pytest.raises(openai.BadRequestError, match="input"):
        client.embeddings.create(model="e", input=[[1, 2, 3]])


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("param", "value"),
    [("temperature", 2.5), ("temperature", -0.1), ("top_p", 0), ("top_p", 1.5), ("n", 0), ("max_tokens", 0)],
)
def test_invalid_parameters_are_400s_naming_them(standin: StandInServer, param: str, value: float) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        standin.client().chat.completions.create(model="stand-in", messages=ASK, **{param: value})  # type: ignore[call-overload]
    assert raised.value.param == param and param in raised.value.message


def test_top_k_arrives_and_changes_the_answer(standin: StandInServer) -> None:
    client = standin.client()
    plain = client.chat.completions.create(model="stand-in", messages=ASK, seed=3)
    top_k = client.chat.completions.create(model="stand-in", messages=ASK, seed=3, extra_body={"top_k": 5})
    assert plain.choices[0].message.content != top_k.choices[0].message.content
    bodies = [r["body"] for r in standin.requests()]
    assert bodies[-1]["top_k"] == 5 and bodies[-1]["seed"] == 3 and "top_k" not in bodies[-2]
    assert "authorization" not in standin.requests()[-1]["headers"]
    with pytest.raises(openai.BadRequestError, match="top_k"):
        client.chat.completions.create(model="stand-in", messages=ASK, extra_body={"top_k": "many"})


def test_a_prompt_over_the_context_window_is_refused() -> None:
    with running_standin(context_window=20) as server:
        client = server.client()
        client.chat.completions.create(model="stand-in", messages=ASK)
        long = [{"role": "user", "content": "word " * 30}]
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="stand-in", messages=long)  # type: ignore[arg-type]
        assert raised.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError, match="context length"):
            client.chat.completions.create(model="stand-in", messages=ASK, max_tokens=15)  # type: ignore[arg-type]


def test_an_api_key_is_required_when_set() -> None:
    with running_standin(api_key="sesame") as server:
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").models.list()
        assert [m.id for m in server.client(api_key="sesame").models.list()] == list(StandIn().models())
        assert httpx.get(server.base_url.removesuffix("/v1") + "/_stand-in/requests").status_code == 401


# --------------------------------------------------------------------------- faults


def test_429_with_retry_after(standin: StandInServer) -> None:
    standin.faults([{"kind": "429", "times": 1, "retry_after": 2}])
    client = standin.client()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="stand-in", messages=ASK)
    assert raised.value.response.headers["retry-after"] == "2"
    assert client.chat.completions.create(model="stand-in", messages=ASK).choices  # used up
    assert standin.faults()[0]["hits"] == 1 and standin.faults()[0]["used_up"]


def test_500_retried_by_the_client(standin: StandInServer) -> None:
    standin.faults([{"kind": "500", "times": 2}])
    with pytest.raises(openai.InternalServerError):
        standin.client().chat.completions.create(model="stand-in", messages=ASK)
    retried = standin.client(max_retries=1).chat.completions.create(model="stand-in", messages=ASK)
    assert retried.choices and len(standin.requests()) == 3
    assert standin.faults()[0]["hits"] == 2


def test_faults_can_target_one_model(standin: StandInServer) -> None:
    standin.faults([{"kind": "500", "model": "gpt-4o"}])
    client = standin.client()
    assert client.chat.completions.create(model="stand-in", messages=ASK).choices
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=ASK)


def test_slow_times_out_a_short_client_timeout(standin: StandInServer) -> None:
    standin.faults([{"kind": "slow", "delay": 0.6, "times": 1}])
    with pytest.raises(openai.APITimeoutError):
        standin.client(timeout=0.2).chat.completions.create(model="stand-in", messages=ASK)


def test_drop_mid_stream_raises(standin: StandInServer) -> None:
    standin.faults([{"kind": "drop", "after_tokens": 3}])
    client = standin.client()
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in client.chat.completions.create(model="stand-in", messages=ASK, stream=True):
            pass
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="stand-in", messages=ASK)


def test_a_malformed_fault_is_refused(standin: StandInServer) -> None:
    response = standin.http.post("/faults", json=[{"kind": "418"}])
    assert response.status_code == 400 and "kind" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- the command


def test_the_command_prints_its_url_and_takes_a_script_and_faults(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "ping", "answer": "pong"}]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fault = json.dumps({"kind": "500", "times": 1})
    command = [sys.executable, "-m", "tidal", "models", "serve", "--stand-in", "--port", "0"]
    command += ["--script", str(script), "--fault", fault]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("serving stand-in on http://127.0.0.1:") and line.endswith("/v1")
            with openai.OpenAI(base_url=line.split(" on ")[1], api_key="x", max_retries=0) as client:
                with pytest.raises(openai.InternalServerError):
                    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "ping"}])
                answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "ping"}])
            assert answer.choices[0].message.content == "pong"
        finally:
            process.terminate()


def test_the_command_refuses_bad_usage() -> None:
    runner = CliRunner()
    both = runner.invoke(main, ["models", "serve", "--stand-in", "--local", "gemma-3-270m"])
    assert both.exit_code == 2 and "exactly one" in both.output
    bad_fault = runner.invoke(main, ["models", "serve", "--stand-in", "--fault", '{"kind": "nope"}'])
    assert bad_fault.exit_code == 2 and "--fault" in bad_fault.output
    unknown = runner.invoke(main, ["models", "serve", "--local", "no-such-model"])
    assert unknown.exit_code == 2 and "gemma-3-270m" in unknown.output


def test_a_local_model_whose_module_is_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LOCAL_BACKENDS, "tiny", "tidal.models.no_such_module")
    with pytest.raises(ConfigError, match=r"tidal\.models\.no_such_module"):
        local_backend("tiny")
