"""The Web PubSub Functions extension, as the twin host runs it: CloudEvents in, the function's return
value out, with Azure's rules for what that return value becomes (issue 10, "The strict twin").

A `webPubSubTrigger` function's return value travels three hops on Azure, each modelled here from
its source (docs/architecture.md, "How the twin host encodes return values"):

1. The Python worker encodes it as a gRPC `TypedData` with the generic binding, because
   `webPubSubTrigger` is not in azure-functions' binding registry and the generic binding has an
   implicit output (no `$return` binding needed):
   Azure/azure-functions-python-worker `azure_functions_worker/bindings/generic.py`
   (`GenericBinding.encode`, `has_implicit_output`), `bindings/meta.py` (`get_binding`,
   `to_outgoing_proto`), `bindings/datumdef.py` (`datum_as_proto`), `functions.py`
   (`get_explicit_and_implicit_return`). → `worker_return()`.
2. The Functions host turns the `TypedData` into a .NET object (string → `System.String`,
   json → a Newtonsoft `JToken`, none → null) and hands it to the trigger's return value
   provider, since `WebPubSubTriggerAttribute` is `[Binding(TriggerHandlesReturnValue = true)]`:
   Azure/azure-functions-host `src/WebJobs.Script.Grpc/MessageExtensions/GrpcMessageConversionExtensions.cs`
   (`ToObject`), `src/WebJobs.Script/Description/Workers/WorkerFunctionDescriptorProvider.cs`.
   → `host_object()`.
3. The extension builds the webhook response: a `JToken` must be a JSON object (else 500); a
   `code` other than success is an error (userError 400, unauthorized 401, serverError 500);
   a connect object becomes the connect response JSON; a user-event object needs `data` (an
   empty `{}` dereferences null content: 500); null is a bare 200; **any other type (a `str`!)
   is logged "Invalid response type" and answered with a bare 200**, so a connect is accepted
   with no groups and a refusal is lost:
   Azure/azure-sdk-for-net, under `sdk/webpubsub/Microsoft.Azure.WebJobs.Extensions.WebPubSub/`:
   `src/Trigger/WebPubSubTriggerDispatcher.cs` (`ExecuteAsync`, `TryParseCloudEvents`),
   `src/Utilities.cs` (`BuildValidResponse`, `BuildUserEventResponse`, `GetStatusCode`),
   `src/Config/RequestValidator.cs` (abuse protection, `ce-signature`),
   `src/Bindings/BinaryDataJsonConverter.cs` (`data` in and out).
   → `extension_response()`, `WebPubSubExtension`.

`WebPubSubExtension` serves `/runtime/webhooks/webpubsub` like the extension does, and
`FunctionEventSink` lets the in-process gateway call that same code with the CloudEvents the
service would send, reading the answer the way the service reads it.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .gateway import ConnectionContext, ConnectResult, UserEventResult
from .gateway.upstream import (
    HttpUpstream,
    UpstreamValidationError,
    encode_states,
    read_connect,
    read_user_event,
)
from .gateway.upstream import decode_states as service_states
from .host import FunctionHost
from .wpsauth import connection_signature, parse_connection_string

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/runtime/webhooks/webpubsub"
SYSTEM_PREFIX = "azure.webpubsub.sys."
USER_PREFIX = "azure.webpubsub.user."
CONTENT_TYPES = {"binary": "application/octet-stream", "json": "application/json", "text": "text/plain"}
DATA_TYPES = {v: k for k, v in CONTENT_TYPES.items()}
ERROR_STATUS = {"unauthorized": 401, "usererror": 400, "servererror": 500}
STATUS_CODES = ("success", "unauthorized", "usererror", "servererror")  # WebPubSubStatusCode, in order
NULL_REFERENCE = "Object reference not set to an instance of an object."


# -- 1. the Python worker ---------------------------------------------------------------------


@dataclass(frozen=True)
class TypedData:
    """The gRPC `TypedData` the worker sends: `kind` is the protobuf oneof field that is set."""

    kind: str  # "string" | "bytes" | "json" | "int" | "double"
    value: Any


def worker_return(value: Any) -> TypedData | None:
    """`GenericBinding.encode` + `datum_as_proto`: what leaves the worker for a return value.

    None sends no TypedData at all; a dict or list becomes json; a bool is an int (the worker
    tests `int` first). Anything else fails the invocation, as in the worker."""
    if isinstance(value, str):
        return TypedData("string", value)
    if isinstance(value, bytes | bytearray):
        return TypedData("bytes", bytes(value))
    if value is None:
        return None
    if isinstance(value, dict | list):
        return TypedData("json", json.dumps(value))
    if isinstance(value, int):
        return TypedData("int", int(value))
    if isinstance(value, float):
        return TypedData("double", value)
    raise TypeError(f'unable to encode outgoing TypedData: unsupported type "generic" for Python type '
                    f'"{type(value).__name__}"')


# -- 2. the Functions host --------------------------------------------------------------------


@dataclass(frozen=True)
class JToken:
    """A Newtonsoft JToken: what the host makes of a json TypedData (a str stays a .NET string)."""

    value: Any


def host_object(data: TypedData | None) -> Any:
    """`GrpcMessageConversionExtensions.ToObject`."""
    if data is None:
        return None
    if data.kind == "json":
        return JToken(json.loads(data.value))
    return data.value


def dotnet_type(obj: Any) -> str:
    """The type name the extension logs in "Invalid response type …"."""
    if isinstance(obj, JToken):
        return "Newtonsoft.Json.Linq.JToken"
    return {str: "System.String", bytes: "System.Byte[]", int: "System.Int64",
            float: "System.Double"}.get(type(obj), type(obj).__name__)


# -- 3. the extension -------------------------------------------------------------------------


@dataclass
class WebhookResponse:
    """An HTTP response of the extension's webhook."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def decode_states(header: str | None) -> dict[str, Any]:
    """The extension's reading of `ce-connectionState`: absent is no state, garbage is a 400
    (the service side, `upstream.decode_states`, tolerates garbage instead)."""
    if not header:
        return {}
    states = service_states(header)
    if states is None:
        raise ValueError("ce-connectionState is not base64 of a JSON object")
    return states


