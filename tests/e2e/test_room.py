"""The room in a real browser: Debian's Chromium, a fake microphone fed a Spanish clip, real engine.

Why three browser launches: Chromium's fake microphone is per process, so every talker needs
its own browser. Everything the page did is read back from `window.babelroom` (counters filled
inside the page, including an AnalyserNode on the audio output) and from the visible DOM.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
# Screenshots and timings are outputs, not sources: outside the tracked tree unless told otherwise.
ARTIFACTS = Path(os.environ.get("BABELROOM_ARTIFACTS") or Path(__file__).parents[2] / ".run" / "artifacts")
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SPANISH_CLIP = "Hola a todos. Hoy vamos a hablar del proyecto y de la reunión de mañana."
# Words a reasonable transcription / translation of the clip contains at least one of.
SPANISH_WORDS = re.compile(r"hola|todos|proyecto|reuni[oó]n|ma[nñ]ana|hablar", re.I)
ENGLISH_WORDS = re.compile(r"\b(hello|hi|everyone|everybody|all|today|project|meeting|tomorrow|talk|going)\b", re.I)
PORTUGUESE_WORDS = re.compile(r"ol[aá]|todos|hoje|projeto|reuni[aã]o|amanh[aã]|vamos|falar", re.I)

ENGINE_TIMEOUT_MS = 120_000  # first segment on a 2-core box loads models
UI_TIMEOUT_MS = 15_000


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def spanish_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A spoken Spanish clip, 48 kHz mono PCM16 (what Chromium's fake capture reads), padded with silence."""
    for tool in ("espeak-ng", "sox"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is needed to make the Spanish clip (apt-get install {tool})")
    d = tmp_path_factory.mktemp("clip")
    raw, out = d / "es_raw.wav", d / "es.wav"
    subprocess.run(["espeak-ng", "-v", "es", "-s", "150", "-w", str(raw), SPANISH_CLIP], check=True)
    # 0.3 s lead-in, 1.5 s tail: the turn covers the whole clip even if the mic opens a bit late.
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", "0.3", "1.5"], check=True)
    with wave.open(str(out)) as w:
        seconds = w.getnframes() / w.getframerate()
    return out, seconds


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium")
    with sync_playwright() as p:
        yield p


_people = itertools.count(1)


@pytest.fixture
def launch(pw: Playwright) -> Iterator[Callable[..., Page]]:
    """Opens a page in its own Chromium process; `wav` feeds that process's fake microphone."""
    browsers: list[Browser] = []
    pages: list[tuple[str, Page]] = []
    errors: list[str] = []

    def _launch(label: str, wav: Path | None = None) -> Page:
        args = list(BASE_ARGS)
        if wav is not None:
            # %noloop: the clip plays once from the moment the page opens the microphone.
            args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
        b = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        browsers.append(b)
        # Each browser is another person: its own documentation address (RFC 5737) in
        # X-Forwarded-For, as Azure's front end would report, so per-address limits apply per person.
        address = f"203.0.113.{next(_people) % 250 + 1}"
        ctx = b.new_context(viewport={"width": 1280, "height": 800}, locale="en-US",
                            extra_http_headers={"X-Forwarded-For": address})
        page = ctx.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda e: errors.append(f"{label}: {e}"))
        pages.append((label, page))
        return page

    yield _launch
    for b in browsers:
        b.close()
    assert not errors, f"uncaught errors in the page: {errors}"


# ---------------------------------------------------------------------------------------------
# helpers


def stats(page: Page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.babelroom.stats))")


# room id -> {"speaker": invite link, "listener": invite link}: what the host's page showed, or
# what the API returned to stack.room() (register those with invite_links()).
INVITE_LINKS: dict[str, dict[str, str]] = {}


def invite_links(stack, room_id: str) -> dict[str, str]:
    invites = stack.rooms[room_id]["invites"]
    INVITE_LINKS[room_id] = {r: f"{stack.url}/?room={room_id}#invite={invites[r]}" for r in ("speaker", "listener")}
    return INVITE_LINKS[room_id]


