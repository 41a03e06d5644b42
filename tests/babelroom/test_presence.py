"""The room presence rules (babelroom/presence.py): state in, state and actions out."""

from __future__ import annotations

from babelroom.presence import (
    Joined,
    Left,
    Limits,
    Refused,
    Renamed,
    Welcome,
    apply,
    connect,
    disconnect,
    hear_languages,
    new_state,
    participants,
    rename,
)


def who(name: str, hear: str = "en", language: str = "en", role: str = "listener") -> dict:
    return {"userId": f"r1.{name.lower()}", "displayName": name, "language": language, "hear": hear, "role": role}


def test_a_first_connection_joins_and_the_newcomer_alone_gets_the_list() -> None:
    r = connect(new_state(), who("Ana", "es", "es", "speaker"), "c1")
    r = connect(r.state, who("Bob"), "c2")
    assert r.actions == [Welcome("c2", who("Bob"), [who("Ana", "es", "es", "speaker"), who("Bob")]), Joined(who("Bob"))]
    assert hear_languages(r.state) == {"es", "en"}


def test_the_input_state_is_not_changed() -> None:
    state = new_state()
    connect(state, who("Ana"), "c1")
    assert state == new_state()


def test_a_second_tab_is_welcomed_but_joins_no_one() -> None:
    s = connect(new_state(), who("Ana"), "c1").state
    r = connect(s, who("Ana"), "c2")
    assert r.actions == [Welcome("c2", who("Ana"), [who("Ana")])]
    assert r.state["members"]["r1.ana"]["connections"] == ["c1", "c2"]


def test_a_reconnect_under_a_new_name_is_a_rename() -> None:
    s = connect(new_state(), who("Ana"), "c1").state
    r = connect(s, who("Ana") | {"displayName": "Ana M"}, "c2")
    assert Renamed("r1.ana", "Ana M") in r.actions and participants(r.state)[0]["displayName"] == "Ana M"


def test_only_the_last_connection_leaves_and_a_replayed_disconnect_is_nothing() -> None:
    s = connect(connect(new_state(), who("Ana"), "c1").state, who("Ana"), "c2").state
    r = disconnect(s, "r1.ana", "c1")
    assert r.actions == [] and participants(r.state) == [who("Ana")]
    r = disconnect(r.state, "r1.ana", "c2")
    assert r.actions == [Left("r1.ana")] and r.state == new_state()
    assert disconnect(r.state, "r1.ana", "c2").actions == []
    assert hear_languages(r.state) == set()


def test_rename_says_so_once() -> None:
    s = connect(new_state(), who("Ana"), "c1").state
    r = rename(s, "r1.ana", "Ana M")
    assert r.actions == [Renamed("r1.ana", "Ana M")]
    assert rename(r.state, "r1.ana", "Ana M").actions == []
    assert rename(r.state, "r1.nobody", "X").actions == []


def test_caps_refuse_a_new_member_or_a_new_language_without_changing_the_room() -> None:
    lim = Limits(max_members=2, max_languages=2)
    s = connect(new_state(), who("Ana", "es"), "c1", lim).state
    s = connect(s, who("Bob", "en"), "c2", lim).state
    r = connect(s, who("Cy", "en"), "c3", lim)
    assert [type(a) for a in r.actions] == [Refused] and r.actions[0].code == "room_full"
    assert r.state == s
    lim = Limits(max_members=10, max_languages=2)
    r = connect(s, who("Dee", "pt"), "c4", lim)
    assert r.actions == [Refused("c4", "room_full", "this room already interprets into 2 languages")]
    r = connect(s, who("Eve", "en"), "c5", lim)  # a language already heard costs nothing more
    assert Joined(who("Eve", "en")) in r.actions
    assert connect(s, who("Ana", "es"), "c6", Limits(max_members=1)).actions[0] == Welcome(
        "c6", who("Ana", "es"), participants(s))  # members already in are never refused


def test_apply_names_each_entity_operation() -> None:
    r = apply(new_state(), "connected", who("Ana") | {"connectionId": "c1"})
    assert apply(r.state, "get", {}).state == r.state
    assert apply(r.state, "rename", {"userId": "r1.ana", "displayName": "A"}).actions == [Renamed("r1.ana", "A")]
    assert apply(r.state, "disconnected", {"userId": "r1.ana", "connectionId": "c1"}).actions == [Left("r1.ana")]
    try:
        apply(r.state, "explode", {})
    except ValueError as e:
        assert "explode" in str(e)
    else:
        raise AssertionError("an unknown operation must fail")


def wave_bytes(n: int) -> int:
    """Bytes delivered while n members join one by one: each welcome to its newcomer, each
    delta to everyone connected (the room group)."""
    import json

    from babelroom import protocol

    state, total = new_state(), 0
    for i in range(n):
        p = who(f"Member{i:03d}", hear=("en", "es", "pt", "fr")[i % 4])
        r = connect(state, p, f"c{i}")
        state = r.state
        for a in r.actions:
            if isinstance(a, Welcome):
                total += len(json.dumps(protocol.welcome(a.me, "r1", a.participants)))
            elif isinstance(a, Joined):
                total += len(json.dumps(protocol.joined(a.participant))) * len(participants(state))
    return total


def test_a_join_wave_costs_the_square_of_the_room_not_the_cube() -> None:
    """Issue 11 measured 10 MB for a 60-member join wave with the full list sent on every change."""
    small, big = wave_bytes(30), wave_bytes(60)
    assert big < 1_000_000, big
    assert big / small < 5  # doubling the room: x4 for quadratic growth, x8 for cubic
