"""The twin's durable API answers only the durable client it handed this run's secret to.

On Azure the Python SDK's `rpcBaseUrl` is the worker's loopback listener; the twin serves the same
API on its public port, so a stranger who knows the path must still be refused. Driven with the
real `DurableOrchestrationClient` built from the binding value the twin host passes to functions.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from babelroom.twin.entities import DurableEntities
from babelroom.twin.host import DURABLE_PATH, FunctionHost


def counter(context: Any) -> None:
    state = context.get_state(lambda: 0)
    context.set_state(state + int(context.get_input()))


class Host:
    """What DurableEntities and `durable_client_json` read from FunctionHost, with one entity."""

    def __init__(self, base_url: str = "") -> None:
        import azure.durable_functions as df

        self.durable_base_url = base_url
        self.durable_secret = "s3cret-" + "x" * 24
        self.handle = df.Entity.create(counter)

    def entity(self, name: str) -> Any:
        return type("Registered", (), {"fn": staticmethod(self.handle)})() if name == "counter" else None

    async def invoke(self, f: Any, context: str) -> Any:
        return f.fn(context)

    durable_client_json = FunctionHost.durable_client_json


async def _drained(entities: DurableEntities) -> None:
    for ent in entities.entities.values():
        if ent.task is not None:
            await ent.task


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> Any:
    from azure.durable_functions.models.utils import http_utils

    # the SDK keeps one aiohttp session per process; one made on an earlier test's loop is dead here
    monkeypatch.setattr(http_utils, "_client_session", None)
    host = Host()
    entities = DurableEntities(host)  # type: ignore[arg-type]
    app = web.Application()
    entities.add_routes(app)
    server = TestServer(app)
    await server.start_server()
    host.durable_base_url = str(server.make_url("/"))
    yield host, entities, server
    await server.close()
    if http_utils._client_session is not None:
        await http_utils._client_session.close()


async def test_the_sdk_client_signals_and_reads_through_the_binding(served: Any) -> None:
    import azure.durable_functions as df

    host, entities, _ = served
    client = df.DurableOrchestrationClient(host.durable_client_json())
    assert f"{DURABLE_PATH}/{host.durable_secret}/" in json.loads(host.durable_client_json())["rpcBaseUrl"]
    await client.signal_entity(df.EntityId("counter", "k"), "add", 5)
    await _drained(entities)
    state = await client.read_entity_state(df.EntityId("counter", "k"))
    assert state.entity_exists and state.entity_state == 5


@pytest.mark.parametrize("path", [
    f"{DURABLE_PATH}/entities/counter/k",  # the public webhook shape, without a secret
    f"{DURABLE_PATH}/wrong-secret/entities/counter/k",
    f"{DURABLE_PATH}/s3cret-/entities/counter/k",  # a prefix of the secret
])
async def test_a_stranger_is_refused_and_nothing_runs(served: Any, path: str) -> None:
    _, entities, server = served
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url(path), params={"op": "add"}, data="7") as res:
            assert res.status == 401
        async with http.get(server.make_url(path)) as res:
            assert res.status == 401
    assert entities.entities == {}  # no entity was created or signalled