def join(page: Page, base: str, name: str, speak: str, *, hear: str | None = None, role: str = "speaker",
         room: str | None = None, lobby_shot: Path | None = None) -> str:
    """Goes through the lobby like a person would: with the room's invite link for `role`, or
    creating a room (as its host, a speaker) when `room` is None; returns the room id."""
    page.goto(INVITE_LINKS[room][role] if room else f"{base}/")
    expect(page.locator("#lobby")).to_be_visible()
    page.fill("#name", name)
    page.select_option("#speak", speak)
    if hear:
        page.select_option("#hear", hear)
    expect(page.locator("#hear")).to_have_value(hear or speak)
    if room:
        expect(page.locator("#room-input")).to_have_value(room)
        expect(page.locator("#join-btn")).to_have_text("Join room")
    else:
        page.fill("#room-name", "Weekly sync")
        expect(page.locator("#join-btn")).to_have_text("Create room")
    if lobby_shot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(lobby_shot), full_page=True)
    page.click("#join-btn")
    expect(page.locator("#room")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    room_id = page.locator("#room-id").inner_text().strip()
    assert room_id
    assert "#invite=" not in page.url  # the secret leaves the address bar once used
    if not room:  # the host's page shows both invite links
        INVITE_LINKS[room_id] = {"listener": page.locator("#share-link").input_value(),
                                 "speaker": page.locator("#share-speaker-link").input_value()}
        assert all(f"room={room_id}#invite=" in link for link in INVITE_LINKS[room_id].values())
    elif role == "listener":
        expect(page.locator("#talk")).to_be_disabled()
    return room_id


def wait_people(page: Page, n: int) -> None:
    expect(page.locator("#participants > li")).to_have_count(n, timeout=UI_TIMEOUT_MS)


def settle(page: Page, quiet_s: float = 4.0, limit_s: float = ENGINE_TIMEOUT_MS / 1000) -> None:
    """Waits until no caption or chat arrived for `quiet_s` and every interim caption has its final."""
    seen = {"n": -1, "since": time.monotonic()}

    def quiet() -> bool:
        n, open_ids = page.evaluate(
            """() => { const r = window.babelroom.received;
                const fin = new Set(r.filter(d => d.final).map(d => d.id));
                return [r.length, r.filter(d => d.type === 'caption' && !fin.has(d.id)).length]; }"""
        )
        if n != seen["n"]:
            seen.update(n=n, since=time.monotonic())
            return False
        return open_ids == 0 and time.monotonic() - seen["since"] >= quiet_s

    wait_until(quiet, limit_s, "captions to stop coming, each interim caption with its final", interval=0.25)


def final_captions(page: Page, language: str) -> list[dict]:
    return page.evaluate(
        """(lang) => window.babelroom.received.filter(d => d.type === 'caption' && d.final && d.language === lang)""",
        language,
    )


# ---------------------------------------------------------------------------------------------
# tests


def test_spanish_speaker_is_read_and_heard_in_english_and_portuguese(stack, launch, spanish_wav) -> None:
    wav, seconds = spanish_wav
    ana = launch("ana-es", wav)
    bob = launch("bob-en")
    rui = launch("rui-pt")

    room = join(ana, stack.url, "Ana", "es", lobby_shot=ARTIFACTS / "lobby.png")
    link = ana.locator("#share-link").input_value()
    assert f"room={room}" in link
    join(bob, stack.url, "Bob", "en", role="listener", room=room)
    join(rui, stack.url, "Rui", "pt", role="listener", room=room)
    for p in (ana, bob, rui):
        wait_people(p, 3)
    expect(bob.locator("#participants")).to_contain_text("Ana")
    expect(bob.locator("#participants")).to_contain_text("Español")

    # Ana holds P for the whole clip (the fake mic starts it when the turn opens the microphone).
    ana.keyboard.down("p")
    expect(ana.locator("#talk")).to_have_attribute("aria-pressed", "true")
    expect(bob.locator("#participants li.speaking")).to_contain_text("Ana", timeout=UI_TIMEOUT_MS)
    ana.wait_for_timeout(int((seconds + 0.7) * 1000))
    ana.keyboard.up("p")
    expect(ana.locator("#talk")).to_have_attribute("aria-pressed", "false")
    ana.wait_for_function("() => window.babelroom.stats.turnEnds === 1")  # after the last, shorter frame

    s = stats(ana)
    assert s["turnStarts"] == 1 and s["turnEnds"] == 1, s
    assert s["framesSent"] >= int(seconds * 5) - 3, s  # 200 ms frames for the whole hold
    assert s["micMaxRms"] > 0.01, f"the fake microphone delivered silence: {s}"
    ana.wait_for_function("() => window.babelroom.stats.acked['turn.end'] === 1")

    # English listener: the Spanish original and an English caption, on screen.
    bob.wait_for_function(
        "() => window.babelroom.received.some(d => d.type === 'caption' && d.final && d.language === 'en')",
        timeout=ENGINE_TIMEOUT_MS,
    )
    first = final_captions(bob, "en")[0]
    line = bob.locator(f'.line.caption[data-id="{first["id"]}"]')
    expect(line.locator(".who")).to_have_text("Ana")
    expect(line.locator(".original-text")).to_have_text(first["original"])  # Spanish, as heard
    expect(line.locator(".text")).to_have_text(first["text"])  # English
    expect(line.locator(".text")).to_have_attribute("lang", "en")

    # ... and actually plays translated audio. The screenshot is taken mid-conversation: a final
    # caption on screen while "hearing: Ana in English" shows (if the voice outran the caption, just after).
    try:
        bob.wait_for_function(
            "() => document.querySelector('#hearing').dataset.active === 'true'"
            " && document.querySelector('.line.caption[data-final=true]')",
            timeout=30_000,
        )
    except PlaywrightTimeoutError:
        pass
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "room.png"))
    bob.wait_for_function(
        "() => { const s = window.babelroom.stats; return s.audioChunksPlayed > 0 && s.maxRms > 0.01; }",
        timeout=ENGINE_TIMEOUT_MS,
    )

    # Wait for the rest of the turn so the checks below see every segment.
    settle(bob)
    en = final_captions(bob, "en")
    ana_id = ana.evaluate("window.babelroom.userId")
    assert en and all(c["sourceLanguage"] == "es" and c["userId"] == ana_id for c in en), en
    assert all(c["translated"] for c in en), en
    original = " ".join(c["original"] for c in en)
    english = " ".join(c["text"] for c in en)
    assert SPANISH_WORDS.search(original), original
    assert ENGLISH_WORDS.search(english), english
    assert english.strip().lower() != original.strip().lower()
    b = stats(bob)
    assert b["audioSecondsScheduled"] > 0.3, b
    assert b["audibleMs"] > 0, b
    assert b.get("decodeErrors", 0) == 0, b
    assert any(h == "hearing: Ana in English" for h in b["hearing"]), b["hearing"]
    # One line per caption id: interim lines were replaced, not stacked.
    ids = bob.locator(".line.caption").evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(ids) == len(set(ids)) and set(ids) == {c["id"] for c in en}, (ids, en)

    # Portuguese listener: its own language in the same run.
    rui.wait_for_function(
        "() => window.babelroom.received.some(d => d.type === 'caption' && d.final && d.language === 'pt')",
        timeout=ENGINE_TIMEOUT_MS,
    )
    pt = final_captions(rui, "pt")
    portuguese = " ".join(c["text"] for c in pt)
    assert all(c["sourceLanguage"] == "es" and c["translated"] for c in pt), pt
    assert PORTUGUESE_WORDS.search(portuguese), portuguese
    assert portuguese.strip().lower() != english.strip().lower()
    expect(rui.locator(".line.caption[data-final=true] .text").first).to_have_attribute("lang", "pt")
    rui.wait_for_function(
        "() => { const s = window.babelroom.stats; return s.audioChunksPlayed > 0 && s.maxRms > 0.01; }",
        timeout=ENGINE_TIMEOUT_MS,
    )
    assert "hearing: Ana in Português" in stats(rui)["hearing"]

    # How long it took, for the record (latency.json in ARTIFACTS); the engine's speed is not asserted here.
    a, b = stats(ana), stats(bob)
    got = bob.evaluate("() => window.babelroom.received.filter(d => d.type === 'caption')")
    latency = {
        "turn_seconds": (a["turnEndedAt"] - a["turnStartedAt"]) / 1000,
        "segments": len(en),
        "first_caption_after_key_down_s": (min(c["receivedAt"] for c in got) - a["turnStartedAt"]) / 1000,
        "first_final_after_key_down_s": (min(c["receivedAt"] for c in got if c["final"]) - a["turnStartedAt"]) / 1000,
        "first_audio_after_key_down_s": (b["firstAudioAt"] - a["turnStartedAt"]) / 1000,
        "last_final_after_key_up_s": (max(c["receivedAt"] for c in got if c["final"]) - a["turnEndedAt"]) / 1000,
        "audio_chunks_by_codec": b["audioCodecs"],
        "audio_decode_errors": b.get("decodeErrors", 0),
        "english": [c["text"] for c in en],
        "spanish_heard": [c["original"] for c in en],
        "portuguese": [c["text"] for c in pt],
    }
    (ARTIFACTS / "latency.json").write_text(json.dumps(latency, indent=2, ensure_ascii=False) + "\n")

    # The speaker reads herself in Spanish, untranslated, and never plays her own voice.
    ana.wait_for_function(
        "() => window.babelroom.received.some(d => d.type === 'caption' && d.final && d.language === 'es')",
        timeout=ENGINE_TIMEOUT_MS,
    )
    assert stats(ana)["audioChunksPlayed"] == 0


