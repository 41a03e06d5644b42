"""The flush policy: order, duplicates, 3 s / 1 MB / end / silence, spills, exactly-once."""

from __future__ import annotations

import math
import random
from array import array

from babelroom.segmenter import (
    BYTES_PER_SECOND,
    MAX_TURN_SECONDS,
    ClosedSegment,
    Limits,
    Segmenter,
    Spill,
    new_state,
)

FRAME = 3200  # 100 ms at 16 kHz PCM16


def frame(seq: int, n: int = FRAME) -> bytes:
    return bytes([seq % 251]) * n


def closed(actions: list) -> list[ClosedSegment]:
    return [a for a in actions if isinstance(a, ClosedSegment)]


def run(seg: Segmenter, state: dict, events: list[tuple]) -> list:
    out = []
    for ev in events:
        kind, *args = ev
        out += getattr(seg, kind)(state, *args).actions
    return out


def audio_of(actions: list, segment: ClosedSegment) -> bytes:
    spilled = {(a.turn, a.index, a.block_id): a.pcm for a in actions if isinstance(a, Spill)}
    return b"".join(spilled[(segment.turn, segment.index, b)] for b in segment.blocks) + segment.tail


def test_three_seconds_closes_a_segment_while_the_key_is_held() -> None:
    seg, state = Segmenter(), new_state()
    actions = run(seg, state, [("start", "t")] + [("frame", "t", i, frame(i)) for i in range(31)])
    segs = closed(actions)
    assert [s.reason for s in segs] == ["duration"]
    assert segs[0].nbytes == 3 * BYTES_PER_SECOND and (segs[0].first_seq, segs[0].last_seq) == (0, 29)
    assert audio_of(actions, segs[0]) == b"".join(frame(i) for i in range(30))
    assert state["bytes"] == FRAME  # frame 30 opened segment 1


def speechlike(seq: int, quiet: bool = False) -> bytes:
    """A 100 ms frame of a 220 Hz tone, loud (speech) or very faint (a pause between words)."""
    amp = 40 if quiet else 6000
    return array("h", (int(amp * math.sin(2 * math.pi * 220 * (seq * 1600 + i) / 16000))
                       for i in range(1600))).tobytes()


def test_past_one_second_a_pause_closes_the_segment() -> None:
    seg, state = Segmenter(), new_state()
    quiet_at = {6, 21}  # a pause at 0.6 s (too early to cut) and one at 2.1 s
    actions = run(seg, state, [("frame", "t", i, speechlike(i, i in quiet_at)) for i in range(40)])
    segs = closed(actions)
    assert [(s.reason, s.last_seq) for s in segs] == [("pause", 21)]
    assert state["bytes"] == 18 * FRAME  # frames 22..39 wait in the next segment


def test_without_a_pause_the_cut_falls_at_three_seconds() -> None:
    seg, state = Segmenter(), new_state()
    segs = closed(run(seg, state, [("frame", "t", i, speechlike(i)) for i in range(31)]))
    assert [(s.reason, s.last_seq) for s in segs] == [("duration", 29)]


def test_whole_turn_mode_keeps_one_segment_until_release() -> None:
    seg, state = Segmenter(), new_state()
    frames = [("frame", "t", i, speechlike(i, i % 7 == 0)) for i in range(50)]
    actions = run(seg, state, [("start", "t", True), *frames, ("end", "t", 50)])
    assert [(s.reason, s.first_seq, s.last_seq) for s in closed(actions)] == [("end", 0, 49)]


def test_end_of_turn_flushes_the_rest_and_numbers_segments_in_order() -> None:
    seg, state = Segmenter(), new_state()
    events = [("frame", "t", i, frame(i)) for i in range(45)] + [("end", "t", 45)]
    segs = closed(run(seg, state, events))
    assert [(s.index, s.reason, s.first_seq, s.last_seq) for s in segs] == [(0, "duration", 0, 29),
                                                                             (1, "end", 30, 44)]
    assert state["turn"] is None


def test_out_of_order_frames_are_reordered() -> None:
    """Reordering within the network's usual window (here up to 0.5 s of audio) loses nothing."""
    seg, state = Segmenter(), new_state()
    rng = random.Random(7)
    order = [i for w in range(0, 20, 5) for i in rng.sample(range(w, w + 5), 5)]
    actions = run(seg, state, [("frame", "t", i, frame(i)) for i in order] + [("end", "t", 20)])
    (s,) = closed(actions)
    assert audio_of(actions, s) == b"".join(frame(i) for i in range(20))


def test_duplicates_are_dropped() -> None:
    seg, state = Segmenter(), new_state()
    seg.frame(state, "t", 0, frame(0))
    seg.frame(state, "t", 2, frame(2))
    assert seg.frame(state, "t", 0, frame(0)).duplicate  # already consumed
    assert seg.frame(state, "t", 2, frame(2)).duplicate  # waiting behind a gap
    seg.frame(state, "t", 1, frame(1))
    (s,) = closed(seg.end(state, "t", 3).actions)
    assert s.nbytes == 3 * FRAME


def test_late_frames_of_a_finished_turn_are_not_translated_twice() -> None:
    seg, state = Segmenter(), new_state()
    run(seg, state, [("frame", "t", 0, frame(0)), ("end", "t", 1)])
    out = seg.frame(state, "t", 0, frame(0))
    assert out.late and not out.actions
    assert seg.end(state, "t", 1).late