def _error(code: str, message: str | None) -> WebhookResponse:
    return WebhookResponse(ERROR_STATUS.get(code.lower(), 500), (message or "").encode(), "text/plain; charset=utf-8")


def _status_code(value: Any) -> str:
    """`code.ToObject<WebPubSubStatusCode>()`: a name (any case) or the enum's number."""
    if isinstance(value, str) and value.lower() in STATUS_CODES:
        return value.lower()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(STATUS_CODES):
        return STATUS_CODES[value]
    raise ValueError(f"Error converting value {json.dumps(value)} to type "
                     "'Microsoft.Azure.WebPubSub.Common.WebPubSubStatusCode'. Path 'code'.")


def _binary_data(value: Any) -> bytes | None:
    """`BinaryDataJsonConverter.ReadJson`: a string, or a Node-style `{"type": "Buffer", "data": [...]}`."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and value.get("type") is not None:
        return bytes(value.get("data") or [])
    raise ValueError("Message should be string, please stringify object.")


def _data_type(value: Any) -> str:
    """`WebPubSubDataType`: Binary, Json, Text, in that order; a missing one is the enum's default,
    Binary (UserEventResponse has no initialiser for it)."""
    names = ("binary", "json", "text")
    if value is None:
        return "binary"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str) and value.lower() in names:
        return value.lower()
    raise ValueError(f"Requested value '{value}' was not found.")


def _merged_states(context_states: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """`GetStatesFromJson` + `UpdateStates`: the response's `states` object overrides key by key."""
    merged = dict(context_states)
    new = response.get("states")
    if isinstance(new, dict):
        for k, v in new.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
    return merged