def wire_log(page: Page) -> list[dict]:
    """Every JSON frame the page sends on its Web PubSub sockets, as seen by the browser."""
    sent: list[dict] = []

    def on_ws(ws) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)) if isinstance(payload, str) else None)

    page.on("websocket", on_ws)
    return sent


def test_p_typed_in_chat_starts_no_turn_and_blur_ends_a_turn(stack, launch) -> None:
    page = launch("solo")
    wire = wire_log(page)
    join(page, stack.url, "Solo", "en")

    # Typing (and even holding) p in the chat box is text, not push-to-talk.
    chat = page.locator("#chat-input")
    chat.click()
    page.keyboard.type("pp up, keep pushing p")
    page.keyboard.down("p")
    page.wait_for_timeout(300)
    page.keyboard.up("p")
    expect(chat).to_have_value("pp up, keep pushing pp")
    page.wait_for_timeout(300)
    s = stats(page)
    assert s["turnStarts"] == 0 and "turn.start" not in s["sent"], s
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")

    # Out of the chat box, P starts exactly one turn even with key repeat.
    page.locator("#transcript").focus()
    page.keyboard.down("p")
    page.keyboard.down("p")  # auto-repeat
    page.keyboard.down("p")
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("() => window.babelroom.stats.framesSent >= 3")  # the microphone is live
    assert stats(page)["turnStarts"] == 1

    # The window loses focus mid-turn (alt-tab): the turn ends, no stuck microphone.
    page.evaluate("() => window.dispatchEvent(new Event('blur'))")
    page.wait_for_function("() => window.babelroom.stats.turnEnds === 1 && !window.babelroom.speaking")
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#talk")).not_to_have_class(re.compile(r"\bon\b"))
    page.wait_for_function("() => window.babelroom.stats.acked['turn.end'] === 1")
    s = stats(page)
    assert s["sent"]["turn.start"] == 1 and s["sent"]["turn.end"] == 1, s
    frames = s["framesSent"]

    # On the wire: event frames with ackIds, one turn.start, 200 ms PCM16 16 kHz frames seq 0..n-1
    # (only the last may be shorter), then one turn.end counting them.
    events = [f for f in wire if f.get("type") == "event"]
    turn_events = [f for f in events if f["event"] in ("turn.start", "audio", "turn.end")]
    assert [f["event"] for f in turn_events][0] == "turn.start" and turn_events[-1]["event"] == "turn.end"
    turn = turn_events[0]["data"]["turn"]
    audio = [f["data"] for f in turn_events if f["event"] == "audio"]
    assert all(a["turn"] == turn and a["rate"] == 16000 for a in audio)
    assert [a["seq"] for a in audio] == list(range(len(audio))) == list(range(frames))
    sizes = [len(base64.b64decode(a["pcm"])) for a in audio]
    assert all(n == 6400 for n in sizes[:-1]) and 0 < sizes[-1] <= 6400, sizes
    assert turn_events[-1]["data"] == {"turn": turn, "frames": frames}
    assert all(isinstance(f.get("ackId"), int) and f.get("dataType") == "json" for f in events)
    assert len({f["ackId"] for f in events}) == len(events)

    page.keyboard.up("p")  # the late key-up must not start or end anything
    page.wait_for_timeout(400)
    s = stats(page)
    assert s["turnStarts"] == 1 and s["turnEnds"] == 1 and s["framesSent"] == frames, s

    # The big button: press, then the pointer slides off it -> the turn ends too.
    box = page.locator("#talk").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 200, steps=5)
    page.wait_for_function("() => window.babelroom.stats.turnEnds === 2 && !window.babelroom.speaking")
    page.mouse.up()
    # Hiding the tab ends a turn as well.
    page.locator("#transcript").focus()
    page.keyboard.down("p")
    page.wait_for_function("() => window.babelroom.stats.turnStarts === 3")
    page.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    page.wait_for_function("() => window.babelroom.stats.turnEnds === 3 && !window.babelroom.speaking")
    page.keyboard.up("p")


