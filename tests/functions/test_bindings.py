"""`function_app.app` declares every trigger and binding the Azure host needs, and the metadata
the Python worker would report matches the reviewed snapshot (bindings.snapshot.json).

Regenerate after a reviewed change with: BABELROOM_UPDATE_SNAPSHOT=1 pytest tests/functions
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from babelroom import protocol
from babelroom.twin.host import FunctionHost

SNAPSHOT = Path(__file__).with_name("bindings.snapshot.json")


@pytest.fixture(scope="module")
def metadata() -> dict[str, dict]:
    return FunctionHost().function_json


def _trigger(meta: dict) -> dict:
    return next(b for b in meta["bindings"] if b["type"].endswith("Trigger"))


def test_http_routes(metadata: dict[str, dict]) -> None:
    routes = {(_trigger(m)["route"], tuple(_trigger(m)["methods"])) for m in metadata.values()
              if _trigger(m)["type"] == "httpTrigger"}
    assert routes == {("api/rooms", ("POST",)), ("api/rooms/{roomId}/join", ("POST",)),
                      ("api/rooms/{roomId}", ("GET",)), ("api/rooms/{roomId}/members/{userId}", ("DELETE",)),
                      ("api/rooms/{roomId}/close", ("POST",)), ("api/health", ("GET",)), ("{*path}", ("GET",))}


def test_rooms_end_on_a_timer(metadata: dict[str, dict]) -> None:
    t = _trigger(metadata["end_rooms"])
    assert (t["type"], t["schedule"]) == ("timerTrigger", "0 * * * * *")


def test_route_prefix_is_empty_so_the_web_client_and_api_share_one_origin() -> None:
    host = json.loads((Path(__file__).parents[2] / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_web_pubsub_triggers_cover_system_and_every_client_event(metadata: dict[str, dict]) -> None:
    wps = [_trigger(m) for m in metadata.values() if _trigger(m)["type"] == "webPubSubTrigger"]
    assert all(t["hub"] == "%WEBPUBSUB_HUB%" for t in wps)
    assert {t["eventName"] for t in wps if t["eventType"] == "system"} == {"connect", "connected", "disconnected"}
    assert {t["eventName"] for t in wps if t["eventType"] == "user"} == set(protocol.EVENTS)


def test_entities_and_durable_clients(metadata: dict[str, dict]) -> None:
    entities = {_trigger(m)["entityName"] for m in metadata.values() if _trigger(m)["type"] == "entityTrigger"}
    assert entities == {"speaker", "room"}
    needs_client = {"on_connected", "on_disconnected", "get_room", "translate_segment"} | {
        "on_" + e.replace(".", "_") for e in protocol.EVENTS}
    for name in needs_client:
        assert any(b["type"] == "durableClient" for b in metadata[name]["bindings"]), name


def test_translator_is_queue_triggered_from_the_segment_queue(metadata: dict[str, dict]) -> None:
    t = _trigger(metadata["translate_segment"])
    assert (t["type"], t["queueName"], t["connection"]) == ("queueTrigger", "%SEGMENT_QUEUE%", "AzureWebJobsStorage")


def test_matches_reviewed_snapshot(metadata: dict[str, dict]) -> None:
    current = json.dumps(metadata, indent=1, sort_keys=True)
    if os.environ.get("BABELROOM_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(current + "\n")
    assert json.loads(SNAPSHOT.read_text()) == json.loads(current), "binding metadata changed: review and regenerate"
