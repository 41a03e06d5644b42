"""Web PubSub event handlers: connect, connected, user events, disconnected.

Each handler validates what the socket sent (babelroom.protocol), then hands audio to the speaker
entity and membership to the room entity by client signal: cheap, ordered per sender, and the
socket's event returns at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import azure.durable_functions as df

from babelroom import protocol
from babelroom.broadcaster import group_name
from babelroom.interpreting import Speaker, hear_languages, participants
from babelroom.protocol import ProtocolError
from babelroom.rooms import Member, RoomError

from . import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)
HUB = "%WEBPUBSUB_HUB%"


def _request(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else json.loads(raw)


def _refuse(code: str, message: str) -> dict[str, str]:
    """The extension accepts a JSON object (or WebPubSubEventResponse) as a reply; a `str` is
    logged as "Invalid response type" and answered with an empty 200, so replies are dicts."""
    return {"code": code, "errorMessage": message}


async def _member(ctx: dict[str, Any]) -> Member:
    _, member = await deps.rooms().member_for(ctx.get("userId") or "")
    return member


@bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName="connect",
                    eventType="system")
async def on_connect(request: str) -> dict[str, Any]:
    """Only members of an open room get in, and only into the group of the language they hear."""
    try:
        ctx = _request(request).get("connectionContext", {})
        member = await _member(ctx)
    except RoomError as e:
        return _refuse("unauthorized", f"{e.code}: {e}")
    except Exception:  # an unhandled exception leaves the service's webhook waiting
        log.exception("connect failed")
        return _refuse("serverError", "connect failed")
    return {"userId": member.user_id, "groups": [group_name(member.room_id, member.hear)]}


@bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName="connected",
                    eventType="system")
@bp.durable_client_input(client_name="client")
async def on_connected(request: str, client: df.DurableOrchestrationClient) -> None:
    ctx = _request(request).get("connectionContext", {})
    member = await _member(ctx)
    me = member.participant()
    room = df.EntityId("room", member.room_id)
    await client.signal_entity(room, "connected", me | {"connectionId": ctx["connectionId"]})
    state = (await client.read_entity_state(room)).entity_state or {}
    everyone = [p for p in participants(state) if p["userId"] != member.user_id] + [me]
    b = deps.broadcaster()
    await b.to_connection(ctx["connectionId"], {"type": "welcome", **me, "roomId": member.room_id,
                                                "participants": everyone})
    for lang in hear_languages(state) | {member.hear}:
        await b.to_group(group_name(member.room_id, lang), protocol.presence(everyone))
    # history (translator helper): recent captions for a late joiner or a client back after > 30 s
    await deps.history().send_to(b, ctx["connectionId"], member.room_id, member.hear)


@bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName="disconnected",
                    eventType="system")
@bp.durable_client_input(client_name="client")
async def on_disconnected(request: str, client: df.DurableOrchestrationClient) -> None:
    """A dropped speaker never leaves a turn open: the entity closes it with what arrived."""
    ctx = _request(request).get("connectionContext", {})
    user_id = ctx.get("userId") or ""
    room_id = user_id.partition(".")[0]
    if not room_id:
        return
    room = df.EntityId("room", room_id)
    await client.signal_entity(df.EntityId("speaker", user_id), "flush", {"reason": "disconnected"})
    await client.signal_entity(room, "disconnected", {"userId": user_id, "connectionId": ctx.get("connectionId")})
    state = (await client.read_entity_state(room)).entity_state or {}
    members = state.get("members", {})
    if user_id in members:
        conns = [c for c in members[user_id].get("connections", []) if c != ctx.get("connectionId")]
        members[user_id]["connections"] = conns
    everyone = participants(state)
    for lang in hear_languages(state):
        await deps.broadcaster().to_group(group_name(room_id, lang), protocol.presence(everyone))


async def handle_user_event(request: str, client: df.DurableOrchestrationClient) -> dict[str, str] | None:
    """turn.start / audio / turn.end / silence go to the speaker entity; chat and rename fan out.

    Success is `None` (no reply): the extension turns an empty `{}` into a 500."""
    try:
        req = _request(request)
    except ValueError:
        return _refuse("userError", "bad_request: the event is not JSON")
    ctx = req.get("connectionContext", {})
    event = ctx.get("eventName", "")
    try:
        member = await _member(ctx)
        data = req.get("data")
        if isinstance(data, str) and req.get("dataType", "json") == "json":
            try:
                data = json.loads(data)
            except ValueError:
                raise ProtocolError("bad_json", f"{event} data is not JSON") from None
        ev = protocol.parse_event(event, data, member)
        await _dispatch(client, member, event, ev)
        return None
    except (ProtocolError, RoomError) as e:
        code = e.code
        message = e.message if isinstance(e, ProtocolError) else str(e)
        if ctx.get("connectionId"):
            await deps.broadcaster().to_connection(ctx["connectionId"], protocol.error(code, message, event))
        return _refuse("userError", f"{code}: {message}")
    except Exception:
        log.exception("user event %s failed", event)
        return _refuse("serverError", f"{event} failed")


def _register_user_event(event: str) -> None:
    """One function per event name: the extension routes user events by exact eventName."""

    async def handler(request: str, client: df.DurableOrchestrationClient) -> dict[str, str] | None:
        return await handle_user_event(request, client)

    handler.__name__ = handler.__qualname__ = "on_" + event.replace(".", "_")
    bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName=event,
                       eventType="user")(bp.durable_client_input(client_name="client")(handler))


for _event in sorted(protocol.EVENTS):
    _register_user_event(_event)


async def _dispatch(client: df.DurableOrchestrationClient, member: Member, event: str, ev: dict[str, Any]) -> None:
    speaker = df.EntityId("speaker", member.user_id)
    who = {"room": member.room_id, "userId": member.user_id, "name": member.display_name,
           "language": member.language}
    if event == "audio":
        await client.signal_entity(speaker, "frame", who | {"turn": ev["turn"], "seq": ev["seq"],
                                                             "pcm": protocol.b64(ev["pcm"])})
        return
    if event in ("turn.start", "turn.end", "silence"):
        op = {"turn.start": "start", "turn.end": "end", "silence": "silence"}[event]
        await client.signal_entity(speaker, op, who | ev)
        if event != "silence":
            await _to_room(client, member.room_id, protocol.speaking(member.user_id, ev["turn"],
                                                                     event == "turn.start"))
        return
    state = (await client.read_entity_state(df.EntityId("room", member.room_id))).entity_state or {}
    if event == "chat":
        spk = Speaker(member.room_id, member.user_id, member.display_name, member.language)
        languages = hear_languages(state) | {member.hear}
        await deps.interpreter().chat(spk, uuid.uuid4().hex[:12], ev["text"], languages)
        return
    await client.signal_entity(df.EntityId("room", member.room_id), "rename",
                               {"userId": member.user_id, "displayName": ev["displayName"]})
    renamed = await deps.rooms().rename(member, ev["displayName"])
    everyone = [renamed.participant() if p["userId"] == member.user_id else p for p in participants(state)]
    await _to_room(client, member.room_id, protocol.presence(everyone), state)


async def _to_room(client: df.DurableOrchestrationClient, room_id: str, msg: dict[str, Any],
                   state: dict[str, Any] | None = None) -> None:
    if state is None:
        state = (await client.read_entity_state(df.EntityId("room", room_id))).entity_state or {}
    for lang in hear_languages(state):
        await deps.broadcaster().to_group(group_name(room_id, lang), msg)