def extension_response(request_type: str, returned: Any, context_states: Mapping[str, Any] | None = None
                       ) -> WebhookResponse:
    """The webhook response for what the host handed the trigger (`WebPubSubTriggerDispatcher` +
    `Utilities.BuildValidResponse`). `request_type`: connect, connected, disconnected or user."""
    if request_type not in ("connect", "user") or returned is None:
        return WebhookResponse(200)
    if not isinstance(returned, JToken):
        log.warning("Invalid response type %s regarding current request: %s", dotnet_type(returned),
                    request_type.capitalize())
        return WebhookResponse(200)
    try:
        response = returned.value
        if not isinstance(response, dict):
            raise ValueError("Response should be a JObject.")
        if "code" in response and _status_code(response["code"]) != "success":
            code = _status_code(response["code"])
            message = response.get("errorMessage")
            return _error(code, message if isinstance(message, str) or message is None else json.dumps(message))
        merged = _merged_states(context_states or {}, response)
        headers = {"ce-connectionState": encode_states(merged)} if merged else {}
        if request_type == "connect":
            body = {k: response.get(k) for k in ("userId", "groups", "subprotocol", "roles")}
            return WebhookResponse(200, json.dumps(body).encode(), CONTENT_TYPES["json"], headers)
        data = _binary_data(response.get("data"))
        data_type = _data_type(response.get("dataType"))
        if data is None:  # `result.Content.Headers` on a response without content
            raise ValueError(NULL_REFERENCE)
        return WebhookResponse(200, data, CONTENT_TYPES[data_type], headers)
    except Exception as e:
        return _error("serverError", str(e))


# -- the webhook ------------------------------------------------------------------------------


def _header_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class WebPubSubExtension:
    """`/runtime/webhooks/webpubsub` of the Functions host with the Web PubSub extension loaded."""

    def __init__(self, host: FunctionHost, connection_string: str | None) -> None:
        self.host = host
        self.allowed: dict[str, bytes] = {}  # service host → access key: RequestValidator._allowedHosts
        if connection_string:
            cs = parse_connection_string(connection_string)
            self.allowed[urllib.parse.urlsplit(cs.endpoint).hostname or ""] = cs.key_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", WEBHOOK_PATH, self._aiohttp)

    async def _aiohttp(self, request: web.Request) -> web.Response:
        res = await self.handle(request.method, request.headers, await request.read())
        out = web.Response(status=res.status, body=res.body, headers=res.headers)
        if res.content_type:
            out.headers["Content-Type"] = res.content_type
        return out

    def valid_host(self, hosts: list[str]) -> bool:
        return not self.allowed or any(h in self.allowed for h in hosts)

    def valid_signature(self, origin: str | None, signature: str | None, connection_id: str) -> bool:
        """`RequestValidator.IsValidSignature`: HMAC-SHA256 of the connection id with the origin's key."""
        if not self.allowed:
            return True
        for host in _header_list(origin):
            if host in self.allowed:
                expected = connection_signature(self.allowed[host], connection_id).lower()
                return expected in (s.lower() for s in _header_list(signature))
        return False

    async def handle(self, method: str, headers: Mapping[str, str], body: bytes) -> WebhookResponse:
        """`WebPubSubTriggerDispatcher.ExecuteAsync`, in its order: abuse protection, CloudEvents,
        listener lookup (404), signature (401), POST only (400), the function, the response."""
        h = {k.lower(): v for k, v in headers.items()}
        if method.upper() == "OPTIONS" and h.get("webhook-request-origin"):
            if self.valid_host(_header_list(h["webhook-request-origin"])):
                return WebhookResponse(200, headers={"WebHook-Allowed-Origin": "*"})
            return WebhookResponse(400)
        try:
            connection_id, hub = h["ce-connectionid"], h["ce-hub"]
            ce_type, event_name, origin = h["ce-type"], h["ce-eventname"], h["webhook-request-origin"]
            states = decode_states(h.get("ce-connectionstate"))
        except (KeyError, ValueError):
            return WebhookResponse(400)
        event_type = "system" if ce_type.lower().startswith(SYSTEM_PREFIX) else "user"
        f = self.host.webpubsub(hub, event_type, event_name)
        if f is None:
            return WebhookResponse(404)
        if not self.valid_signature(origin, h.get("ce-signature"), connection_id):
            return WebhookResponse(401)
        if method.upper() != "POST":
            return WebhookResponse(400)
        request_type = event_name.lower() if event_type == "system" else "user"
        if request_type not in ("connect", "connected", "disconnected", "user"):
            request_type = "ignored"
        context = {"hub": hub, "connectionId": connection_id, "userId": h.get("ce-userid"),
                   "eventType": event_type, "eventName": event_name, "signature": h.get("ce-signature"),
                   "origin": origin, "headers": {k: [v] for k, v in headers.items()}, "states": states}
        try:
            request = self._request(request_type, context, h.get("content-type"), body)
        except ValueError as e:
            return WebhookResponse(400, str(e).encode(), "text/plain; charset=utf-8")
        try:
            returned = host_object(worker_return(await self.host.invoke(f, json.dumps(request))))
        except Exception as e:
            # Azure: the invocation fails and the webhook waits until the service gives up. The twin
            # answers a 500 at once instead (more lenient; test_webhook_unhandled_exception_is_a_500).
            log.exception("webPubSubTrigger %s failed", f.name)
            return _error("serverError", f"{type(e).__name__} in {f.name} (on Azure: no answer until timeout)")
        return extension_response(request_type, returned, states)

    @staticmethod
    def _request(request_type: str, context: dict[str, Any], content_type: str | None, body: bytes
                 ) -> dict[str, Any]:
        """The `request` JSON a non-.NET worker gets (the extension's WebPubSubEventRequest)."""
        req: dict[str, Any] = {"connectionContext": context}
        if request_type == "connect":
            b = json.loads(body or b"{}")
            req |= {"claims": b.get("claims"), "query": b.get("query"), "subprotocols": b.get("subprotocols"),
                    "clientCertificates": b.get("clientCertificates"), "headers": b.get("headers")}
        elif request_type == "disconnected":
            req["reason"] = json.loads(body or b"{}").get("reason")
        elif request_type == "user":
            media = (content_type or "").split(";")[0].strip().lower()
            if media not in DATA_TYPES:
                raise ValueError(f"Not supported data type: {media}")
            # BinaryDataJsonConverter writes BinaryData as its UTF-8 text, whatever the data type
            req |= {"data": body.decode("utf-8", "replace"), "dataType": DATA_TYPES[media]}
        return req


