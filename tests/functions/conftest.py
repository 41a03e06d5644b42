"""Function-level fixtures: the handlers and entities wired to fakes, no host, no network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import (
    FakeBroadcaster,
    FakeDurableClient,
    FakeInterpreter,
    FakeQueue,
    FakeRoomStore,
    FakeSegments,
    FakeServiceClient,
    World,
    room_service,
)

import durable.room
import durable.speaker
from babelroom.history import CaptionHistory, MemoryHistoryStore
from babelroom.ratelimit import RateLimiter
from functions import deps, events


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(FakeDurableClient(), FakeBroadcaster(), FakeServiceClient(), FakeRoomStore(), FakeInterpreter(),
              FakeSegments(), FakeQueue())
    rooms = room_service(w.store, w.broadcaster)
    monkeypatch.setattr(deps, "rooms", lambda: rooms)
    monkeypatch.setattr(deps, "broadcaster", lambda: w.broadcaster)
    monkeypatch.setattr(deps, "interpreter", lambda: w.interpreter)
    history = CaptionHistory(MemoryHistoryStore())
    monkeypatch.setattr(deps, "history", lambda: history)
    monkeypatch.setattr(durable.room, "_client", lambda: w.service)
    monkeypatch.setattr(durable.speaker, "_segments", lambda: w.segments)
    monkeypatch.setattr(durable.speaker, "_queue", lambda: w.queue)
    monkeypatch.setattr(events, "chat_limit", RateLimiter(events.CHAT_RATE, events.CHAT_BURST))
    monkeypatch.setattr(events, "audio_pace", RateLimiter(events.AUDIO_PACE, events.AUDIO_SLACK_S))
    monkeypatch.setattr(events, "_seen_chats", type(events._seen_chats)())
    yield w
