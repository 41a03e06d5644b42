"""Counting at the listeners: each segment of each turn once, no loss, no duplicate (babelroom.bench.soak)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .driver import Participant, Turn, voiced
from .reliable import Member, Party

# -------------------------------------------------------------------------------- counting

def expected_segments(turn: Turn, upto_seq: int | None = None) -> list[int]:
    """Segments the server translates for this turn: the server's segmenter replayed on the frames
    sent; with `upto_seq`, only segments that closed while frames ≤ upto_seq came in."""
    out = []
    for g in turn.segments:
        if not (g.worth_translating and voiced(turn, g)):
            continue
        if upto_seq is not None and (g.reason in ("end", "switch") or g.last_seq >= upto_seq):
            continue
        out.append(g.index)
    return out


@dataclass
class Tally:
    """What the listeners got, against what the speakers said."""

    expected: int = 0  # (turn, segment, listener) triples
    delivered: int = 0
    noticed: int = 0  # delivered only as a "translation failed" notice (the listener knows; not silent)
    lost: list[str] = field(default_factory=list)
    # of `lost`: source-language listeners' segments whose translations all failed (the others got a
    # notice, they got nothing); tests/reliability/test_failure_reaches_everyone.py is its regression test
    lost_source_after_failure: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    lost_audio: list[str] = field(default_factory=list)
    duplicated_audio: list[str] = field(default_factory=list)
    unexpected: int = 0  # captions of segments the replayed segmenter did not predict
    failure_notes: int = 0
    chats_sent: int = 0
    chats_expected: int = 0
    chats_delivered: int = 0
    chats_lost: list[str] = field(default_factory=list)
    chats_duplicated: list[str] = field(default_factory=list)
    chats_refused: int = 0

    def row(self) -> dict[str, Any]:
        return {"expected": self.expected, "delivered": self.delivered, "noticed": self.noticed,
                "lost": len(self.lost), "lost_source_after_failure": len(self.lost_source_after_failure),
                "duplicated": len(self.duplicated), "lost_audio": len(self.lost_audio),
                "duplicated_audio": len(self.duplicated_audio), "unexpected": self.unexpected,
                "failure_notes": self.failure_notes, "chats_sent": self.chats_sent,
                "chats_expected": self.chats_expected, "chats_delivered": self.chats_delivered,
                "chats_lost": len(self.chats_lost), "chats_duplicated": len(self.chats_duplicated),
                "chats_refused": self.chats_refused, "examples": (self.lost + self.duplicated + self.lost_audio
                                                                  + self.duplicated_audio + self.chats_lost
                                                                  + self.chats_duplicated)[:10]}


def _failed(note: str | None) -> bool:
    """A line that says the segment failed: a `notice`, or (older servers) a caption's failure note."""
    return (note or "").startswith(("notice:", "translation failed"))


def count_turn(tally: Tally, turn: Turn, listener: Participant, segments: list[int] | None = None,
               others: list[Participant] | None = None) -> None:
    """Each expected segment: exactly one final caption in the listener's language, and when translated,
    audio chunks 0..last each once. `others`: the room's other listeners (to tell a silent loss at the
    source language after failed translations from any other loss)."""
    want = expected_segments(turn) if segments is None else segments
    mine = [c for c in listener.captions if c.turn == turn.turn and c.final and c.language == listener.language]
    finals = Counter(c.segment for c in mine)
    notices = Counter(c.segment for c in mine if _failed(c.note))
    translated = {c.segment for c in listener.captions if c.turn == turn.turn and c.final and c.translated}
    tally.failure_notes += sum(1 for c in listener.captions if c.turn == turn.turn and _failed(c.note))
    chunks = Counter((a.segment, a.seq) for a in listener.audio if a.turn == turn.turn)
    lasts = {a.segment: a.seq for a in listener.audio if a.turn == turn.turn and a.last}
    tally.unexpected += len(set(finals) - set(expected_segments(turn)))
    for s in want:
        key = f"{turn.turn}:{s}@{listener.name}"
        tally.expected += 1
        n = finals.get(s, 0)
        if n == 0:
            tally.lost.append(key)
            if listener.language == turn.language and any(
                    c.turn == turn.turn and c.segment == s and _failed(c.note)
                    for x in others or [] for c in x.captions):
                tally.lost_source_after_failure.append(key)
            continue
        tally.delivered += 1
        tally.noticed += notices.get(s, 0) == n
        if n > 1:
            tally.duplicated.append(f"{key} x{n}")
        if s in translated:
            if s not in lasts or any(chunks[(s, q)] == 0 for q in range(lasts[s] + 1)):
                tally.lost_audio.append(key)
    tally.duplicated_audio += [f"{turn.turn}:{s}#{q}@{listener.name} x{n}" for (s, q), n in chunks.items() if n > 1]


def tally_row(turn: Turn, p: Party) -> dict[str, Any]:
    t = Tally()
    for x in p.listeners:
        count_turn(t, turn, x, others=p.listeners)
    return t.row()


def count_chats(tally: Tally, sent: list[tuple[Member, str, asyncio.Future[dict[str, Any]]]],
                room_members: dict[str, list[Member]]) -> None:
    """Each chat line the service acked reaches every member of its room exactly once."""
    for who, nonce, fut in sent:
        tally.chats_sent += 1
        ack = fut.result() if fut.done() and not fut.cancelled() and fut.exception() is None else None
        if not ack or not (ack.get("success") or (ack.get("error") or {}).get("name") == "Duplicate"):
            tally.chats_refused += 1
            continue
        for x in room_members[who.room]:
            tally.chats_expected += 1
            n = sum(1 for c in x.chats if nonce in str(c.get("original", "")))
            if n == 0:
                tally.chats_lost.append(f"{nonce}@{x.name}")
            else:
                tally.chats_delivered += 1
                if n > 1:
                    tally.chats_duplicated.append(f"{nonce}@{x.name} x{n}")


def all_done(parties: list[Party], turns: list[list[Turn]]) -> bool:
    for p, ts in zip(parties, turns, strict=True):
        for t in ts:
            want = set(expected_segments(t))
            for x in p.listeners:
                got = {c.segment for c in x.captions if c.turn == t.turn and c.final and c.language == x.language}
                if not want <= got:
                    return False
    return True


async def drain(parties: list[Party], turns: list[list[Turn]], quiet: float = 20.0, limit: float = 180.0,
                extra: Callable[[], bool] = lambda: True) -> None:
    """Wait until everything expected arrived, or nothing arrived for `quiet` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if all_done(parties, turns) and extra():
            await asyncio.sleep(1.0)  # a duplicate would come right behind
            return
        last = max(x.last_message_at for p in parties for x in p.everyone)
        if time.monotonic() - max(last, start) >= quiet:
            return
        await asyncio.sleep(0.2)


def clients_summary(parties: list[Party]) -> dict[str, Any]:
    cs = [x.rc for p in parties for x in p.everyone]
    return {"kills": sum(c.kills for c in cs), "recoveries": sum(c.recoveries for c in cs),
            "fresh_connections": sum(c.fresh_connections for c in cs), "resent": sum(c.resent for c in cs),
            "dropped_on_fresh": sum(c.dropped_on_fresh for c in cs),
            "replays_deduped": sum(c.duplicates for c in cs),
            "failed_acks": [{k: a.get(k) for k in ("event", "error")} for c in cs for a in c.acks_failed][:10],
            "failed_acks_n": sum(len(c.acks_failed) for c in cs),
            "errors": [e for p in parties for x in p.everyone for e in x.errors][:10]}