# -- the in-process gateway → the extension, as the service would call it -----------------------


class FunctionEventSink(HttpUpstream):
    """`HttpUpstream` without the socket, for tests that drive the extension in-process: the same
    CloudEvents request, signature and reading of the answer; only the transport differs. The
    twin itself calls its webhook over HTTP (babelroom/twin/server.py)."""

    def __init__(self, host: FunctionHost, connection_string: str | None = None) -> None:
        self.host = host
        self.extension = WebPubSubExtension(host, connection_string)
        origin = next(iter(self.extension.allowed), "localhost")
        key = parse_connection_string(connection_string).access_key if connection_string else "unsigned"
        super().__init__(WEBHOOK_PATH, [key], origin=origin)

    async def validate(self) -> None:
        res = await self.extension.handle("OPTIONS", {"WebHook-Request-Origin": self.origin}, b"")
        if res.status >= 300:
            raise UpstreamValidationError(f"origin {self.origin!r} refused ({res.status})")

    async def _post(self, ce_type: str, context: ConnectionContext, body: bytes,
                    content_type: str) -> tuple[int, str, bytes, dict[str, Any] | None]:
        res = await self.extension.handle("POST", self._headers(ce_type, context, content_type), body)
        raw = res.headers.get("ce-connectionState")
        return res.status, res.content_type or "", res.body, service_states(raw) if raw else None


# -- the service's reading of a webhook answer (the gateway's own readers) ----------------------


def service_connect_result(res: WebhookResponse, token_user: str | None) -> ConnectResult:
    raw = res.headers.get("ce-connectionState")
    return read_connect(res.status, res.body, service_states(raw) if raw else None, token_user)


def service_user_result(res: WebhookResponse) -> UserEventResult:
    raw = res.headers.get("ce-connectionState")
    return read_user_event(res.status, res.content_type or "", res.body, service_states(raw) if raw else None)
