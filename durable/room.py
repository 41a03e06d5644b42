"""The room entity: who is connected, with which languages. Translators read it to know which
language groups exist, so a segment is translated once per language present."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.entity_trigger(context_name="context", entity_name="room")
def room(context: df.DurableEntityContext) -> None:
    state: dict[str, Any] = context.get_state(lambda: {"members": {}})
    try:
        data = context.get_input() or {}
    except TypeError:  # an operation sent without input
        data = {}
    members = state["members"]
    op = context.operation_name
    if op == "connected":
        user_id = data["userId"]
        conns = members.get(user_id, {}).get("connections", [])
        entry = {k: data[k] for k in ("userId", "displayName", "language", "hear", "role")}
        members[user_id] = entry | {"connections": sorted(set(conns) | {data["connectionId"]})}
    elif op == "disconnected":
        entry = members.get(data.get("userId"))
        if entry:
            entry["connections"] = [c for c in entry["connections"] if c != data.get("connectionId")]
            if not entry["connections"]:
                del members[data["userId"]]
    elif op == "rename":
        if data.get("userId") in members:
            members[data["userId"]]["displayName"] = data["displayName"]
    elif op != "get":
        raise ValueError(f"unknown room operation {op!r}")
    context.set_state(state)
    context.set_result(state)
