"""The azd postdeploy hook (infra/hooks/postdeploy.sh) run against a stand-in `az` that records its
calls: which commands it issues and with which event handler. Only Azure can show that the real
`az` accepts them (docs/deploy.md lists that); this checks the script's logic and idempotence."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "hooks" / "postdeploy.sh"

FAKE_AZ = r"""#!/usr/bin/env bash
# Records argv as one JSON line; answers like az for the few commands the hook uses.
python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$FAKE_AZ_LOG"
case "$1 $2 $3" in
  "functionapp keys list") [ -f "$FAKE_STATE/key" ] && cat "$FAKE_STATE/key"; exit 0 ;;
  "functionapp keys set") echo "created-key"; exit 0 ;;
  "webpubsub hub show") [ -f "$FAKE_STATE/hub" ] && exit 0 || exit 3 ;;
  "webpubsub hub create") touch "$FAKE_STATE/hub"; exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AZ_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_STATE": str(state), "AZURE_RESOURCE_GROUP": "rg-x", "AZURE_FUNCTION_APP_NAME": "func-x",
        "SERVICE_API_URI": "https://func-x.azurewebsites.net/", "WEBPUBSUB_NAME": "wps-x", "WEBPUBSUB_HUB": "rooms",
        "KEY_WAIT_SECONDS": "0",
    }


def run(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    log = Path(env["FAKE_AZ_LOG"])
    log.unlink(missing_ok=True)
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return out, calls


def handler_of(call: list[str]) -> list[str]:
    i = call.index("--event-handler")
    rest = call[i + 1 :]
    return rest[: next((k for k, a in enumerate(rest) if a.startswith("--")), len(rest))]


def test_the_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_creates_then_updates_the_hub_with_the_extension_key(az: dict[str, str]) -> None:
    Path(az["FAKE_STATE"], "key").write_text("KEY1\n")
    out, calls = run(az)
    assert out.returncode == 0, out.stderr
    kinds = [" ".join(c[:3]) for c in calls]
    assert kinds == ["extension add --name", "functionapp keys list", "webpubsub hub show", "webpubsub hub create"]
    create = calls[-1]
    assert ["--name", "wps-x"] == create[create.index("--name"):create.index("--name") + 2]
    assert "--allow-anonymous" in create and create[create.index("--allow-anonymous") + 1] == "false"
    assert handler_of(create) == [
        "url-template=https://func-x.azurewebsites.net/runtime/webhooks/webpubsub?code=KEY1",
        "user-event-pattern=*", "system-event=connect", "system-event=connected", "system-event=disconnected",
    ]
    again, calls2 = run(az)  # idempotent: the same handler, now as an update
    assert again.returncode == 0, again.stderr
    assert calls2[-1][:3] == ["webpubsub", "hub", "update"]
    assert handler_of(calls2[-1]) == handler_of(create)


def test_creates_the_system_key_when_the_host_never_made_it(az: dict[str, str]) -> None:
    out, calls = run(az)
    assert out.returncode == 0, out.stderr
    assert ["functionapp", "keys", "set"] in [c[:3] for c in calls]
    assert handler_of(calls[-1])[0].endswith("?code=created-key")


def test_managed_identity_auth_when_an_audience_is_given(az: dict[str, str]) -> None:
    Path(az["FAKE_STATE"], "key").write_text("KEY1\n")
    out, calls = run(az | {"WEBPUBSUB_EVENT_HANDLER_AUDIENCE": "api://babelroom-events"})
    assert out.returncode == 0, out.stderr
    assert handler_of(calls[-1])[-2:] == ["auth-type=ManagedIdentity", "auth-resource=api://babelroom-events"]


def test_refuses_to_run_without_the_azd_outputs(az: dict[str, str]) -> None:
    env = {k: v for k, v in az.items() if k != "WEBPUBSUB_NAME"}
    out, calls = run(env)
    assert out.returncode != 0 and "WEBPUBSUB_NAME" in out.stderr
    assert calls == []
