"""local.settings.sample.json is usable as is for `func start` (issue 10 defect 8): every value parses
with the SDK that reads it, no placeholder breaks an extension at start, every declared setting is
there, and a laptop without a managed identity gets DefaultAzureCredential."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlparse

import pytest
from test_bicep import REPO

from babelroom.config import SETTINGS, Settings

VALUES: dict[str, str] = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]


def test_every_declared_setting_is_in_the_sample_and_nothing_else() -> None:
    assert set(VALUES) - {"FUNCTIONS_WORKER_RUNTIME"} == set(SETTINGS)
    assert VALUES["FUNCTIONS_WORKER_RUNTIME"] == "python"


@pytest.mark.parametrize("name", sorted(VALUES))
def test_no_placeholder(name: str) -> None:
    assert not any(c in VALUES[name] for c in "<>{}"), f"{name}={VALUES[name]!r} is a placeholder"


def test_storage_connection_parses_for_the_host_and_the_adapters() -> None:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    from babelroom.adapters.storage import connection_string

    assert VALUES["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"  # what the host understands
    conn = connection_string(VALUES["AzureWebJobsStorage"])
    assert BlobServiceClient.from_connection_string(conn).account_name == "devstoreaccount1"
    assert QueueServiceClient.from_connection_string(conn).url.startswith("http://127.0.0.1:10001/")


def test_web_pubsub_connection_string_parses_with_a_real_key() -> None:
    """The extension parses this at start: Endpoint URL, base64 AccessKey, Version."""
    from azure.messaging.webpubsubservice import WebPubSubServiceClient

    conn = VALUES["WebPubSubConnectionString"]
    parts = dict(p.split("=", 1) for p in conn.strip(";").split(";"))
    assert set(parts) == {"Endpoint", "AccessKey", "Version"} and parts["Version"] == "1.0"
    assert urlparse(parts["Endpoint"]).scheme == "http" and urlparse(parts["Endpoint"]).port
    assert len(base64.b64decode(parts["AccessKey"], validate=True)) >= 32
    client = WebPubSubServiceClient.from_connection_string(conn, hub=VALUES["WEBPUBSUB_HUB"])
    assert client._config.endpoint.rstrip("/") == parts["Endpoint"]


def test_urls_and_the_token_key() -> None:
    assert urlparse(VALUES["OPENAI_BASE_URL"]).scheme == "http"
    assert len(VALUES["BABELROOM_TOKEN_KEY"]) >= 32


def test_the_sample_builds_every_adapter_it_configures() -> None:
    from babelroom.adapters.realtime import RealtimeTranslator
    from babelroom.adapters.storage import aio_blob_service
    from babelroom.adapters.webpubsub import service_client

    s = Settings.from_env(VALUES)
    assert s.storage_account is None and s.client_id is None  # empty strings mean unset
    assert service_client(s) is not None and aio_blob_service(s) is not None
    assert RealtimeTranslator.from_settings(s).provider == "local"


def test_a_laptop_without_managed_identity_gets_default_azure_credential() -> None:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    from babelroom.adapters.credentials import credential

    laptop = Settings.from_env({"AzureWebJobsStorage__accountName": "acct"})
    assert isinstance(credential(laptop, aio=True), DefaultAzureCredential)
    azure = Settings.from_env({"AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001"})
    assert isinstance(credential(azure, aio=True), ManagedIdentityCredential)


def test_config_declares_every_name_any_adapter_reads() -> None:
    """One declaration (issue 13): adapters' own SETTINGS are subsets; Settings reads only SETTINGS."""
    import sys

    from babelroom.adapters import acs, realtime

    assert set(acs.SETTINGS) <= set(SETTINGS)
    assert set(realtime.SETTINGS) <= set(SETTINGS)
    sys.path.insert(0, str(REPO / "tests" / "adapters"))
    from recording_env import RecordingEnv

    env = RecordingEnv(VALUES)
    Settings.from_env(env)
    assert env.read <= set(SETTINGS), env.read - set(SETTINGS)


def test_functions_build_adapters_from_settings_not_the_environment() -> None:
    """The composition root is functions/deps.py; adapters and handlers never read os.environ."""
    offenders = []
    for path in [*(REPO / "babelroom" / "adapters").glob("*.py"), *(REPO / "functions").glob("*.py"),
                 *(REPO / "durable").glob("*.py")]:
        text = path.read_text()
        if "os.environ" in text and path.name != "realtime.py":  # realtime: default for direct callers
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
