"""functions/events.py called directly, with fakes: what each handler returns (the Web PubSub
return contract), what it signals, what it sends; the entities run for real from those signals."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from fakes import World

from babelroom.broadcaster import room_group
from functions import events

ROOM = "room0001"


def user_code(builder: Any) -> Any:
    """The handler under the durable-client middleware (which would build a client from JSON)."""
    fn = builder._function.get_user_function()
    return getattr(fn, "__wrapped__", fn)


on_connected = user_code(events.on_connected)
on_disconnected = user_code(events.on_disconnected)


def request(user: str, event: str = "", data: Any = None, conn: str = "c1", as_text: bool = False) -> Any:
    req = {"connectionContext": {"userId": user, "connectionId": conn, "eventName": event, "hub": "rooms"},
           "dataType": "json"}
    if data is not None:
        req["data"] = json.dumps(data) if as_text else data
    return json.dumps(req) if as_text else req


def user_id(member_id: str) -> str:
    return f"{ROOM}.{member_id}"


def frame(seq: int, level: int = 3000, ms: int = 200) -> str:
    return base64.b64encode(int(level).to_bytes(2, "little", signed=True) * (16 * ms)).decode()


async def test_connect_joins_the_language_group_and_the_room_group(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es", hear="en")
    out = await events.on_connect(json.dumps(request(user_id("ana00001"))))
    assert out == {"userId": user_id("ana00001"), "groups": [f"{ROOM}.en", room_group(ROOM)]}
    assert room_group(ROOM) == f"{ROOM}.all"


async def test_connect_refuses_a_stranger_and_survives_a_store_fault(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    out = await events.on_connect(request(user_id("nobody01")))
    assert out["code"] == "unauthorized" and "not a member" in out["errorMessage"]
    assert (await events.on_connect(request("not-a-user-id")))["code"] == "unauthorized"
    world.store.fail = OSError("blob down")
    out = await events.on_connect(request(user_id("ana00001")))
    assert out == {"code": "serverError", "errorMessage": "connect failed"}


async def test_connected_welcomes_the_newcomer_and_tells_the_room_once(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    world.store.add(ROOM, "bob00001", "Bob", "en", role="listener")
    world.store.add(ROOM, "pia00001", "Pia", "pt", role="listener")
    for who, conn in (("ana00001", "ca"), ("bob00001", "cb"), ("pia00001", "cp")):
        assert await on_connected(request(user_id(who), conn=conn), world.client) is None
        world.client.run()
    welcomes = world.service.of("welcome")
    assert [(t, len(m["participants"])) for _, t, m in welcomes] == [("ca", 1), ("cb", 2), ("cp", 3)]
    assert welcomes[2][2]["roomId"] == ROOM and welcomes[2][2]["displayName"] == "Pia"
    joined = world.service.of("presence.joined")
    # one delta per join, to the room group only: no per-language copies, no full lists
    assert [(g, m["participant"]["displayName"]) for _, g, m in joined] == [
        (f"{ROOM}.all", "Ana"), (f"{ROOM}.all", "Bob"), (f"{ROOM}.all", "Pia")]
    assert not [m for _, _, m in world.service.sent if "participants" in m and m["type"] != "welcome"]


async def test_a_second_tab_is_no_news_and_only_the_last_disconnect_leaves(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    await on_connected(request(user_id("ana00001"), conn="c1"), world.client)
    await on_connected(request(user_id("ana00001"), conn="c2"), world.client)
    world.client.run()
    assert len(world.service.of("welcome")) == 2 and len(world.service.of("presence.joined")) == 1
    await on_disconnected(request(user_id("ana00001"), conn="c1"), world.client)
    world.client.run()
    assert not world.service.of("presence.left")
    await on_disconnected(request(user_id("ana00001"), conn="c2"), world.client)
    world.client.run()
    assert [(g, m) for _, g, m in world.service.of("presence.left")] == [
        (f"{ROOM}.all", {"type": "presence.left", "userId": user_id("ana00001")})]
    assert world.client.of("flush") == [{"reason": "disconnected"}] * 2
    assert world.client.state("room", ROOM) == {"members": {}}


async def test_system_events_catch_every_fault(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    world.client.fail = RuntimeError("durable down")
    assert await on_connected(request(user_id("ana00001")), world.client) is None
    assert await on_disconnected(request(user_id("ana00001")), world.client) is None
    assert await on_disconnected(request(""), world.client) is None


async def test_an_audio_frame_is_signalled_as_turn_seq_and_the_clients_own_base64(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    pcm = frame(0)
    out = await events.handle_user_event(request(user_id("ana00001"), "audio", {"turn": "t-1", "seq": 0, "pcm": pcm,
                                                                               "rate": 16000}, as_text=True),
                                         world.client)
    assert out is None
    [(entity, key, op, data)] = world.client.signals
    assert (entity, key, op) == ("speaker", user_id("ana00001"), "frame")
    assert data == {"turn": "t-1", "seq": 0, "pcm": pcm} and data["pcm"] is not None
    assert not world.broadcaster.sent and not world.client.reads


async def test_turn_start_and_end_say_speaking_once_to_the_room_without_reading_it(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    me = user_id("ana00001")
    assert await events.handle_user_event(request(me, "turn.start", {"turn": "t1"}), world.client) is None
    assert await events.handle_user_event(request(me, "turn.end", {"turn": "t1", "frames": 0}), world.client) is None
    assert [(g, m["active"]) for _, g, m in world.broadcaster.of("speaking")] == [(f"{ROOM}.all", True),
                                                                                   (f"{ROOM}.all", False)]
    assert not world.client.reads
    start, end = world.client.of("start")[0], world.client.of("end")[0]
    assert start == {"room": ROOM, "userId": me, "name": "Ana", "language": "es", "turn": "t1", "whole": False}
    assert end["frames"] == 0 and end["language"] == "es"


async def test_refused_events_answer_user_error_and_tell_the_sender(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    world.store.add(ROOM, "bob00001", "Bob", "en", role="listener")
    cases = [
        (user_id("ana00001"), "audio", {"turn": "t1", "seq": 0, "pcm": "***"}, "bad_event"),
        (user_id("ana00001"), "audio", {"turn": "t1", "seq": 0, "pcm": frame(0, ms=300)}, "frame_too_large"),
        (user_id("ana00001"), "turn.start", {"turn": "../../etc"}, "bad_event"),
        (user_id("ana00001"), "turn.start", {"turn": "x" * 65}, "bad_event"),
        (user_id("ana00001"), "chat", {"id": "a b", "text": "hi"}, "bad_event"),
        (user_id("ana00001"), "dance", {}, "unknown_event"),
        (user_id("bob00001"), "audio", {"turn": "t1", "seq": 0, "pcm": frame(0)}, "forbidden"),
    ]
    for who, event, data, code in cases:
        world.broadcaster.sent.clear()
        out = await events.handle_user_event(request(who, event, data, conn="cx"), world.client)
        assert out is not None and out["code"] == "userError" and out["errorMessage"].startswith(code), (event, out)
        [(kind, target, msg)] = world.broadcaster.sent
        assert (kind, target, msg["type"], msg["code"], msg["event"]) == ("connection", "cx", "error", code, event)
    assert not world.client.signals


async def test_bad_requests_and_faults_follow_the_return_contract(world: World) -> None:
    world.store.add(ROOM, "ana00001", "Ana", "es")
    assert (await events.handle_user_event("{nope", world.client))["code"] == "userError"
    out = await events.handle_user_event(request(user_id("ana00001"), "chat", "{nope", as_text=False)
                                         | {"data": "{nope"}, world.client)
    assert out["code"] == "userError" and out["errorMessage"].startswith("bad_json")
    world.client.fail = RuntimeError("durable down")
    out = await events.handle_user_event(request(user_id("ana00001"), "turn.start", {"turn": "t1"}), world.client)
    assert out == {"code": "serverError", "errorMessage": "turn.start failed"}
    out = await events.handle_user_event(request(user_id("zed00001"), "turn.start", {"turn": "t1"}), world.client)
    assert out["code"] == "userError"


async def test_chat_is_handed_off_so_audio_events_never_wait_for_it(world: World) -> None:
    ana = world.store.add(ROOM, "ana00001", "Ana", "es")
    world.store.add(ROOM, "bob00001", "Bob", "en", role="listener")
    for who in ("ana00001", "bob00001"):
        await on_connected(request(user_id(who), conn=who), world.client)
    world.client.run()
    world.interpreter.gate = asyncio.Event()  # the translation hangs until opened
    me = ana.user_id
    chat = events.handle_user_event(request(me, "chat", {"id": "m1", "text": "hola"}), world.client)
    assert await asyncio.wait_for(chat, 5) is None  # awaiting the translation here would never return
    out = await events.handle_user_event(request(me, "audio", {"turn": "t1", "seq": 0, "pcm": frame(0)}),
                                         world.client)
    assert out is None and world.client.of("frame") and not world.interpreter.done
    await asyncio.sleep(0)
    world.interpreter.gate.set()
    await asyncio.gather(*events._chat_tasks)
    assert world.interpreter.chats == [(me, f"{me}:m1", "hola", {"es", "en"})]
    assert world.interpreter.done == [f"{me}:m1"]


async def test_a_resent_chat_id_is_one_line(world: World) -> None:
    ana = world.store.add(ROOM, "ana00001", "Ana", "es")
    for _ in range(3):
        assert await events.handle_user_event(request(ana.user_id, "chat", {"id": "same", "text": "hola"}),
                                              world.client) is None
    await events.handle_user_event(request(ana.user_id, "chat", {"id": "other", "text": "hola"}), world.client)
    await asyncio.gather(*events._chat_tasks)
    assert [c[1] for c in world.interpreter.chats] == [f"{ana.user_id}:same", f"{ana.user_id}:other"]


async def test_chat_is_rate_limited_per_connection_with_a_clear_message(world: World) -> None:
    ana = world.store.add(ROOM, "ana00001", "Ana", "es")
    outs = [await events.handle_user_event(request(ana.user_id, "chat", {"id": f"m{i}", "text": "hola"}, conn="c1"),
                                           world.client) for i in range(events.CHAT_BURST + 1)]
    assert outs[:-1] == [None] * events.CHAT_BURST
    assert outs[-1]["code"] == "userError" and outs[-1]["errorMessage"].startswith("rate_limited")
    [(kind, target, msg)] = world.broadcaster.of("error")
    assert (kind, target, msg["code"]) == ("connection", "c1", "rate_limited") and "retry in" in msg["message"]
    # another connection (another tab, another person) has its own allowance
    assert await events.handle_user_event(request(ana.user_id, "chat", {"id": "x", "text": "hola"}, conn="c2"),
                                          world.client) is None
    await asyncio.gather(*events._chat_tasks)
    assert len(world.interpreter.chats) == events.CHAT_BURST + 1


async def test_rename_is_stored_and_goes_to_the_room_as_a_delta(world: World) -> None:
    ana = world.store.add(ROOM, "ana00001", "Ana", "es")
    await on_connected(request(ana.user_id), world.client)
    world.client.run()
    out = await events.handle_user_event(request(ana.user_id, "rename", {"displayName": " Ana María "}), world.client)
    assert out is None
    world.client.run()
    assert world.store.members[(ROOM, "ana00001")].display_name == "Ana María"
    assert [(g, m) for _, g, m in world.service.of("presence.renamed")] == [
        (f"{ROOM}.all", {"type": "presence.renamed", "userId": ana.user_id, "displayName": "Ana María"})]
    assert world.client.state("room", ROOM)["members"][ana.user_id]["displayName"] == "Ana María"


async def test_a_speaker_is_paced_to_real_time_with_a_clear_message(world: World) -> None:
    """100 s of audio in one go is refused past the slack, not paid for as model time."""
    world.store.add(ROOM, "ana00001", "Ana", "es")
    frames = int(events.AUDIO_SLACK_S / 0.2) + 5  # 200 ms frames, sent at once
    outs = [await events.handle_user_event(request(user_id("ana00001"), "audio",
                                                   {"turn": "t1", "seq": i, "pcm": frame(i)}), world.client)
            for i in range(frames)]
    accepted = [o for o in outs if o is None]
    assert len(accepted) == round(events.AUDIO_SLACK_S / 0.2)  # the slack, then nothing more at once
    assert all(o["errorMessage"].startswith("rate_limited") for o in outs if o is not None)
    assert len([s for s in world.client.signals if s[2] == "frame"]) == len(accepted)
    assert "real time" in world.broadcaster.of("error")[0][2]["message"]
