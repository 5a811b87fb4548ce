"""Datasets: examples in the ``eval_examples`` relation (or rows of any
relation of the app), versioned by a hash of their rows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..app import App
from ..relations.record import SYSTEM_FIELDS, Record
from .records import Example


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=str)


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


@dataclass(frozen=True)
class Dataset:
    """A named list of examples and its ``version``: a hash of the rows
    (ids, inputs, references, tags), the same whatever their order; a
    changed, added or removed row changes it."""

    app: App
    name: str
    examples: tuple[Example, ...]

    @property
    def version(self) -> str:
        rows = sorted(_digest([e.id, e.input, e.reference, sorted(e.tags)]) for e in self.examples)
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.examples)

    def tagged(self, tag: str) -> Dataset:
        """The examples that carry ``tag`` (a dataset of its own, ``name#tag``)."""
        return Dataset(self.app, f"{self.name}#{tag}", tuple(e for e in self.examples if tag in e.tags))


def example_id(dataset: str, input: Any, reference: Any) -> str:
    """An example's id from its content, so loading the same rows again
    changes nothing (and runs over them pair up in :func:`evals.compare`)."""
    return "ex-" + _digest([dataset, input, reference])[:24]


def _example(name: str, row: Any) -> Example:
    if isinstance(row, Example):
        data = row.model_dump(exclude=set(SYSTEM_FIELDS))
        data["dataset"] = name
    elif isinstance(row, dict):
        unknown = set(row) - {"input", "reference", "tags", "id"}
        if "input" not in row or unknown:
            raise ValueError(
                f"a dataset row is a dict with 'input' and optionally 'reference', 'tags', 'id'; got keys {sorted(row)}"
            )
        data = {"dataset": name, **row}
    else:
        raise TypeError(f"a dataset row is an evals.Example or a dict, got {type(row).__name__}")
    data.setdefault("id", example_id(name, data["input"], data.get("reference")))
    return Example.model_validate(data)


def _from_record(
    name: str, record: Record, input: Callable[[Any], Any] | None, reference: Callable[[Any], Any] | None
) -> Example:
    value = input(record) if input else record.model_dump(mode="json", exclude=set(SYSTEM_FIELDS))
    return Example(id=record.id, dataset=name, input=value, reference=reference(record) if reference else None, tags=[])


def dataset(
    app: App,
    name: str,
    rows: Iterable[Any] | None = None,
    *,
    input: Callable[[Any], Any] | None = None,
    reference: Callable[[Any], Any] | None = None,
) -> Dataset:
    """The dataset ``name``.

    Without ``rows``: the examples stored under ``name``. With rows of
    ``evals.Example`` or dicts (``{"input": ..., "reference": ..., "tags": [...]}``):
    they are stored (upserted by an id made from their content) and become
    the dataset. With records of any other relation: they are the dataset
    as they are (nothing copied), ``input(record)`` giving the target's
    input (default: the record's fields) and ``reference(record)`` the
    reference::

        qa = evals.dataset(app, "qa", [{"input": {"question": "2+2?"}, "reference": "4"}])
        faq = evals.dataset(app, "faq", app.query(Faq), input=lambda f: {"question": f.q},
                            reference=lambda f: f.a)
    """
    if rows is None:
        stored = app.query(Example, {"dataset": name}, order_by="id")
        return Dataset(app, name, tuple(stored))
    items = list(rows)
    records = [r for r in items if isinstance(r, Record) and not isinstance(r, Example)]
    if records:
        if len(records) != len(items):
            raise TypeError("a dataset's rows are all records of one relation, or all examples / dicts")
        return Dataset(app, name, tuple(_from_record(name, r, input, reference) for r in records))
    examples = {e.id: e for e in (_example(name, r) for r in items)}
    stale = [e.id for e in app.query(Example, {"dataset": name}) if e.id not in examples]
    if stale:
        app.delete_many(Example, stale)
    stored = app.upsert_many(list(examples.values())) if examples else []
    return Dataset(app, name, tuple(sorted(stored, key=lambda e: e.id)))
