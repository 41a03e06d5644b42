"""Every model name a setting carries is a deployment Bicep creates (issue 10 defect 5).

On Azure the realtime URL's `model` and a session's `audio.input.transcription.model` must each
name a deployment of the resource; `whisper-1` was carried but never deployed, so every
transcription would have failed after `azd up`. Checked from both sides: the app settings
main.bicep writes and local.settings.sample.json (which a developer points at the same resource).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bicep_eval import Evaluator, resource_body, resources_of_type
from test_bicep import INFRA, REPO, edit

from babelroom.adapters.realtime import DEFAULT_MODEL, DEFAULT_TRANSCRIPTION_MODEL
from babelroom.config import SETTINGS

DEPLOYMENT_TYPE = "Microsoft.CognitiveServices/accounts/deployments"
# Settings whose value is a model, i.e. on Azure a deployment name.
MODEL_SETTINGS = ("REALTIME_MODEL", "AZURE_OPENAI_DEPLOYMENT", "REALTIME_TRANSCRIPTION_MODEL")


def deployments(root: Path = INFRA) -> dict[str, str]:
    """Deployment name -> model name, as main.bicep instantiates openai.bicep."""
    ev = Evaluator(root)
    scope = ev.scope_of("modules/openai.bicep")
    out: dict[str, str] = {}
    for symbol in resources_of_type(scope.file, DEPLOYMENT_TYPE):
        name = ev.value(scope, resource_body(scope.file, symbol).get("name"))
        text = scope.file.text[scope.file.text.index(f"resource {symbol} "):]
        model_expr = text[text.index("model: {"):].split("name:", 1)[1].split("\n", 1)[0]
        model = ev.value(scope, model_expr)
        assert isinstance(name, str) and isinstance(model, str), f"deployment {symbol} not readable"
        out[name] = model
    return out


def model_problems(root: Path = INFRA, sample: Path = REPO / "local.settings.sample.json") -> list[str]:
    deployed = deployments(root)
    ev = Evaluator(root)
    code = ev.object_var(ev.main, "codeSettings")
    problems = []
    for setting in MODEL_SETTINGS:
        assert setting in SETTINGS
        if setting in code and code[setting] not in deployed:
            problems.append(f"{setting}: main.bicep sets {code[setting]!r}, not a deployment Bicep creates")
    values = json.loads(sample.read_text())["Values"]
    for setting in MODEL_SETTINGS:
        if values.get(setting) and values[setting] not in deployed:
            problems.append(f"{setting}: local.settings.sample.json carries {values[setting]!r}, not deployed")
    return problems


def test_every_model_a_setting_carries_is_deployed() -> None:
    assert model_problems() == []
    deployed = deployments()
    assert deployed["gpt-4o-mini-transcribe"] == "gpt-4o-mini-transcribe"
    assert "whisper-1" not in deployed
    # the code's defaults are deployments too, so an unset setting still names one
    assert {DEFAULT_MODEL, DEFAULT_TRANSCRIPTION_MODEL} <= set(deployed)
    ev = Evaluator(INFRA)
    code = ev.object_var(ev.main, "codeSettings")
    assert code["REALTIME_TRANSCRIPTION_MODEL"] == "gpt-4o-mini-transcribe"
    assert code["AZURE_OPENAI_DEPLOYMENT"] == code["REALTIME_MODEL"] == "gpt-realtime"


@pytest.mark.parametrize(
    ("rel", "old", "new", "expected"),
    [
        ("main.bicep", "  REALTIME_TRANSCRIPTION_MODEL: openAi.outputs.transcriptionDeploymentName\n",
         "  REALTIME_TRANSCRIPTION_MODEL: 'whisper-1'\n", "REALTIME_TRANSCRIPTION_MODEL: main.bicep sets 'whisper-1'"),
        ("main.bicep", "var transcriptionDeploymentName = transcriptionModelName\n",
         "var transcriptionDeploymentName = 'transcribe'\n", "local.settings.sample.json carries 'gpt-4o-mini-tr"),
        ("local.settings.sample.json", '"REALTIME_TRANSCRIPTION_MODEL": "gpt-4o-mini-transcribe"',
         '"REALTIME_TRANSCRIPTION_MODEL": "whisper-1"', "local.settings.sample.json carries 'whisper-1'"),
        ("main.bicep", "  REALTIME_MODEL: openAi.outputs.deploymentName\n", "  REALTIME_MODEL: 'gpt-4o-realtime'\n",
         "REALTIME_MODEL: main.bicep sets 'gpt-4o-realtime'"),
    ],
)
def test_model_contract_catches(rel: str, old: str, new: str, expected: str, tmp_path: Path) -> None:
    copy = tmp_path / "bicep"
    shutil.copytree(INFRA, copy)
    sample = tmp_path / "local.settings.sample.json"
    shutil.copy(REPO / "local.settings.sample.json", sample)
    if rel == "local.settings.sample.json":
        edit(rel, old, new)(tmp_path)
    else:
        edit(rel, old, new)(copy)
    problems = model_problems(copy, sample)
    assert any(expected in p for p in problems), problems
