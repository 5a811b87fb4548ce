"""What models cost and how much they read: a table the app can override.

Prices are US dollars per million tokens, as providers publish them; a call's
cost is ``prompt * input + completion * output`` with cached prompt tokens at
``cached`` instead of ``input``. A model missing from the table costs 0 (a
local model) until a price is set::

    models.prices.set("my-finetune", input=0.30, output=1.20)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    """Price (USD per 1M tokens) and context window of a model."""

    input: float = 0.0
    output: float = 0.0
    cached: float | None = None
    """Price of prompt tokens served from the provider's cache (None: ``input``)."""
    context_window: int | None = None
    """Tokens of prompt plus answer the model takes (None: unknown, unchecked)."""

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """The cost in USD of a call that used these tokens."""
        cached = min(cached_tokens, prompt_tokens)
        cached_price = self.input if self.cached is None else self.cached
        return ((prompt_tokens - cached) * self.input + cached * cached_price + completion_tokens * self.output) / 1e6


# Published list prices (USD per 1M tokens) when this table was written;
# override them with ``prices.set`` where yours differ.
_DEFAULTS = {
    "gpt-4o-mini": ModelInfo(0.15, 0.60, 0.075, 128_000),
    "gpt-4o": ModelInfo(2.50, 10.00, 1.25, 128_000),
    "gpt-4.1": ModelInfo(2.00, 8.00, 0.50, 1_047_576),
    "gpt-4.1-mini": ModelInfo(0.40, 1.60, 0.10, 1_047_576),
    "gpt-4.1-nano": ModelInfo(0.10, 0.40, 0.025, 1_047_576),
    "o4-mini": ModelInfo(1.10, 4.40, 0.275, 200_000),
    "text-embedding-3-small": ModelInfo(0.02, 0.0, None, 8_191),
    "text-embedding-3-large": ModelInfo(0.13, 0.0, None, 8_191),
    "gemma-3-270m": ModelInfo(0.0, 0.0, None, 32_768),
}


class PriceTable:
    """Model name -> :class:`ModelInfo`; the names match exactly, or as a
    prefix up to a dated suffix (``gpt-4o-mini-2024-07-18`` finds ``gpt-4o-mini``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: dict[str, ModelInfo] = dict(_DEFAULTS)

    def set(
        self,
        model: str,
        *,
        input: float,
        output: float = 0.0,
        cached: float | None = None,
        context_window: int | None = None,
    ) -> ModelInfo:
        """Set (or replace) a model's price and window."""
        for name, value in (("input", input), ("output", output), ("cached", cached)):
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ValueError(f"price {name} of {model!r} must be a number >= 0, got {value!r}")
        info = ModelInfo(float(input), float(output), cached, context_window)
        with self._lock:
            self._table[model] = info
        return info

    def get(self, model: str) -> ModelInfo | None:
        """The model's info, or None when unknown."""
        table = self._table
        info = table.get(model)
        if info is not None:
            return info
        best = max((n for n in table if model.startswith(n + "-")), key=len, default=None)
        return None if best is None else table[best]

    def reset(self) -> None:
        """Back to the published defaults."""
        with self._lock:
            self._table = dict(_DEFAULTS)


prices = PriceTable()
"""The process's price table."""
