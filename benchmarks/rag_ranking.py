"""Learned ranking from feedback, on CPython's help topics (standalone):

    python -m benchmarks.rag_ranking

40 questions, each with the help topic that answers it and a reworded
variant. The index (MiniLM, ``chunk_chars=1000``) is measured on the
reworded questions (hit@1, hit@5, MRR over the top 10, by document) before
any feedback and after 50, 100 and 200 feedback events given on the
original questions by a simulated user: for each question in turn, if the
right topic is in the top 10 it is marked relevant, and the best wrong hit
irrelevant (two events; one when the right topic is missing).
"""

from __future__ import annotations

import json
import pydoc_data.topics
import time
from typing import Any

from tidal import models, rag

from .common import scratch_dir
from .rag_index import Doc, open_app, text

QUESTIONS: list[tuple[str, str, str]] = [
    (
        "nonlocal",
        "How do I rebind a variable of the enclosing function?",
        "assign to an outer function's local name from a nested function",
    ),
    (
        "global",
        "How do I assign to a module-level variable inside a function?",
        "change a variable defined at the top of the module from within a def",
    ),
    (
        "assert",
        "How do I insert debugging checks that are removed with -O?",
        "sanity checks that vanish when optimisation is on",
    ),
    ("break", "How do I leave a loop early?", "stop iterating before the loop is finished"),
    ("continue", "How do I skip to the next iteration of a loop?", "jump to the following cycle of a for or while"),
    (
        "del",
        "How do I remove a name binding or a list item?",
        "unbind a variable or delete an element from a container",
    ),
    ("pass", "What statement does nothing, as a placeholder?", "an empty statement used where syntax needs one"),
    ("return", "How does a function give back a value to its caller?", "hand a result back from a def"),
    ("raise", "How do I throw an exception with a cause?", "signal an error and chain it to another one"),
    (
        "try",
        "How do I handle exceptions and run cleanup code with finally?",
        "catch errors and always execute some code afterwards",
    ),
    ("with", "How does the with statement use __enter__ and __exit__?", "automatic setup and teardown around a block"),
    (
        "yield",
        "How do generator functions produce values lazily?",
        "emit a sequence of values one at a time from a function",
    ),
    ("lambda", "How do I write an anonymous function in an expression?", "a small unnamed function inline"),
    ("import", "How does Python find and load a module?", "bring in code from another package"),
    ("for", "How do I iterate over the items of a sequence?", "loop through each element of a list"),
    ("while", "How do I repeat code as long as a condition is true?", "keep looping until a test becomes false"),
    ("if", "How do I choose between branches with elif and else?", "conditional execution of blocks"),
    ("class", "How do I define a new class with base classes?", "create my own object type that inherits"),
    (
        "function",
        "How are function definitions with default parameter values executed?",
        "def syntax, defaults evaluated once, annotations",
    ),
    ("async", "How do I write a coroutine with async def and async for?", "asynchronous functions and loops"),
    ("await", "How do I suspend a coroutine until an awaitable completes?", "pause until an async result is ready"),
    (
        "formatstrings",
        "What is the format specification mini-language for str.format?",
        "how to pad, align and set precision when formatting text",
    ),
    (
        "string-methods",
        "What methods do str objects have, like split and strip?",
        "functions to manipulate text values",
    ),
    ("typesmapping", "What operations do dictionaries support?", "methods of dict such as get, setdefault and update"),
    (
        "typesseq-mutable",
        "Which operations modify a mutable sequence in place?",
        "append, extend, insert and pop on lists",
    ),
    ("comparisons", "How do chained comparisons like a < b < c work?", "rules for ==, is, in and ordering operators"),
    ("booleans", "How do and, or and not evaluate their operands?", "short-circuit logic operators"),
    ("slicings", "How do I take a slice with start, stop and step?", "extract a sub-range of a sequence with colons"),
    (
        "calls",
        "How are positional and keyword arguments matched in a call?",
        "how passing arguments to a callable works",
    ),
    ("augassign", "What does x += 1 do?", "in-place operators like plus-equals"),
    (
        "exceptions",
        "What happens when an exception is raised and not handled?",
        "how errors propagate and terminate the program",
    ),
    (
        "execmodel",
        "How are names resolved in blocks and scopes?",
        "binding and lookup rules for identifiers in code blocks",
    ),
    (
        "context-managers",
        "What do __enter__ and __exit__ methods of a context manager do?",
        "the protocol behind with-statement objects",
    ),
    (
        "specialattrs",
        "What are attributes like __dict__, __class__ and __bases__?",
        "built-in dunder attributes of objects and types",
    ),
    ("truth", "Which values count as false in an if test?", "what is falsy: zero, empty containers, None"),
    (
        "integers",
        "How do I write hexadecimal, octal and binary integer literals?",
        "number literal syntax with 0x, 0o and 0b",
    ),
    (
        "floating",
        "How are floating point literals written with exponents?",
        "syntax for decimal fractions and scientific notation",
    ),
    ("power", "How does the ** operator bind with unary minus?", "exponentiation precedence"),
    ("shifting", "What do the << and >> operators do?", "moving bits left or right"),
    ("debugger", "How do I step through a program with pdb?", "interactive debugging, breakpoints and stepping"),
]

CHECKPOINTS = (0, 50, 100, 200)


def rank_of(hits: rag.Hits, doc_id: str) -> int | None:
    return next((i + 1 for i, h in enumerate(hits) if h.doc_id == doc_id), None)


def measure(ix: rag.Index) -> dict[str, float]:
    ranks = [rank_of(ix.search(reworded, k=10), topic) for topic, _, reworded in QUESTIONS]
    n = len(ranks)
    return {"hit@1": round(100 * sum(r == 1 for r in ranks) / n, 1),
            "hit@5": round(100 * sum(r is not None and r <= 5 for r in ranks) / n, 1),
            "mrr": round(sum(1 / r for r in ranks if r is not None) / n, 3)}  # fmt: skip


def run() -> dict[str, Any]:
    topics = pydoc_data.topics.topics
    embedder = models.embedder("local://minilm")
    with scratch_dir() as folder, open_app(folder) as app:
        app.insert_many([Doc(id=n, title=n, body=topics[n]) for n in sorted(topics)])
        t0 = time.perf_counter()
        ix = rag.Index(app, "docs", source=Doc, text=text, embedder=embedder, chunk_chars=1000)
        ix.flush(timeout=1200)
        indexed_s = time.perf_counter() - t0
        results: dict[str, Any] = {"questions": len(QUESTIONS), "chunks": ix.stats().chunks,
                                   "indexing_s": round(indexed_s, 1), "after": {0: measure(ix)}}  # fmt: skip
        events = 0
        i = 0
        for checkpoint in CHECKPOINTS[1:]:
            while events < checkpoint:
                topic, question, _ = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                hits = ix.search(question, k=10)
                if rank_of(hits, topic) is not None:
                    ix.feedback(hits, topic, relevant=True)
                    events += 1
                wrong = next((h.doc_id for h in hits if h.doc_id != topic), None)
                if wrong is not None and events < checkpoint:
                    ix.feedback(hits, wrong, relevant=False)
                    events += 1
            ix.flush_ranker(timeout=600)
            results["after"][checkpoint] = measure(ix)
            print(json.dumps({"events": checkpoint, **results["after"][checkpoint]}), flush=True)
        results["weights"] = dict(zip(ix.ranker()["features"], ix.ranker()["weights"], strict=True))
        return results


if __name__ == "__main__":
    print(json.dumps({"ranking": run()}, default=str), flush=True)