def test_chat_from_spanish_reaches_english_listener_translated(stack, launch) -> None:
    ana = launch("ana-es")
    bob = launch("bob-en")
    room = join(ana, stack.url, "Ana", "es")
    join(bob, stack.url, "Bob", "en", role="listener", room=room)
    wait_people(ana, 2)

    ana.fill("#chat-input", "Hola a todos, ¿cómo están? Nos vemos mañana en la reunión.")
    ana.press("#chat-input", "Enter")
    expect(ana.locator("#chat-input")).to_have_value("")

    bob.wait_for_function(
        "() => window.babelroom.received.some(d => d.type === 'chat' && d.language === 'en')",
        timeout=ENGINE_TIMEOUT_MS,
    )
    msg = bob.evaluate("() => window.babelroom.received.find(d => d.type === 'chat' && d.language === 'en')")
    assert msg["sourceLanguage"] == "es" and msg["translated"] is True, msg
    assert msg["displayName"] == "Ana"
    assert ENGLISH_WORDS.search(msg["text"]) or re.search(r"\b(how|see|you)\b", msg["text"], re.I), msg
    assert msg["text"] != msg["original"]
    line = bob.locator(f'.line.chat[data-id="{msg["id"]}"]')
    expect(line.locator(".who")).to_have_text("Ana")
    expect(line.locator(".text")).to_have_text(msg["text"])
    expect(line.locator(".original-text")).to_have_text(msg["original"])
    # The sender sees her own line (in Spanish) once the room echoes it.
    ana.wait_for_function("() => window.babelroom.received.some(d => d.type === 'chat' && d.language === 'es')",
                          timeout=ENGINE_TIMEOUT_MS)
    expect(ana.locator(".line.notice.pending")).to_have_count(0)

    # `/username NAME` renames her for everyone.
    ana.fill("#chat-input", "/username Ana María")
    ana.press("#chat-input", "Enter")
    expect(bob.locator("#participants")).to_contain_text("Ana María")
    expect(ana.locator("#me-name")).to_have_text("Ana María")