def test_silence_closes_at_the_flagged_frame() -> None:
    seg, state = Segmenter(), new_state()
    # the client flags the pause before the frames it names have all arrived
    actions = run(seg, state, [("frame", "t", 0, frame(0)), ("silence", "t", 3)]
                  + [("frame", "t", i, frame(i)) for i in (2, 1, 3, 4)])
    (s,) = closed(actions)
    assert (s.reason, s.first_seq, s.last_seq) == ("silence", 0, 3)
    assert state["bytes"] == FRAME  # frame 4 opened the next segment
    # a flag for a frame already consumed closes at once with what is there
    state2 = new_state()
    actions2 = run(seg, state2, [("frame", "t", i, frame(i)) for i in range(6)] + [("silence", "t", 2)])
    (s2,) = closed(actions2)
    assert (s2.reason, s2.last_seq) == ("silence", 5)


def test_one_megabyte_closes_before_three_seconds() -> None:
    seg, state = Segmenter(Limits(seconds=60, max_bytes=1 << 20)), new_state()
    big = 8000
    actions = run(seg, state, [("frame", "t", i, frame(i, big)) for i in range(140)])
    segs = closed(actions)
    assert segs[0].reason == "size" and segs[0].nbytes >= 1 << 20 and segs[0].nbytes < (1 << 20) + big


def test_large_segments_spill_out_of_entity_state() -> None:
    seg, state = Segmenter(), new_state()
    actions = run(seg, state, [("frame", "t", i, frame(i)) for i in range(29)])
    spills = [a for a in actions if isinstance(a, Spill)]
    assert spills and all(len(a.pcm) >= 48 * 1024 for a in spills)
    assert state["inline"] < 48 * 1024  # what stays in state is bounded
    actions += seg.frame(state, "t", 29, frame(29)).actions
    (s,) = closed(actions)
    assert s.blocks == [a.block_id for a in spills]
    assert audio_of(actions, s) == b"".join(frame(i) for i in range(30))


def test_a_new_turn_closes_the_previous_one_so_nothing_is_stuck() -> None:
    seg, state = Segmenter(), new_state()
    actions = run(seg, state, [("frame", "a", 0, frame(0)), ("frame", "a", 1, frame(1)), ("start", "b")])
    (s,) = closed(actions)
    assert (s.turn, s.reason) == ("a", "switch")
    assert state["turn"] == "b"


def test_a_lost_frame_is_given_up_after_the_pending_bound() -> None:
    seg, state = Segmenter(Limits(seconds=60)), new_state()
    run(seg, state, [("frame", "t", i, frame(i)) for i in range(1, 70)])
    assert state["next"] > 1  # the gap at 0 no longer holds everything back
    assert not seg.frame(state, "t", 0, frame(0)).actions


def test_every_frame_is_delivered_exactly_once_in_order_under_random_delivery() -> None:
    rng = random.Random(11)
    seg, state = Segmenter(), new_state()
    n = 123
    deliveries = [i for i in range(n) for _ in range(rng.choice((1, 1, 2)))]  # some twice
    # disorder stays local, as retries make it: shuffle within windows of 8
    deliveries = [x for k in range(0, len(deliveries), 8)
                  for x in sorted(deliveries[k:k + 8], key=lambda _: rng.random())]
    actions = run(seg, state, [("frame", "t", i, frame(i)) for i in deliveries] + [("end", "t", n)])
    segs = closed(actions)
    assert [s.index for s in segs] == list(range(len(segs)))
    assert b"".join(audio_of(actions, s) for s in segs) == b"".join(frame(i) for i in range(n))


def test_tiny_or_quiet_segments_are_not_worth_translating() -> None:
    seg = Segmenter()
    state = new_state()
    (speech,) = closed(run(seg, state, [("frame", "t", i, speechlike(i)) for i in range(5)] + [("end", "t", 5)]))
    assert speech.worth_translating
    state = new_state()
    (tail,) = closed(run(seg, state, [("frame", "t", 0, speechlike(0)[:3200 // 4]), ("end", "t", 1)]))
    assert tail.seconds < 0.15 and not tail.worth_translating
    state = new_state()
    (hush,) = closed(run(seg, state, [("frame", "t", i, speechlike(i, quiet=True)) for i in range(10)]
                         + [("end", "t", 10)]))
    assert hush.level < 300 and not hush.worth_translating


def test_a_lost_frame_holds_the_turn_back_by_at_most_one_second_of_audio() -> None:
    seg, state = Segmenter(Limits(seconds=30.0, pause_after=0)), new_state()
    held = [seg.frame(state, "t", i, frame(i)) for i in range(1, 10)]  # frame 0 never comes: 0.9 s behind it
    assert state["next"] == 0 and not any(o.actions for o in held)
    seg.frame(state, "t", 10, frame(10))  # 1.0 s of audio behind the gap: the segmenter moves on
    assert state["next"] == 11
    assert seg.frame(state, "t", 0, frame(0)).duplicate  # the lost frame, too late now
    (s,) = closed(seg.end(state, "t", 11).actions)
    assert s.nbytes == 10 * FRAME and s.first_seq == 1


def test_a_turn_stops_taking_audio_at_its_cap() -> None:
    seg, state = Segmenter(), new_state()
    big = 16_000  # 0.5 s frames
    outs = [seg.frame(state, "t", i, b"\x10\x00" * (big // 2)) for i in range(int(MAX_TURN_SECONDS * 2) + 3)]
    assert not any(o.too_long for o in outs[: int(MAX_TURN_SECONDS * 2)])
    assert all(o.too_long for o in outs[int(MAX_TURN_SECONDS * 2):])
