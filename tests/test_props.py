from __future__ import annotations

import pickle

import pytest

from tidal import Properties


def test_props_read_as_attributes_and_keys() -> None:
    props = Properties(record="r", event="insert")
    assert props.record == props["record"] == "r"
    with pytest.raises(AttributeError, match="have: \\['event', 'record'\\]"):
        _ = props.missing
    with pytest.raises(KeyError, match="not found in props"):
        _ = props["missing"]


def test_props_survive_pickling_with_serve_result() -> None:
    props = Properties(k=1)
    props._serve_result = [1, 2]
    again = pickle.loads(pickle.dumps(props))
    assert again == {"k": 1}
    assert again.serve_result == [1, 2]
    assert again.k == 1
