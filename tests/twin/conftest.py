"""Twin test helpers: participants driven by the official Web PubSub client SDK."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import CallbackType
from waiting import wait_until


class Listener:
    """An official WebPubSubClient that records every message it receives."""

    def __init__(self, ticket: dict[str, Any]) -> None:
        self.ticket = ticket
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client = WebPubSubClient(
            WebPubSubClientCredential(client_access_url_provider=lambda: ticket["url"]), ack_timeout=20)
        self.client.subscribe(CallbackType.GROUP_MESSAGE, self._on)
        self.client.subscribe(CallbackType.SERVER_MESSAGE, self._on)
        self.client.open()

    def _on(self, e: Any) -> None:
        with self.lock:
            self.messages.append(e.data)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if isinstance(m, dict) and m.get("type") == kind]

    def present(self) -> set[str]:
        """Who this client believes is in the room: the welcome's list, then the presence deltas."""
        ids: set[str] = set()
        for m in self.of_any("welcome", "presence.joined", "presence.left"):
            if m["type"] == "welcome":
                ids = {p["userId"] for p in m["participants"]}
            elif m["type"] == "presence.joined":
                ids.add(m["participant"]["userId"])
            else:
                ids.discard(m["userId"])
        return ids

    def of_any(self, *kinds: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if isinstance(m, dict) and m.get("type") in kinds]

    def wait(self, pred: Callable[[], Any], timeout: float = 30) -> Any:
        return wait_until(pred, timeout, lambda: f"a message; received {json.dumps(self.messages)[:2000]}")

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def people(stack: Any) -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(room_id: str, name: str, language: str, role: str = "speaker", **extra: Any) -> Listener:
        p = Listener(stack.join(room_id, name, language, role, **extra))
        p.wait(lambda: p.of("welcome"))
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