def test_reconnect_resumes_without_lost_or_duplicated_lines(stack, launch) -> None:
    ana = launch("ana")
    bob = launch("bob")
    room = join(ana, stack.url, "Ana", "en")
    join(bob, stack.url, "Bob", "en", role="listener", room=room)
    wait_people(ana, 2)

    def say(text: str) -> None:
        ana.fill("#chat-input", text)
        ana.press("#chat-input", "Enter")

    def bob_chats() -> list[str]:
        return bob.locator(".line.chat .text").all_inner_texts()

    say("zero")
    expect(bob.locator(".line.chat")).to_have_count(1, timeout=ENGINE_TIMEOUT_MS)
    # Drop at once (before the 1 s sequenceAck went out): the service resends, the page must dedupe.
    bob.evaluate("() => window.babelroom.dropConnection(2500)")
    expect(bob.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(bob.locator("#conn-text")).to_have_text("reconnecting…")
    for word in ("one", "two", "three"):
        say(word)
    ana.wait_for_function("() => window.babelroom.stats.acked.chat === 4")
    expect(bob.locator("#conn")).to_have_attribute("data-state", "connected", timeout=UI_TIMEOUT_MS)
    expect(bob.locator(".line.chat")).to_have_count(4, timeout=ENGINE_TIMEOUT_MS)
    bob.wait_for_timeout(1500)  # anything duplicated would have arrived by now
    assert bob_chats() == ["zero", "one", "two", "three"]
    conn = bob.evaluate("() => window.babelroom.connection")
    assert conn["recoveries"] == 1 and conn["freshConnections"] == 0, conn
    expect(bob.locator(".line.notice", has_text="Connection restored")).to_have_count(1)

    # Recovery refused (a bad reconnection token is closed with 1008): the page joins again, keeps its lines.
    old_user = bob.evaluate("() => window.babelroom.userId")
    bob.evaluate("() => { window.babelroom.app.client.reconnectionToken = 'bogus';"
                 " window.babelroom.dropConnection(); }")
    bob.wait_for_function("() => window.babelroom.connection.freshConnections === 1", timeout=UI_TIMEOUT_MS * 3)
    expect(bob.locator("#conn")).to_have_attribute("data-state", "connected")
    # the fresh join used the member key: the same member (no ghost in the room, no new invite needed)
    assert bob.evaluate("() => window.babelroom.userId") == old_user
    assert bob_chats() == ["zero", "one", "two", "three"]
    say("four")
    expect(bob.locator(".line.chat")).to_have_count(5, timeout=ENGINE_TIMEOUT_MS)
    assert bob_chats()[-1] == "four"

    # A reload (or a crashed tab restored) puts the user back in the room with the transcript kept.
    bob.reload()
    expect(bob.locator("#room")).to_be_visible()
    expect(bob.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(bob.locator("#me-name")).to_have_text("Bob")
    assert bob_chats() == ["zero", "one", "two", "three", "four"]
    say("five")
    expect(bob.locator(".line.chat")).to_have_count(6, timeout=ENGINE_TIMEOUT_MS)
    assert bob_chats()[-1] == "five"


def test_lobby_links_errors_and_join_command(stack, launch) -> None:
    page = launch("lobby")
    page.goto(f"{stack.url}/")
    expect(page.locator("#join-btn")).to_have_text("Create room")
    # "I want to hear" follows "I speak" until the user picks something else.
    page.select_option("#speak", "pt")
    expect(page.locator("#hear")).to_have_value("pt")
    page.select_option("#hear", "en")
    page.select_option("#speak", "fr")
    expect(page.locator("#hear")).to_have_value("en")
    # No name: refused in the page, focus on the field.
    page.click("#join-btn")
    expect(page.locator("#lobby-error")).to_contain_text("name")
    expect(page.locator("#name")).to_be_focused()
    # An unknown room: a readable error, still in the lobby.
    page.fill("#name", "Zoé")
    page.fill("#room-input", f"{stack.url}/?room=nosuchroom")
    expect(page.locator("#join-btn")).to_have_text("Join room")
    page.click("#join-btn")
    expect(page.locator("#lobby-error")).to_contain_text("nosuchroom")
    expect(page.locator("#lobby")).to_be_visible()

    # Two rooms; `/join` moves between them and the address bar follows (a shareable place).
    first = stack.room(name="First")
    second = stack.room(name="Second")
    invite_links(stack, first)
    second_link = invite_links(stack, second)["speaker"]
    join(page, stack.url, "Zoé", "fr", hear="en", room=first)
    expect(page.locator("#room-title")).to_have_text("First")
    expect(page.locator("#me-hear")).to_have_text("English")
    page.fill("#chat-input", f"/join {second}")  # an id alone opens nothing
    page.press("#chat-input", "Enter")
    expect(page.locator(".line.notice.error")).to_contain_text("invite")
    page.fill("#chat-input", f"/join {second_link}")
    page.press("#chat-input", "Enter")
    expect(page.locator("#room-title")).to_have_text("Second")
    expect(page.locator("#room-id")).to_have_text(second)
    assert page.url.endswith(f"?room={second}")
    expect(page.locator("#participants > li")).to_have_count(1)
    expect(page.locator("#participants")).to_contain_text("Zoé")
    expect(page.locator("#participants")).to_contain_text("speaks Français · hears English")
    page.fill("#chat-input", "/join nosuchroom")
    page.press("#chat-input", "Enter")
    expect(page.locator(".line.notice.error")).to_contain_text("nosuchroom")
    expect(page.locator("#room-id")).to_have_text(second)
    page.fill("#chat-input", "/frobnicate")
    page.press("#chat-input", "Enter")
    expect(page.locator(".line.notice.error").last).to_contain_text("/help")
    # Leave returns to the lobby with the room filled in, ready to rejoin.
    page.click("#leave")
    expect(page.locator("#lobby")).to_be_visible()
    expect(page.locator("#room-input")).to_have_value(second)


PUSH_TWO_SPEAKERS = """
() => {
  const tone = (f, n) => {
    const b = new Uint8Array(n * 2);
    const v = new DataView(b.buffer);
    for (let i = 0; i < n; i++) v.setInt16(2 * i, Math.round(8000 * Math.sin(2 * Math.PI * f * i / 24000)), true);
    let s = ""; for (const x of b) s += String.fromCharCode(x);
    return btoa(s);
  };
  const player = window.babelroom.app.player;
  const msg = (userId, turn, segment, seq, last, f) => ({
    type: "audio", id: `${userId}:${turn}:${segment}`, userId, turn, segment, language: "en",
    rate: 24000, seq, pcm: tone(f, 4800), last,
  });
  // Two interpreters at once, chunks interleaved; A's arrive out of order and one twice.
  const a = [0, 1, 2, 3, 4].map((q) => msg("room.a", "ta", 0, q, q === 4, 300));
  const b = [0, 1, 2, 3, 4].map((q) => msg("room.b", "tb", 0, q, q === 4, 500));
  const order = [a[1], b[0], a[0], b[1], a[2], a[2], b[2], a[4], b[3], a[3], b[4]];
  for (const m of order) player.push(m);
}
"""


def test_two_speakers_play_one_after_the_other_gaplessly(stack, launch) -> None:
    page = launch("ears")
    join(page, stack.url, "Ears", "en")
    page.evaluate(PUSH_TWO_SPEAKERS)
    page.wait_for_function("() => window.babelroom.stats.audioChunksPlayed === 10", timeout=10_000)
    timeline = page.evaluate("() => window.babelroom.app.player.timeline")
    assert [t["userId"] for t in timeline] == ["room.a"] * 5 + ["room.b"] * 5, timeline
    assert [t["seq"] for t in timeline] == [0, 1, 2, 3, 4] * 2, timeline
    for prev, cur in zip(timeline, timeline[1:], strict=False):
        assert cur["at"] >= prev["end"] - 1e-6, ("overlap", prev, cur)  # never two voices at once
        if cur["userId"] == prev["userId"]:
            assert abs(cur["at"] - prev["end"]) < 1e-6, ("gap inside a speaker", prev, cur)
    s = stats(page)
    assert s["audioChunksDropped"] == 1, s  # the duplicate
    assert len(s["hearing"]) == 2 and s["maxRms"] > 0.05, s
    page.wait_for_function("() => document.querySelector('#hearing').dataset.active === 'false'", timeout=5_000)
    expect(page.locator("#hearing")).to_have_text("hearing: nobody")

    # Mute silences the output (the analyser sits after the volume stage) and says so.
    page.click("#mute")
    expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#mute")).to_have_text("Unmute")
    page.wait_for_timeout(200)
    audible = stats(page)["audibleMs"]
    page.evaluate(PUSH_TWO_SPEAKERS.replace('"ta"', '"ta2"').replace('"tb"', '"tb2"'))
    page.wait_for_function("() => window.babelroom.stats.audioChunksPlayed === 20", timeout=10_000)
    assert stats(page)["audibleMs"] == audible
    page.click("#mute")
    expect(page.locator("#mute")).to_have_attribute("aria-pressed", "false")


def test_speaker_socket_drop_mid_turn_loses_no_frames(stack, launch) -> None:
    page = launch("talker")
    wire = wire_log(page)
    join(page, stack.url, "Talker", "en")
    page.locator("#transcript").focus()
    page.keyboard.down("p")
    page.wait_for_function("() => window.babelroom.stats.framesSent >= 5")
    page.evaluate("() => window.babelroom.dropConnection(1500)")  # the network is gone for 1.5 s mid-turn
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")  # still talking meanwhile
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(500)
    page.keyboard.up("p")
    page.wait_for_function("() => window.babelroom.stats.acked['turn.end'] === 1")
    s = stats(page)
    assert s["acked"]["audio"] == s["framesSent"] and s["acked"]["turn.start"] == 1, s
    conn = page.evaluate("() => window.babelroom.connection")
    assert conn["recoveries"] == 1 and conn["freshConnections"] == 0, conn
    # Frames captured while offline went out after recovery, under their original ackIds, each seq once
    # or resent; together they are exactly seq 0..frames-1.
    audio = [f for f in wire if f.get("event") == "audio"]
    assert sorted({f["data"]["seq"] for f in audio}) == list(range(s["framesSent"]))
    by_ack: dict[int, int] = {}
    for f in audio:
        assert by_ack.setdefault(f["ackId"], f["data"]["seq"]) == f["data"]["seq"]
    end = [f for f in wire if f.get("event") == "turn.end"]
    assert {f["data"]["frames"] for f in end} == {s["framesSent"]}
