"""Speech through the whole twin: a Spanish speaker, English and Portuguese listeners.

Real audio (eSpeak NG), the real engine, real Azurite; the speaker streams frames like the web
client does and the listeners must get the original, their own language and audio.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azure.messaging.webpubsubclient.models import WebPubSubDataType
from azure.storage.blob import BlobServiceClient

from babelroom.codec import decode_opus

pytestmark = pytest.mark.slow
FRAME = 3200  # samples: 200 ms at 16 kHz, as the web client sends


def speech(tmp: Path, text: str, voice: str = "es") -> bytes:
    """PCM16 mono 16 kHz of `text`, spoken by eSpeak NG and resampled by sox."""
    raw, wav = tmp / "raw.wav", tmp / "16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav)) as w:
        return w.readframes(w.getnframes())


def stream_turn(client: Any, turn: str, pcm: bytes, pace: float = 0.2, whole: bool = False) -> float:
    """Hold the key for the clip: turn.start, 200 ms frames at real-time pace, turn.end."""
    client.send_event("turn.start", {"turn": turn, "whole": whole}, WebPubSubDataType.JSON)
    frames = [pcm[i:i + FRAME * 2] for i in range(0, len(pcm), FRAME * 2)]
    t0 = time.monotonic()
    for seq, f in enumerate(frames):
        client.send_event("audio", {"turn": turn, "seq": seq, "rate": 16000, "pcm": base64.b64encode(f).decode()},
                          WebPubSubDataType.JSON, ack=False)
        time.sleep(max(0.0, t0 + (seq + 1) * pace - time.monotonic()))
    client.send_event("turn.end", {"turn": turn, "frames": len(frames)}, WebPubSubDataType.JSON)
    return time.monotonic()


def finals(listener: Any, language: str) -> list[dict[str, Any]]:
    return [c for c in listener.of("caption") if c["final"] and c["language"] == language]


def voiced_segments(listener: Any, language: str) -> int:
    """Segments whose final caption and last audio chunk have both arrived."""
    captioned = {c["segment"] for c in finals(listener, language)}
    ended = {a["segment"] for a in listener.of("audio") if a.get("last") and a["language"] == language}
    return len(captioned & ended)


def test_spanish_speech_reaches_english_and_portuguese_listeners(stack: Any, people: Any, azurite: Any,
                                                                  tmp_path: Path) -> None:
    room = stack.room(name="speech")
    ana = people(room, "Ana", "es")
    bob = people(room, "Bob", "en", "listener")
    pia = people(room, "Pia", "pt", "listener")
    other = people(stack.room(), "Zed", "en", "listener")
    pia.wait(lambda: len(pia.present()) == 3)
    text = ("Hola a todos. Hoy vamos a hablar del proyecto nuevo. "
            "El equipo terminó la primera versión y mañana empezamos las pruebas con los clientes.")
    pcm = speech(tmp_path, text)
    assert len(pcm) / 32000 > 6  # long enough for at least two segments while the key is held
    stream_turn(ana.client, "turn-1", pcm)

    # `last` ends one segment's audio, not the turn: wait for two segments, each captioned and voiced
    bob.wait(lambda: voiced_segments(bob, "en") >= 2, timeout=120)
    pia.wait(lambda: voiced_segments(pia, "pt") >= 2, timeout=120)
    ana.wait(lambda: finals(ana, "es"), timeout=30)
    time.sleep(1.0)  # let stragglers arrive before counting

    en, pt, es = finals(bob, "en"), finals(pia, "pt"), finals(ana, "es")
    segments = {c["segment"] for c in en}
    assert len(segments) >= 2, "a long turn must be cut into segments while the key is held"
    original = " ".join(c["original"] for c in sorted(en, key=lambda c: c["segment"])).lower()
    assert any(w in original for w in ("hola", "proyecto", "equipo", "pruebas")), original
    english = " ".join(c["text"] for c in en).lower()
    assert all(c["translated"] for c in en) and english != original
    assert any(w in english for w in ("hello", "project", "team", "tests", "today", "version")), english
    assert all(c["translated"] and c["text"] for c in pt)
    assert all(c["sourceLanguage"] == "es" and not c["translated"] for c in es)
    # once per target language: exactly one final caption per segment and language, never per listener
    assert Counter(c["id"] for c in en).most_common(1)[0][1] == 1
    assert Counter(c["id"] for c in pt).most_common(1)[0][1] == 1
    # translated audio: Opus on the wire (a few 2 KB units per second), plausible length for the text
    chunks = sorted(bob.of("audio"), key=lambda a: (a["segment"], a["seq"]))
    assert {a["codec"] for a in chunks} == {"opus"} and all(a["rate"] == 48000 for a in chunks)
    audio = b"".join(decode_opus(a["packets"]) for a in chunks)
    seconds = len(audio) / 2 / 48000
    wire = sum(len(json.dumps(a)) for a in chunks)
    assert wire / seconds < 6000, "Opus at 24 kbit/s is ~4 KB/s of base64"
    words = len(english.split())
    assert 0.15 * words < seconds < 1.5 * words + 2, (seconds, words)
    assert np.abs(np.frombuffer(audio, dtype=np.int16)).mean() > 100  # not silence
    assert {a["language"] for a in pia.of("audio")} == {"pt"}
    # the speaker hears no voice-over of themself, and another room hears nothing
    assert not ana.of("audio")
    assert not other.of("caption") and not other.of("audio")
    # segment audio went through real storage
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("segments")
    names = [b.name for b in blobs.list_blobs(name_starts_with=ana.ticket["userId"] + "/turn-1/")]
    stored = {int(n.rsplit("/", 1)[1].split(".")[0]) for n in names}
    assert segments <= stored  # every captioned segment came from storage (a silent tail has no caption)


def test_silence_produces_no_caption_and_no_audio(stack: Any, people: Any) -> None:
    room = stack.room()
    ana = people(room, "Ana", "es")
    bob = people(room, "Bob", "en", "listener")
    rng = np.random.default_rng(3)
    noise = (rng.normal(0, 30, 16000 * 3)).astype(np.int16).tobytes()  # 3 s of faint room noise
    stream_turn(ana.client, "quiet", noise, pace=0.0)
    time.sleep(6)
    assert not [c for c in bob.of("caption") if c["text"] or c["original"]]
    assert not bob.of("audio")


def test_a_dropped_speaker_never_leaves_a_stuck_turn(stack: Any, people: Any, tmp_path: Path) -> None:
    room = stack.room()
    bob = people(room, "Bob", "en", "listener")
    ana = people(room, "Ana", "es")
    pcm = speech(tmp_path, "Buenos días a todos.")
    ana.client.send_event("turn.start", {"turn": "cut"}, WebPubSubDataType.JSON)
    for seq in range(0, len(pcm) // 3200):
        chunk = pcm[seq * 3200:(seq + 1) * 3200]
        ana.client.send_event("audio", {"turn": "cut", "seq": seq, "pcm": base64.b64encode(chunk).decode()},
                              WebPubSubDataType.JSON)
    ana.close()  # gone before releasing the key
    cap = bob.wait(lambda: finals(bob, "en"), timeout=60)[0]
    assert cap["turn"] == "cut" and cap["original"]
