"""The app the HTTP tests serve: typed and Motion-style flows, every kind of
serve op, a relation trigger, and a state value with no JSON form."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

import tidal


class Purchase(tidal.Record):
    user: str = Field(min_length=1, max_length=100)
    item: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0)


class RecommendProps(BaseModel):
    event: str = Field(max_length=200)
    limit: int = Field(3, ge=1, le=10)


class CountProps(TypedDict):
    n: Annotated[int, Field(ge=0, le=50)]


class Blob:
    """A state value with no JSON form."""

    def __init__(self) -> None:
        self.data = b"x" * 100


def define(app: tidal.App, *, failing: bool = True) -> dict[str, tidal.Component]:
    """Define the sample components on ``app`` (``failing``: also a flow whose op raises)."""
    prefs = app.component("Prefs")

    @prefs.init_state
    def setup() -> dict[str, Any]:
        return {"events": [], "items": [], "blob": Blob()}

    @prefs.serve("recommend", props=RecommendProps)
    def recommend(state: Any, props: Any) -> dict[str, Any]:
        return {"event": props["event"], "seen": len(state["events"]), "limit": props["limit"]}

    @prefs.update("recommend")
    def remember(state: Any, props: Any) -> dict[str, Any]:
        return {"events": [*state["events"], props["event"]][-20:]}

    @prefs.update(on=Purchase, instance=lambda p: p.user)
    def bought(state: Any, props: Any) -> dict[str, Any]:
        return {"items": [*state["items"], props.record.item][-20:]}

    echo = app.component("Echo")

    @echo.serve("echo")
    def echo_op(state: Any, props: Any) -> Any:  # Motion style: any props
        return dict(props)

    @echo.serve("need")
    def need(state: Any, props: Any) -> Any:
        return props["q"]

    @echo.serve("aecho")
    async def aecho(state: Any, props: Any) -> Any:
        await asyncio.sleep(0)
        return {"async": True, **props}

    @echo.serve("count")
    def count(state: Any, props: CountProps) -> Any:
        yield from range(props["n"])

    @echo.serve("acount")
    async def acount(state: Any, props: Any) -> Any:
        for i in range(int(props.get("n", 3)) % 50):
            await asyncio.sleep(0)
            yield {"i": i}

    if failing:

        @echo.serve("boom")
        def boom(state: Any, props: Any) -> Any:
            raise RuntimeError("the op broke")

    return {"Prefs": prefs, "Echo": echo}
