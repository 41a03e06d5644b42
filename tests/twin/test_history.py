"""A late joiner gets the room's recent captions (`history`) through the whole twin: real
audio, engine, Azurite, gateway and the on_connected handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from test_speech import finals, speech, stream_turn

pytestmark = pytest.mark.slow


def kept(azurite: Any, room: str) -> set[str]:
    """Segment ids in the room's history document (written after a segment's last language)."""
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        "transcripts", f"history/{room}.json")
    try:
        return {e["id"] for e in json.loads(blob.download_blob().readall())["entries"]}
    except ResourceNotFoundError:
        return set()


def test_a_late_joiner_gets_what_was_said_before(stack: Any, people: Any, azurite: Any, tmp_path: Path) -> None:
    room = stack.room(name="history")
    ana = people(room, "Ana", "es")
    bob = people(room, "Bob", "en", "listener")
    bob.wait(lambda: len(bob.present()) == 2)
    assert not bob.of("history")  # nothing had been said when Bob came
    stream_turn(ana.client, "t1", speech(tmp_path, "Buenos días a todos. Empezamos la reunión."))
    said = bob.wait(lambda: finals(bob, "en"), timeout=90)
    bob.wait(lambda: {c["id"] for c in said} <= kept(azurite, room), timeout=30)
    cid = people(room, "Cid", "en", "listener")
    (history,) = cid.wait(lambda: cid.of("history"), timeout=30)
    assert history["roomId"] == room and history["language"] == "en"
    got = {c["id"]: c for c in history["captions"]}
    for c in said:
        assert got[c["id"]]["text"] == c["text"] and got[c["id"]]["final"]
    eva = people(room, "Eva", "es", "listener")
    (es,) = eva.wait(lambda: eva.of("history"), timeout=30)
    assert all(c["language"] == "es" and not c["translated"] and c["text"] == c["original"]
               for c in es["captions"])
