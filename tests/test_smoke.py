from __future__ import annotations

import tidal


def test_counter_round_trip(app: tidal.App) -> None:
    C = app.component("Counter")

    @C.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @C.serve("add")
    def total(state, props):  # type: ignore[no-untyped-def]
        return state["n"] + props["k"]

    @C.update("add")
    def add(state, props):  # type: ignore[no-untyped-def]
        return {"n": state["n"] + props["k"]}

    with C("c1") as c:
        assert c.run("add", props={"k": 2}, flush_update=True) == 2
        assert c.read_state("n") == 2
        assert c.run("add", props={"k": 3}) == 5
        c.flush_update()
        assert c.read_state("n") == 5
        assert c.get_version() == 3
