"""A support desk: a model reads each customer's ticket and drafts the reply,
with the features of ``tidal.models`` working together.

* ``Orders`` (one instance per customer) holds that customer's orders; its
  ``status`` flow is offered to the model as a tool, bound to the customer
  who wrote (``Orders.flow("status", instance=customer)``): the model can
  look up this customer's orders and no one else's, and each lookup is a
  child run in the runs log.
* ``Desk`` (one instance per customer) is the customer's memory: its
  ``handle`` serve op classifies the ticket into a pydantic ``Ticket``
  (``structured``), gathers the facts with the tool, and drafts the reply
  as the best of three by mean token logprob (``best_of``), reading the
  customer's notes; its ``handle`` update op then folds the conversation
  into those notes in the background. Feedback on a reply (``app.feedback``)
  is remembered too, and the next draft is told about it.

Every model call is a ``model_calls`` row of the run it was made in (the
tool's child run, the classification, each candidate, and the ``decision``
row saying which candidate won and why).

The model: ``TIDAL_SUPPORT_MODEL`` (any model URL, ``openai://gpt-4o-mini``)
or, by default, the deterministic stand-in, served in this process and
scripted (``STANDIN_SCRIPT``) so that the session below makes sense.

    python examples/support_desk.py
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
from typing import Any, Literal

from pydantic import BaseModel

import tidal
from tidal import Component, models

MODEL_ENV = "TIDAL_SUPPORT_MODEL"
DRAFTS = 3
"""Candidates per reply; the one with the highest mean token logprob is sent."""
MAX_NOTES = 20
"""The memory keeps the customer's latest notes only."""

SAMPLE_ORDERS: dict[str, dict[str, dict[str, str]]] = {
    "ana": {
        "A-1001": {"item": "trail shoes", "status": "in transit", "eta": "Thursday"},
        "A-1002": {"item": "rain jacket", "status": "delivered", "eta": "delivered Monday"},
    },
    "ben": {"B-2001": {"item": "espresso grinder", "status": "preparing", "eta": "next week"}},
}

SESSION: list[tuple[str, str, int | None]] = [
    ("ana", "Hi, where is my order A-1001? It was due last week and I need the shoes for a hike on Saturday.", 1),
    ("ana", "I was charged twice for order A-1002, please refund one of the payments.", -1),
    ("ben", "When will my grinder B-2001 ship?", None),
]
"""(customer, ticket, feedback score on the reply or None): what ``main`` plays."""


class OrderQuery(BaseModel):
    order_id: str
    """The order's id, such as A-1001."""


class Ticket(BaseModel):
    """What a ticket is about, as the model classifies it."""

    category: Literal["shipping", "billing", "product", "account", "other"]
    urgency: Literal["low", "normal", "high"]
    order_id: str | None = None
    summary: str


def _tool_rule(order_id: str) -> dict[str, Any]:
    return {
        "match": rf"^Find the facts.*\n.*{order_id}",
        "tool_calls": [{"name": "Orders_status", "arguments": {"order_id": order_id}}],
    }


STANDIN_SCRIPT: list[dict[str, Any]] = [
    {
        "match": r"^Classify.*\n.*A-1001",
        "json": {
            "category": "shipping",
            "urgency": "high",
            "order_id": "A-1001",
            "summary": "late trail shoes needed for Saturday",
        },
    },
    {
        "match": r"^Classify.*\n.*A-1002",
        "json": {"category": "billing", "urgency": "normal", "order_id": "A-1002", "summary": "charged twice"},
    },
    {
        "match": r"^Classify.*\n.*B-2001",
        "json": {"category": "shipping", "urgency": "low", "order_id": "B-2001", "summary": "asks when it ships"},
    },
    _tool_rule("A-1001"),
    _tool_rule("A-1002"),
    _tool_rule("B-2001"),
    {
        "match": r"^Write the reply.*\n.*A-1001",
        "answers": [
            "Your trail shoes (A-1001) are in transit and due Thursday, in time for Saturday's hike.",
            "Sorry for the wait! A-1001 is on its way and should arrive Thursday.",
            "Order A-1001 is in transit. Estimated delivery: Thursday.",
        ],
    },
    {
        "match": r"^Write the reply.*\n.*A-1002",
        "answers": [
            "Your rain jacket (A-1002) was delivered Monday; I have asked billing to refund the second charge.",
            "Sorry about the double charge on A-1002: a refund of the second payment is on its way.",
            "A-1002 shows as delivered. Billing will refund the duplicate payment within 5 days.",
        ],
    },
    {
        "match": r"^Write the reply.*\n.*B-2001",
        "answers": [
            "Your espresso grinder (B-2001) is being prepared and ships next week.",
            "B-2001 is being prepared; expect it to ship next week.",
            "Good news: your grinder ships next week.",
        ],
    },
]
"""What the stand-in answers to the session's tickets (anything else: made-up
words). Each rule looks at the ticket's line only, not at the memory below it."""


