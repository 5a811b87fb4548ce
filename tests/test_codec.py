"""Stored bytes are authenticated: tampered or foreign values are refused
before anything is unpickled; props get one canonical cache key."""

from __future__ import annotations

import io
import pickle
import re
import sqlite3
import tokenize
from pathlib import Path
from typing import Any

import pytest
from conftest import make_app

import tidal
from tidal import StateIntegrityError, UpdateFailedError
from tidal.codec import Codec, key_context, props_key, state_context
from tidal.engine.executor import Executor

PACKAGE = Path(tidal.__file__).parent


class Booby:
    """Unpickling this creates ``path``: proof that bytes were unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def _booby_pickle(marker: Path) -> bytes:
    data = pickle.dumps(Booby(marker), protocol=5)
    # The payload is live: unpickling it really creates the file.
    control = marker.with_name(marker.name + ".control")
    pickle.loads(pickle.dumps(Booby(control), protocol=5))
    assert control.exists()
    control.unlink()
    return data


def vault(app: tidal.App) -> tidal.Component:
    C = app.component("Vault")

    @C.init_state
    def setup() -> dict[str, Any]:
        return {"secret": "s3cret", "n": 0}

    @C.serve("peek")
    def peek(state: Any, props: Any) -> Any:
        return state["secret"]

    @C.update("bump")
    def bump(state: Any, props: Any) -> dict[str, Any]:
        return {"n": state["n"] + 1, "secret": state["secret"]}

    return C


def _db(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


def _set_stored_value(db: Path, key: str, fn: Any) -> None:
    """Rewrite the stored bytes of one state key of Vault/v with ``fn(old)``."""
    con = sqlite3.connect(db)
    try:
        (old,) = con.execute(
            "SELECT value FROM tidal_state WHERE component = 'Vault' AND instance = 'v' AND key = ?", (key,)
        ).fetchone()
        con.execute(
            "UPDATE tidal_state SET value = ? WHERE component = 'Vault' AND instance = 'v' AND key = ?",
            (fn(bytes(old)), key),
        )
        con.commit()
    finally:
        con.close()


def _flip_last_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


def _create_vault(tmp_path: Path) -> None:
    with make_app("sqlite", tmp_path) as app:
        C = vault(app)
        with C("v") as v:
            assert v.run("peek") == "s3cret"


@pytest.mark.parametrize(
    "tamper",
    [
        "flip a byte of the pickle",
        "booby-trapped pickle with the old signature",
        "booby-trapped pickle signed with another key",
        "bare pickle",
    ],
)
def test_tampered_state_is_refused_and_never_unpickled(tmp_path: Path, tamper: str) -> None:
    _create_vault(tmp_path)
    marker = tmp_path / "pwned"
    evil = _booby_pickle(marker)
    forged = {
        "flip a byte of the pickle": _flip_last_byte,
        "booby-trapped pickle with the old signature": lambda old: old[:33] + evil,
        "booby-trapped pickle signed with another key": lambda old: Codec(b"k" * 32).dumps(Booby(marker)),
        "bare pickle": lambda old: evil,
    }[tamper]
    _set_stored_value(_db(tmp_path), "secret", forged)

    with make_app("sqlite", tmp_path) as app:
        C = vault(app)
        with C("v") as v:
            with pytest.raises(StateIntegrityError, match="'secret'"):
                v.read_state("secret")
            with pytest.raises(StateIntegrityError):
                v.run("peek")
            with pytest.raises(UpdateFailedError) as info:
                v.run("bump", flush_update=True)
            assert "StateIntegrityError" in info.value.failures[0].error
            # Keys that were not touched still read fine.
            assert v.read_state("n") == 0
    assert not marker.exists()


def test_tampered_op_payload_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _booby_pickle(marker)
    with make_app("sqlite", tmp_path) as app:
        C = vault(app)
        with C("v", disable_update_task=True) as v:
            v.run("bump")
        con = sqlite3.connect(_db(tmp_path))
        con.execute("UPDATE tidal_ops SET payload = ?", (b"\x01" + b"\x00" * 32 + evil,))
        con.commit()
        con.close()
        Executor(app).drain()
        (failure,) = app.store.failures("Vault", "v")
        assert "StateIntegrityError" in failure.error
        with C("v") as v:
            assert v.read_state("n") == 0
    assert not marker.exists()


def test_another_secret_key_cannot_read_state(tmp_path: Path) -> None:
    store = f"sqlite:///{_db(tmp_path)}"
    with tidal.App("one", store=store, secret_key="a" * 32) as writer, vault(writer)("v") as v:
        v.write_state({"n": 5})
    reader = tidal.App("two", store=store, secret_key="b" * 32)
    with reader, vault(reader)("v") as v, pytest.raises(StateIntegrityError, match="HMAC"):
        v.read_state("n")
    with tidal.App("three", store=store, secret_key="a" * 32) as same_key, vault(same_key)("v") as v:
        assert v.read_state("n") == 5


def test_secret_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = f"sqlite:///{_db(tmp_path)}"
    monkeypatch.setenv("TIDAL_SECRET_KEY", "e" * 32)
    with tidal.App("env", store=store, home=tmp_path / "h1") as writer, vault(writer)("v") as v:
        v.write_state({"n": 3})
    # Another home (so another generated key file), same environment key: readable.
    with tidal.App("env", store=store, home=tmp_path / "h2") as reader, vault(reader)("v") as v:
        assert v.read_state("n") == 3
    monkeypatch.delenv("TIDAL_SECRET_KEY")
    stranger = tidal.App("env", store=store, home=tmp_path / "h2")
    with stranger, vault(stranger)("v") as v, pytest.raises(StateIntegrityError):
        v.read_state("n")


def test_generated_key_is_kept_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = f"sqlite:///{_db(tmp_path)}"
    with tidal.App("k", store=store, home=home) as first, vault(first)("v") as v:
        v.write_state({"n": 8})
    key_file = home / "secret.key"
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o077 == 0
    with tidal.App("k", store=store, home=home) as second, vault(second)("v") as v:
        assert v.read_state("n") == 8


def test_codec_round_trip_and_refusals(tmp_path: Path) -> None:
    codec = Codec(b"x" * 32)
    value = {"a": [1, 2.5, "three"], "b": (None, True)}
    raw = codec.dumps(value)
    assert codec.loads(raw) == value
    marker = tmp_path / "pwned"
    for bad in (b"", b"\x01", _flip_last_byte(raw), b"\x02" + raw[1:], raw[:33] + _booby_pickle(marker)):
        with pytest.raises(StateIntegrityError):
            codec.loads(bad)
    with pytest.raises(StateIntegrityError):
        Codec(b"y" * 32).loads(raw)
    assert not marker.exists()


def test_short_secret_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Codec(b"short")


# -- canonical props keys ------------------------------------------------------------------


def test_props_key_ignores_key_order_at_every_level() -> None:
    a = {"x": 1, "y": {"p": [1, {"q": 2, "r": 3}], "s": "t"}}
    b = {"y": {"s": "t", "p": [1, {"r": 3, "q": 2}]}, "x": 1}
    assert props_key(a) == props_key(b)
    assert props_key(a) is not None


def test_props_key_tells_types_and_values_apart() -> None:
    values: list[Any] = [1, 1.0, True, "1", None, 0, False, "", [1], {"1": 1}, 2, 1.5]
    keys = [props_key({"v": v}) for v in values]
    assert None not in keys
    assert len(set(keys)) == len(values)
    assert props_key({"v": [1, 2]}) != props_key({"v": [2, 1]})
    assert props_key({"a": 1}) != props_key({"b": 1})


def test_props_key_is_none_for_values_without_a_canonical_form() -> None:
    assert props_key({"v": object()}) is None
    assert props_key({"v": {1: "int key"}}) is None
    assert props_key({"v": {1, 2}}) is None
    assert props_key({"v": [lambda: 0]}) is None


def test_props_key_handles_numpy() -> None:
    np = pytest.importorskip("numpy")
    assert props_key({"v": np.arange(3)}) == props_key({"v": np.arange(3)})
    assert props_key({"v": np.arange(3)}) != props_key({"v": np.arange(4)})


# -- no code execution on stored data -------------------------------------------------------


def _sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    return files


def test_no_eval_or_exec_in_the_package() -> None:
    offenders = []
    for path in _sources():
        text = path.read_text()
        for needle in ("eval(", "exec("):
            if needle in text:
                offenders.append(f"{path.relative_to(PACKAGE)}: {needle}")
        # Also catch spaced or aliased forms such as `eval (` or `builtins.exec`.
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME and tok.string in ("eval", "exec"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{tok.start[0]}: {tok.string}")
    assert offenders == []


def test_only_the_codec_unpickles() -> None:
    pattern = re.compile(r"\b(pickle|cloudpickle|dill|marshal)\.(loads?|Unpickler)\b|\bshelve\b")
    users = [str(p.relative_to(PACKAGE)) for p in _sources() if pattern.search(p.read_text())]
    assert users == ["codec.py"]


def test_a_value_bound_to_its_place_fails_anywhere_else() -> None:
    codec = Codec(b"x" * 32)
    here = state_context("Prefs", "A", "events")
    raw = codec.dumps(["a"], context=here)
    assert raw[:1] == b"\x02" and codec.loads(raw, context=here) == ["a"]
    for elsewhere in (
        state_context("Prefs", "B", "events"),  # B's value swapped into A, or back
        state_context("Prefs", "A", "items"),  # another key of the same instance
        state_context("Other", "A", "events"),
        state_context("Prefs", "Aevents"),  # parts are length-prefixed, never run together
    ):
        with pytest.raises(StateIntegrityError, match="HMAC"):
            codec.loads(raw, context=elsewhere)
    with pytest.raises(StateIntegrityError, match="without saying which"):
        codec.loads(raw)
    assert key_context(state_context("Prefs", "A"), "events") == here


def test_unbound_values_still_load_until_the_codec_refuses_them() -> None:
    here = state_context("Prefs", "A", "events")
    old = Codec(b"x" * 32).dumps(["stored before binding"])
    assert old[:1] == b"\x01"
    assert Codec(b"x" * 32).loads(old, context=here) == ["stored before binding"]
    with pytest.raises(StateIntegrityError, match="not bound"):
        Codec(b"x" * 32, accept_unbound=False).loads(old, context=here)
    # a bound value's bytes cannot pass as unbound ones either
    bound = Codec(b"x" * 32).dumps(1, context=here)
    with pytest.raises(StateIntegrityError):
        Codec(b"x" * 32).loads(b"\x01" + bound[1:], context=here)
    with pytest.raises(StateIntegrityError):
        Codec(b"x" * 32).verify(b"\x03" + bound[1:], context=here)


def test_a_stored_value_moved_to_another_instance_or_key_is_refused(tmp_path: Path) -> None:
    """Someone who can write the store copies B's signed value into A (or one
    key's value into another key): reads, serves and updates refuse it."""
    with make_app("sqlite", tmp_path) as app:
        C = vault(app)
        with C("a") as a, C("b") as b:
            b.write_state({"secret": "B's secret"})
            store = app.store
            b_raw = store.read_state("Vault", "b").changed["secret"]
            n_raw = store.read_state("Vault", "a").changed["n"]
            version = store.get_version("Vault", "a")
            store.commit("Vault", "a", {"secret": b_raw, "spare": n_raw}, expected_version=version)
            app.forget(C, "a")
            with pytest.raises(StateIntegrityError, match="moved from another instance or key"):
                a.read_state("secret")
            with pytest.raises(StateIntegrityError):
                a.read_state("spare")
            assert b.read_state("secret") == "B's secret"
            assert a.read_state("n") == 0
