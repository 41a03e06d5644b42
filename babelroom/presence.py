"""Room presence as a pure state machine: who is connected, hearing which language.

The room entity holds the state (plain JSON) and performs the actions; the rules live here, so they
are tested without a host and applied in one place. State in, (state, actions) out: a member
joins with their first connection and leaves with their last (a second tab is no news to the
room), and the newcomer alone gets the whole list (`Welcome`); everyone else gets deltas.
The translator reads the same state (`hear_languages`) to know which language groups exist.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from . import rooms

PARTICIPANT_KEYS = ("userId", "displayName", "language", "hear", "role")
# The caps the room API enforces at join; the entity re-checks them at connect (a second line of
# defence against joins racing past the stored-member check).
MAX_MEMBERS = rooms.MAX_MEMBERS
MAX_LANGUAGES = rooms.MAX_TARGET_LANGUAGES


@dataclass(frozen=True)
class Limits:
    max_members: int = MAX_MEMBERS
    max_languages: int = MAX_LANGUAGES


@dataclass(frozen=True)
class Welcome:
    """The full participant list, to the new connection only."""

    connection_id: str
    me: dict[str, Any]
    participants: list[dict[str, Any]]


@dataclass(frozen=True)
class Joined:
    participant: dict[str, Any]


@dataclass(frozen=True)
class Left:
    user_id: str


@dataclass(frozen=True)
class Renamed:
    user_id: str
    display_name: str


@dataclass(frozen=True)
class Refused:
    """A cap was reached: the connection is told why and closed; the room does not change."""

    connection_id: str
    code: str
    message: str


Action = Welcome | Joined | Left | Renamed | Refused


@dataclass
class Result:
    state: dict[str, Any]
    actions: list[Action] = field(default_factory=list)


def new_state() -> dict[str, Any]:
    return {"members": {}}


def participant(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in PARTICIPANT_KEYS}


def participants(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Connected members, in the order they joined."""
    return [participant(m) for m in (state or {}).get("members", {}).values() if m.get("connections")]


def hear_languages(state: dict[str, Any] | None) -> set[str]:
    """Languages that connected members listen in: one translation per language, never per person."""
    return {m["hear"] for m in (state or {}).get("members", {}).values() if m.get("connections")}


def connect(state: dict[str, Any], who: dict[str, Any], connection_id: str,
            limits: Limits | None = None) -> Result:
    """A connection of `who` (a Participant) opened. The first one makes them join."""
    lim = limits or Limits()
    state = copy.deepcopy(state)
    members = state.setdefault("members", {})
    me = participant(who)
    user_id = me["userId"]
    entry = members.get(user_id)
    out = Result(state)
    if entry is None:
        if len(members) >= lim.max_members:
            out.actions.append(Refused(connection_id, "room_full",
                                       f"this room is full ({lim.max_members} people)"))
            return out
        if me["hear"] not in hear_languages(state) and len(hear_languages(state)) >= lim.max_languages:
            out.actions.append(Refused(connection_id, "room_full",
                                       f"this room already interprets into {lim.max_languages} languages"))
            return out
        members[user_id] = me | {"connections": [connection_id]}
        out.actions += [Welcome(connection_id, me, participants(state)), Joined(me)]
        return out
    if entry["displayName"] != me["displayName"]:
        out.actions.append(Renamed(user_id, me["displayName"]))
    entry.update(me)
    entry["connections"] = sorted(set(entry["connections"]) | {connection_id})
    out.actions.insert(0, Welcome(connection_id, me, participants(state)))
    return out


def disconnect(state: dict[str, Any], user_id: str, connection_id: str) -> Result:
    """A connection closed; with the member's last one gone, they left."""
    state = copy.deepcopy(state)
    out = Result(state)
    entry = state.get("members", {}).get(user_id)
    if entry is None or connection_id not in entry["connections"]:
        return out  # a replayed or unknown disconnect changes nothing
    entry["connections"] = [c for c in entry["connections"] if c != connection_id]
    if not entry["connections"]:
        del state["members"][user_id]
        out.actions.append(Left(user_id))
    return out


def rename(state: dict[str, Any], user_id: str, display_name: str) -> Result:
    state = copy.deepcopy(state)
    out = Result(state)
    entry = state.get("members", {}).get(user_id)
    if entry is not None and entry["displayName"] != display_name:
        entry["displayName"] = display_name
        out.actions.append(Renamed(user_id, display_name))
    return out


def apply(state: dict[str, Any], operation: str, data: dict[str, Any], limits: Limits | None = None) -> Result:
    """One room entity operation: `connected`, `disconnected`, `rename` or `get`."""
    if operation == "connected":
        return connect(state, data, data["connectionId"], limits)
    if operation == "disconnected":
        return disconnect(state, data.get("userId") or "", data.get("connectionId") or "")
    if operation == "rename":
        return rename(state, data["userId"], data["displayName"])
    if operation == "get":
        return Result(state)
    raise ValueError(f"unknown room operation {operation!r}")