# --------------------------------------------------------------------------- the model

_model: models.Model | None = None
_model_lock = threading.Lock()
_servers = contextlib.ExitStack()


def choose_model() -> tuple[str, str]:
    """The model URL (or ``stand-in``) and why."""
    url = os.environ.get(MODEL_ENV, "").strip()
    if url and url.lower() not in ("stand-in", "standin"):
        return url, f"{MODEL_ENV}={url}"
    return "stand-in", f"{MODEL_ENV}={url}" if url else f"{MODEL_ENV} is not set"


def model() -> models.Model:
    """The desk's model, connected on first use (the stand-in served from this process)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                url = choose_model()[0]
                if url == "stand-in":
                    from tidal.models.http import build_app, serving
                    from tidal.models.standin import StandIn

                    url = _servers.enter_context(serving(build_app(StandIn(script=STANDIN_SCRIPT)))) + "#stand-in"
                _model = models.connect(url, timeout=120.0)
    return _model


def close_model() -> None:
    """Close the model and stop the stand-in this process serves."""
    global _model
    with _model_lock:
        if _model is not None:
            _model.close()
            _model = None
        _servers.close()


atexit.register(close_model)


# --------------------------------------------------------------------------- orders

Orders = Component("Orders")


@Orders.init_state
def orders_of(customer: str = "") -> dict[str, Any]:
    return {"orders": {k: dict(v) for k, v in SAMPLE_ORDERS.get(customer, {}).items()}}


@Orders.serve("status", props=OrderQuery)
def status(state: Any, props: Any) -> dict[str, str]:
    """The status and expected delivery of one of this customer's orders."""
    order_id = str(props["order_id"]).strip().upper()
    order = state["orders"].get(order_id)
    if order is None:
        return {"order_id": order_id, "error": "this customer has no such order"}
    return {"order_id": order_id, **order}


# --------------------------------------------------------------------------- the desk

Desk = Component("Desk")


@Desk.init_state
def new_memory(customer: str = "") -> dict[str, Any]:
    """A customer's memory: notes on past tickets and how the replies landed."""
    return {"customer": customer, "notes": [], "tickets": 0, "feedback": []}


def memory_text(state: Any) -> str:
    notes = state["notes"][-5:]
    liked = [f["note"] for f in state["feedback"][-3:]]
    lines = [f"- {n}" for n in notes] + [f"- on an earlier reply: {n}" for n in liked]
    return "\n".join(lines) or "- (first contact)"


@Desk.serve("handle")
def handle(state: Any, props: Any) -> dict[str, Any]:
    """Classify a ticket, look up the facts with the Orders tool, and draft
    the reply (the best of DRAFTS by mean token logprob)."""
    llm, customer, text = model(), state["customer"], str(props["ticket"])
    ticket = llm.structured(
        [
            {"role": "system", "content": "You triage customer support tickets. Reply with JSON only."},
            {"role": "user", "content": f"Classify this support ticket:\n{text}"},
        ],
        Ticket,
        temperature=0,
    )
    facts = llm.chat(
        [
            {"role": "system", "content": "You look up facts for a support agent. Use the tools; answer briefly."},
            {"role": "user", "content": f"Find the facts needed to answer this ticket:\n{text}"},
        ],
        tools=[Orders.flow("status", instance=customer)],
        max_steps=3,
        temperature=0,
    )
    draft = llm.best_of(
        [
            {"role": "system", "content": "You are a friendly, brief support agent. Never invent facts."},
            {
                "role": "user",
                "content": f"Write the reply to this {ticket.urgency}-urgency {ticket.category} ticket:\n{text}\n\n"
                f"Facts: {facts.text}\nWhat we know about the customer:\n{memory_text(state)}",
            },
        ],
        n=DRAFTS,
        by="logprob",
        temperature=0.9,
        max_tokens=120,
    )
    return {
        "ticket": ticket.model_dump(),
        "facts": facts.text,
        "reply": draft.text,
        "drafts": [c.text for c in draft.choices],
        "chosen_by": draft.note,
    }


