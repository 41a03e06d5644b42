"""The twin's function host: loads `function_app.app` and invokes *its* registered functions.

It reads each function's trigger and bindings the way the Functions host does, builds the binding
values the Python worker would pass (HttpRequest, QueueMessage, durable client JSON, entity batch
JSON, Web PubSub request JSON) and calls the user function. No function logic lives here.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

DURABLE_PATH = "/runtime/webhooks/durabletask"


def resolve(value: Any) -> Any:
    """Binding expressions: "%SETTING%" is read from app settings, as the host does."""
    if isinstance(value, str):
        return re.sub(r"%([^%]+)%", lambda m: os.environ.get(m.group(1), ""), value)
    return value


@dataclass
class Registered:
    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    fn: Callable[..., Any]
    route: re.Pattern[str] | None = None
    methods: set[str] = field(default_factory=set)

    @property
    def trigger_type(self) -> str:
        return self.trigger["type"]


def _route_regex(template: str) -> re.Pattern[str]:
    """Functions route templates: {name}, {name:constraint}, {*catchall}; catch-alls may be empty."""

    def part(p: str) -> str:
        if not p.startswith("{"):
            return re.escape(p)
        name = p[1:-1].split(":")[0]
        return f"(?P<{name[1:]}>.*)" if name.startswith("*") else f"(?P<{name}>[^/]+)"

    return re.compile("^" + "".join(part(p) for p in re.split(r"(\{[^}]+\})", template.strip("/"))) + "$")


_INDEXED: dict[int, tuple[Any, list[Any]]] = {}


def indexed_functions(app: Any) -> list[Any]:
    """`app.get_functions()` once per app object: the library refuses to index an app twice
    ("does not have a unique function name"), and tests build more than one host per process."""
    if id(app) not in _INDEXED:
        _INDEXED[id(app)] = (app, app.get_functions())
    return _INDEXED[id(app)][1]


class FunctionHost:
    def __init__(self, app_module: str = "function_app", durable_base_url: str = "") -> None:
        module = importlib.import_module(app_module)
        self.app = module.app
        self.root = Path(module.__file__ or ".").resolve().parent  # the app's folder: host.json lives here
        self.durable_base_url = durable_base_url
        # Azure's rpcBaseUrl (http://127.0.0.1:17071/durabletask/) listens on the worker's loopback
        # only; the twin serves the durable API on its public port, so the path carries a secret
        # minted per run. The Python SDK builds every URL from rpcBaseUrl and adds no key of its own.
        self.durable_secret = secrets.token_urlsafe(24)
        self.functions: list[Registered] = []
        self.function_json: dict[str, dict[str, Any]] = {}
        for f in indexed_functions(self.app):
            meta = json.loads(f.get_function_json())  # what the Python worker reports to the host
            self.function_json[f.get_function_name()] = meta
            bindings = [{k: resolve(v) for k, v in b.items()} for b in meta["bindings"]]
            trigger = next(b for b in bindings if b["type"].endswith("Trigger"))
            reg = Registered(f.get_function_name(), trigger, bindings, f.get_user_function())
            if reg.trigger_type == "httpTrigger":
                reg.route = _route_regex(trigger.get("route") or reg.name)
                reg.methods = {m.upper() for m in trigger.get("methods") or []}
            self.functions.append(reg)

    # -- lookup ---------------------------------------------------------------------------

    def by_type(self, trigger_type: str) -> list[Registered]:
        return [f for f in self.functions if f.trigger_type == trigger_type]

    def http(self, method: str, path: str) -> tuple[Registered, dict[str, str]] | None:
        """Literal routes win over catch-alls, as in ASP.NET routing."""
        candidates = sorted(self.by_type("httpTrigger"), key=lambda f: "{*" in (f.trigger.get("route") or ""))
        for f in candidates:
            m = f.route.match(path.strip("/")) if f.route else None
            if m and (not f.methods or method.upper() in f.methods):
                return f, m.groupdict()
        return None

    def entity(self, name: str) -> Registered | None:
        return next((f for f in self.by_type("entityTrigger") if f.trigger.get("entityName") == name), None)

    def webpubsub(self, hub: str, event_type: str, event_name: str) -> Registered | None:
        for f in self.by_type("webPubSubTrigger"):
            t = f.trigger
            if t.get("hub") == hub and t.get("eventType") == event_type and t.get("eventName") == event_name:
                return f
        return None

    # -- invocation -----------------------------------------------------------------------

    def durable_client_json(self) -> str:
        """The durableClient binding value, pointing the SDK at the twin's durabletask webhooks."""
        base = f"{self.durable_base_url.rstrip('/')}{DURABLE_PATH}/{self.durable_secret}/"
        urls = {
            "createNewInstancePostUri": base + "orchestrators/{functionName}[/{instanceId}]",
            "createAndWaitOnNewInstancePostUri": base + "orchestrators/{functionName}[/{instanceId}]",
        }
        return json.dumps(
            {
                "taskHubName": "babelroomtwin",
                "creationUrls": urls,
                "managementUrls": {"id": ""},
                "baseUrl": base,
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": base,
            }
        )

    async def invoke(self, f: Registered, trigger_value: Any) -> Any:
        kwargs: dict[str, Any] = {}
        for b in f.bindings:
            if b.get("direction") != "IN":
                continue
            if b["type"] == "durableClient":
                kwargs[b["name"]] = self.durable_client_json()
            elif b["name"] == f.trigger["name"]:
                kwargs[b["name"]] = trigger_value
        sig = inspect.signature(f.fn)
        if "context" in sig.parameters and "context" not in kwargs:
            kwargs["context"] = _InvocationContext(f.name)
        if inspect.iscoroutinefunction(f.fn):
            return await f.fn(**kwargs)
        # The Python worker runs sync functions on a thread pool; so does the twin.
        return await asyncio.to_thread(f.fn, **kwargs)

    async def invoke_http(self, f: Registered, request: func.HttpRequest) -> func.HttpResponse:
        out = await self.invoke(f, request)
        if isinstance(out, func.HttpResponse):
            return out
        return func.HttpResponse(out if isinstance(out, str | bytes) else json.dumps(out))


@dataclass
class _InvocationContext:
    function_name: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def http_request(
    method: str,
    url: str,
    headers: dict[str, str],
    params: dict[str, str],
    route_params: dict[str, str],
    body: bytes,
) -> func.HttpRequest:
    return func.HttpRequest(
        method=method, url=url, headers=headers, params=params, route_params=route_params, body=body
    )


def queue_message(msg_id: str, body: bytes, dequeue_count: int, pop_receipt: str | None) -> func.QueueMessage:
    """The worker's own QueueMessage type (it carries dequeue_count, the public one does not)."""
    from azure.functions.queue import QueueMessage

    return QueueMessage(id=msg_id, body=body, dequeue_count=dequeue_count, pop_receipt=pop_receipt)
