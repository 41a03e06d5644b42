"""The room entity: a thin shell around babelroom.presence.

It holds the presence state (who is connected, hearing which language; the translator reads it to
know the language groups) and performs the actions the pure module returns: the newcomer's
`welcome`, and `presence.*` deltas sent once to the room group `{roomId}.all`. The entity is the
one place membership changes, so a delta goes out exactly when the room changes, in order.
Durable may replay a batch: deltas are upserts/removals by userId, so a repeat changes nothing.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import azure.durable_functions as df

from babelroom import presence, protocol
from babelroom.adapters.webpubsub import sync_service_client
from babelroom.broadcaster import room_group
from babelroom.presence import Joined, Left, Refused, Renamed, Welcome
from functions import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)
limits = presence.Limits()


@cache
def _client() -> Any:
    return sync_service_client(deps.settings())


def _perform(room_id: str, action: presence.Action) -> None:
    c = _client()
    json = "application/json"
    if isinstance(action, Welcome):
        c.send_to_connection(action.connection_id, protocol.welcome(action.me, room_id, action.participants),
                             content_type=json)
    elif isinstance(action, Joined):
        c.send_to_group(room_group(room_id), protocol.joined(action.participant), content_type=json)
    elif isinstance(action, Left):
        c.send_to_group(room_group(room_id), protocol.left(action.user_id), content_type=json)
    elif isinstance(action, Renamed):
        c.send_to_group(room_group(room_id), protocol.renamed(action.user_id, action.display_name),
                        content_type=json)
    elif isinstance(action, Refused):
        c.send_to_connection(action.connection_id, protocol.error(action.code, action.message), content_type=json)
        c.close_connection(action.connection_id, reason=action.code)


@bp.entity_trigger(context_name="context", entity_name="room")
def room(context: df.DurableEntityContext) -> None:
    try:
        data = context.get_input() or {}
    except TypeError:  # an operation sent without input
        data = {}
    result = presence.apply(context.get_state(presence.new_state), context.operation_name or "", data,
                            limits)
    context.set_state(result.state)  # membership holds even when a message cannot be sent
    for action in result.actions:
        try:
            _perform(context.entity_key, action)
        except Exception:
            log.exception("room %s: sending %s failed", context.entity_key, type(action).__name__)
    context.set_result({"actions": [type(a).__name__ for a in result.actions]})
