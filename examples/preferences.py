"""Per-user preferences: one instance per user, whose state remembers what the
user liked and whose serve op recommends from it.

Each ``recommend`` call answers at once from the user's current profile; its
update op then folds the interaction into the profile in the background and
rewrites a short text summary of it, the kind of summary an LLM prompt would
carry. A purchase counts more than a view; older interests fade.

    python examples/preferences.py
"""

from __future__ import annotations

from typing import Any

from tidal import Component

CATALOG: dict[str, list[str]] = {
    "hiking": ["trail boots", "rain shell", "trekking poles", "headlamp"],
    "cooking": ["cast-iron pan", "chef's knife", "spice set", "dutch oven"],
    "reading": ["e-reader", "book light", "bookends", "reading chair"],
    "running": ["running shoes", "GPS watch", "running vest", "foam roller"],
    "photography": ["prime lens", "tripod", "camera bag", "ND filter"],
}

WEIGHTS = {"view": 1.0, "like": 2.0, "purchase": 4.0}

Preferences = Component("Preferences", params={"decay": 0.8, "top_k": 2})


@Preferences.init_state
def new_profile(name: str = "") -> dict[str, Any]:
    return {"name": name, "scores": {}, "owned": [], "summary": "no history yet", "events": 0}


@Preferences.serve("interact")
def recommend(state: Any, props: Any) -> list[str]:
    """Suggest items from the user's strongest interests plus the current one."""
    scores = dict(state["scores"])
    scores[props["topic"]] = scores.get(props["topic"], 0.0) + 0.5
    top = sorted(scores, key=lambda t: -scores[t])[: Preferences.params["top_k"]]
    owned = set(state["owned"])
    return [item for topic in top for item in CATALOG[topic] if item not in owned][:3]


@Preferences.update("interact")
def learn(state: Any, props: Any) -> dict[str, Any]:
    """Fold the interaction into the profile and rewrite its summary."""
    decay = Preferences.params["decay"]
    scores = {t: round(s * decay, 3) for t, s in state["scores"].items() if s * decay > 0.05}
    scores[props["topic"]] = round(scores.get(props["topic"], 0.0) + WEIGHTS[props["action"]], 3)
    changes: dict[str, Any] = {"scores": scores, "events": state["events"] + 1}
    if props["action"] == "purchase" and props.get("item"):
        changes["owned"] = [*state["owned"], props["item"]]
    changes["summary"] = summarize(state["name"], scores, changes.get("owned", state["owned"]))
    return changes


def summarize(name: str, scores: dict[str, float], owned: list[str]) -> str:
    """A one-line profile, strongest interest first."""
    if not scores:
        return "no history yet"
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    interests = ", ".join(f"{topic} ({score:.1f})" for topic, score in ranked[:3])
    bought = f"; owns {', '.join(owned[-2:])}" if owned else ""
    return f"{name or 'user'} is into {interests}{bought}"


SCRIPT: list[tuple[str, str, str, str]] = [
    # (user, action, topic, item)
    ("ana", "view", "hiking", ""),
    ("ben", "view", "cooking", ""),
    ("ana", "like", "hiking", ""),
    ("ana", "purchase", "hiking", "trail boots"),
    ("ben", "purchase", "cooking", "chef's knife"),
    ("ana", "view", "photography", ""),
    ("ben", "like", "reading", ""),
    ("ana", "purchase", "photography", "tripod"),
    ("ben", "view", "reading", ""),
    ("ana", "view", "hiking", ""),
]
