"""Web PubSub event handlers: connect, connected, user events, disconnected.

Each handler validates what the socket sent (babelroom.protocol), then hands audio to the speaker
entity and membership to the room entity by client signal: cheap, ordered per sender, and the
socket's event returns at once. The room entity sends the welcome and the presence deltas;
`speaking` goes from here to the room group `{roomId}.all`, once, without reading the room.
Chat is handed off, so its translation never holds back the speaker's next audio event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from typing import Any

import azure.durable_functions as df

from babelroom import presence, protocol
from babelroom.broadcaster import group_name, room_group
from babelroom.interpreting import Speaker
from babelroom.protocol import Audio, Chat, ClientEvent, ProtocolError, Rename, Silence, TurnEnd, TurnStart
from babelroom.ratelimit import RateLimiter
from babelroom.rooms import Member, RoomError
from babelroom.segmenter import BYTES_PER_SECOND

from . import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)
HUB = "%WEBPUBSUB_HUB%"
CHAT_RATE, CHAT_BURST = 1.0, 5  # per connection: a person types, a script floods
chat_limit = RateLimiter(CHAT_RATE, CHAT_BURST)
# A speaker's audio: at most 1.2 s per second (real time plus jitter), with 10 s of slack for a
# reconnect that resends what was queued. Every second accepted is model time, so a script that
# uploads 100 s in one go is refused, not paid for.
AUDIO_PACE, AUDIO_SLACK_S = 1.2, 10
audio_pace = RateLimiter(AUDIO_PACE, AUDIO_SLACK_S)
SEEN_CHATS = 10_000
_seen_chats: OrderedDict[str, None] = OrderedDict()  # recent "{userId}:{chatId}": a resend is a no-op
_chat_tasks: set[asyncio.Task[None]] = set()  # handed-off chats, referenced until done


def _request(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else json.loads(raw)


def _refuse(code: str, message: str) -> dict[str, str]:
    """The extension accepts a JSON object (or WebPubSubEventResponse) as a reply; a `str` is
    logged as "Invalid response type" and answered with an empty 200, so replies are dicts."""
    return {"code": code, "errorMessage": message}


async def _member(ctx: dict[str, Any], fresh: bool = False) -> Member:
    _, member = await deps.rooms().member_for(ctx.get("userId") or "", fresh=fresh)
    return member


@bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName="connect",
                    eventType="system")
async def on_connect(request: str) -> dict[str, Any]:
    """Only members of an open room get in: into the group of the language they hear, and the
    room group where presence and speaking go."""
    try:
        ctx = _request(request).get("connectionContext", {})
        member = await _member(ctx, fresh=True)  # removed or closed via another worker: not let back in
    except RoomError as e:
        return _refuse("unauthorized", f"{e.code}: {e}")
    except Exception:  # an unhandled exception leaves the service's webhook waiting
        log.exception("connect failed")
        return _refuse("serverError", "connect failed")
    return {"userId": member.user_id,
            "groups": [group_name(member.room_id, member.hear), room_group(member.room_id)]}


@bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName="connected",
                    eventType="system")
@bp.durable_client_input(client_name="client")
async def on_connected(request: str, client: df.DurableOrchestrationClient) -> None:
    """The room entity decides what this connection means (join, second tab, room full) and
    sends the welcome and the `presence.joined` delta."""
    try:
        ctx = _request(request).get("connectionContext", {})
        member = await _member(ctx)
        await client.signal_entity(df.EntityId("room", member.room_id), "connected",
                                   member.participant() | {"connectionId": ctx["connectionId"]})
        # recent captions for a late joiner or a client back after a long recovery window
        await deps.history().send_to(deps.broadcaster(), ctx["connectionId"], member.room_id, member.hear)
    except Exception:
        log.exception("connected failed")


@bp.generic_trigger(arg_name="request", type="webPubSubTrigger", hub=HUB, eventName="disconnected",
                    eventType="system")
@bp.durable_client_input(client_name="client")
async def on_disconnected(request: str, client: df.DurableOrchestrationClient) -> None:
    """A dropped speaker never leaves a turn open: the entity closes it with what arrived."""
    try:
        ctx = _request(request).get("connectionContext", {})
        user_id = ctx.get("userId") or ""
        room_id = user_id.partition(".")[0]
        if not room_id:
            return
        await client.signal_entity(df.EntityId("speaker", user_id), "flush", {"reason": "disconnected"})
        await client.signal_entity(df.EntityId("room", room_id), "disconnected",
                                   {"userId": user_id, "connectionId": ctx.get("connectionId")})
    except Exception:
        log.exception("disconnected failed")


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
        await _dispatch(client, member, ctx.get("connectionId") or "", ev)
        return None
    except (ProtocolError, RoomError) as e:
        code = e.code
        message = e.message if isinstance(e, ProtocolError) else str(e)
        try:
            if ctx.get("connectionId"):
                await deps.broadcaster().to_connection(ctx["connectionId"], protocol.error(code, message, event))
        except Exception:
            log.exception("could not tell %s about %s", ctx.get("connectionId"), code)
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


async def _dispatch(client: df.DurableOrchestrationClient, member: Member, connection_id: str,
                    ev: ClientEvent) -> None:
    speaker = df.EntityId("speaker", member.user_id)
    if isinstance(ev, Audio):  # the hot path: one signal, {turn, seq, pcm} and nothing else
        wait = audio_pace.allow(member.user_id, len(ev.pcm) / BYTES_PER_SECOND)
        if wait is not None:
            raise ProtocolError("rate_limited", f"audio faster than {AUDIO_PACE:g}x real time; "
                                                f"this frame was dropped (retry in {wait:.1f} s)")
        await client.signal_entity(speaker, "frame", ev.signal())
        return
    who = {"room": member.room_id, "userId": member.user_id, "name": member.display_name,
           "language": member.language}
    if isinstance(ev, Silence):
        await client.signal_entity(speaker, "silence", {"turn": ev.turn, "seq": ev.seq})
    elif isinstance(ev, TurnStart):
        await client.signal_entity(speaker, "start", who | {"turn": ev.turn, "whole": ev.whole})
        await deps.broadcaster().to_group(room_group(member.room_id), protocol.speaking(member.user_id, ev.turn, True))
    elif isinstance(ev, TurnEnd):
        await client.signal_entity(speaker, "end", who | {"turn": ev.turn, "frames": ev.frames})
        await deps.broadcaster().to_group(room_group(member.room_id), protocol.speaking(member.user_id, ev.turn, False))
    elif isinstance(ev, Chat):
        _chat(client, member, connection_id, ev)
    elif isinstance(ev, Rename):
        await deps.rooms().rename(member, ev.display_name)
        await client.signal_entity(df.EntityId("room", member.room_id), "rename",
                                   {"userId": member.user_id, "displayName": ev.display_name})


def _chat(client: df.DurableOrchestrationClient, member: Member, connection_id: str, ev: Chat) -> None:
    """Checks the line, then hands its translation to a task: the event returns at once."""
    if ev.id is not None:
        key = f"{member.user_id}:{ev.id}"
        if key in _seen_chats:
            log.info("chat %s already taken; a resend is not a second line", key)
            return
        _seen_chats[key] = None
        while len(_seen_chats) > SEEN_CHATS:
            _seen_chats.popitem(last=False)
    wait = chat_limit.allow(connection_id or member.user_id)
    if wait is not None:
        if ev.id is not None:
            _seen_chats.pop(f"{member.user_id}:{ev.id}", None)  # refused, so a later resend may pass
        raise ProtocolError("rate_limited", f"too many chat lines: at most {CHAT_BURST} in a row and "
                                            f"{CHAT_RATE:g} per second; retry in {wait:.1f} s")
    message_id = f"{member.user_id}:{ev.id or uuid.uuid4().hex[:12]}"
    task = asyncio.create_task(_translate_chat(client, member, message_id, ev.text))
    _chat_tasks.add(task)
    task.add_done_callback(_chat_tasks.discard)


async def _translate_chat(client: df.DurableOrchestrationClient, member: Member, message_id: str,
                          text: str) -> None:
    try:
        state = (await client.read_entity_state(df.EntityId("room", member.room_id))).entity_state
        spk = Speaker(member.room_id, member.user_id, member.display_name, member.language)
        await deps.interpreter().chat(spk, message_id, text, presence.hear_languages(state) | {member.hear})
    except Exception:
        log.exception("chat %s failed", message_id)