@Desk.update("handle")
def remember(state: Any, props: Any) -> dict[str, Any]:
    """In the background: one note per conversation in the customer's memory."""
    ticket = props.serve_result["ticket"]
    note = f"{ticket['category']} ({ticket['urgency']}): {ticket['summary']}"
    if ticket.get("order_id"):
        note += f" [order {ticket['order_id']}]"
    return {"notes": (state["notes"] + [note])[-MAX_NOTES:], "tickets": state["tickets"] + 1}


# Feedback on any run arrives here; only the Desk's own is kept (by the customer it was for).
@Desk.update(on=tidal.Feedback, events=("insert",), instance=lambda fb: fb.instance or "-")
def remember_feedback(state: Any, props: Any) -> dict[str, Any] | None:
    """Feedback on a reply: remembered, so that the next draft hears of it."""
    fb = props["record"]
    if fb.component != Desk.name or fb.flow != "handle" or fb.score is None:
        return None
    raw = Desk.app.sql("SELECT result FROM runs WHERE id = :id", {"id": fb.run_id}).scalar()
    result = json.loads(raw) if isinstance(raw, str | bytes) else raw
    reply = result.get("reply", "") if isinstance(result, dict) else ""
    verdict = "liked" if fb.score > 0 else "disliked"
    note = f"{verdict} {reply[:60]!r}" + (f" ({fb.comment})" if fb.comment else "")
    return {"feedback": (state["feedback"] + [{"score": fb.score, "note": note}])[-MAX_NOTES:]}


def open_desk(app: tidal.App, customer: str) -> Any:
    """Run both components in ``app``; the customer's desk, orders made too."""
    Orders.bind(app)
    Desk.bind(app)
    Orders(customer, init_state_params={"customer": customer}).close()
    return Desk(customer, init_state_params={"customer": customer})


def main() -> None:
    """Play SESSION against the model, narrated."""
    app = tidal.App("support", store="memory://")
    url, why = choose_model()
    print(f"model: {url} ({why})\n")
    desks: dict[str, Any] = {}
    for customer, text, score in SESSION:
        desk = desks.get(customer) or desks.setdefault(customer, open_desk(app, customer))
        print(f"{customer}: {text}")
        out = desk.run("handle", props={"ticket": text})
        t = out["ticket"]
        print(f"  ticket:  {t['category']}, {t['urgency']} urgency, order {t['order_id']}: {t['summary']}")
        print(f"  facts:   {out['facts']}")
        scores = ", ".join(f"{c['score']:.2f}" for c in out["chosen_by"]["candidates"])
        print(f"  drafts:  {len(out['drafts'])}, mean logprobs {scores}; #{out['chosen_by']['winner']} won")
        print(f"  reply:   {out['reply']}")
        if score is not None:
            app.feedback(desk.last_run_id, score=score, comment="thanks!" if score > 0 else "when?")
            print(f"  feedback: {score:+d}")
        desk.flush_update()
        print()
    for customer, desk in desks.items():
        print(f"{customer}'s memory (tickets: {desk.read_state('tickets')}):")
        for note in desk.read_state("notes"):
            print(f"  - {note}")
        for fb in desk.read_state("feedback"):
            print(f"  - {fb['note']}")
    print("\nmodel calls:")
    rows = app.sql(
        "SELECT component, flow, operation, count(*) AS calls, sum(prompt_tokens + completion_tokens) AS tokens, "
        "sum(cost) AS cost FROM model_calls GROUP BY component, flow, operation ORDER BY component, flow, operation"
    )
    for r in rows:
        print(f"  {r['component']}.{r['flow'] or '-'} {r['operation']}: {r['calls']} calls, {r['tokens']} tokens")
    lookups = app.sql("SELECT count(*) FROM runs WHERE component = 'Orders' AND flow = 'status'").scalar()
    print(f"  (each tool call ran Orders.status as a child run of its own: {lookups} in the runs log)")
    for desk in desks.values():
        desk.close()
    app.close()
    close_model()


if __name__ == "__main__":
    main()
