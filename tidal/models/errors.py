"""The errors of :mod:`tidal.models`, all under :class:`ModelError`.

::

    TidalError
    └── ModelError
        ├── ModelConfigError (ConfigError)   unknown URL scheme, missing API key
        ├── ModelInputError (ValueError)     a bad sampling value, a prompt over
        │                                    the context window: nothing was sent
        ├── ModelCallError                   the endpoint failed (after retries)
        │   └── ModelStreamError             a stream ended before it finished
        ├── StructuredOutputError            no valid structured answer in the
        │                                    retries allowed (has the last output)
        └── ToolLoopError                    the tool loop hit its step or budget limit
"""

from __future__ import annotations

from ..exceptions import ConfigError, TidalError


class ModelError(TidalError):
    """Base class of the model client's errors."""


class ModelConfigError(ModelError, ConfigError):
    """A model URL, key or setting that cannot work (raised at connect time)."""


class ModelInputError(ModelError, ValueError):
    """A call refused before anything was sent: names the setting at fault."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class ModelCallError(ModelError):
    """The endpoint failed the call, after ``retries`` retries.

    ``status`` is the HTTP status (None for a timeout or a lost connection)."""

    def __init__(self, message: str, *, status: int | None = None, retries: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retries = retries


class ModelStreamError(ModelCallError):
    """A streamed answer broke off before its end; ``text`` is what came."""

    def __init__(self, message: str, *, text: str, retries: int = 0) -> None:
        super().__init__(message, retries=retries)
        self.text = text


class StructuredOutputError(ModelError):
    """The model gave no answer that fits the schema within the attempts
    allowed; ``raw`` is its last output and ``errors`` what was wrong."""

    def __init__(self, message: str, *, raw: str, errors: str, attempts: int) -> None:
        super().__init__(message)
        self.raw = raw
        self.errors = errors
        self.attempts = attempts


class ToolLoopError(ModelError):
    """A tool-calling loop stopped at its ``limit`` (``max_steps`` or
    ``budget``) before the model gave a final answer."""

    def __init__(self, message: str, *, limit: str, steps: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.steps = steps
