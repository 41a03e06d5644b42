"""Web PubSub wire format: subprotocol names, close codes, roles and the message bodies.

Parsing of client frames for ``json.webpubsub.azure.v1`` / ``json.reliable.webpubsub.azure.v1``
and serialising of server frames (JSON subprotocols) and raw payloads (simple clients) live here,
so the client endpoint, the REST data plane and delivery all agree on one encoding. (The service's
protobuf subprotocols are not offered by the twin: the app and its SDKs use JSON only.)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

SUBPROTOCOL_JSON = "json.webpubsub.azure.v1"
SUBPROTOCOL_RELIABLE = "json.reliable.webpubsub.azure.v1"
SUPPORTED_SUBPROTOCOLS = (SUBPROTOCOL_RELIABLE, SUBPROTOCOL_JSON)

HUB_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_`,.\[\]]{0,127}$")
EVENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,127}$", re.IGNORECASE)
MAX_GROUP_NAME = 1024
CONTROL_ALLOWANCE = 64  # outbound queue headroom for acks/pongs above the data limit

ROLE_JOIN_LEAVE = "webpubsub.joinLeaveGroup"
ROLE_SEND_TO_GROUP = "webpubsub.sendToGroup"

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011



class BadFrame(Exception):
    """A client frame that does not follow the subprotocol."""


@dataclass(frozen=True)
class Data:
    """One message body with its Web PubSub data type (json value / str / bytes)."""

    data_type: str
    value: Any

    def raw(self) -> str | bytes:
        """What a simple WebSocket client receives: the text, the JSON text, or binary bytes."""
        if self.data_type == "binary":
            return bytes(self.value)
        if self.data_type == "text":
            return str(self.value)
        return json.dumps(self.value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def json_fields(self) -> str:
        """``"dataType":..,"data":..`` for the JSON subprotocols (binary as base64)."""
        if self.data_type == "binary":
            encoded: Any = base64.b64encode(bytes(self.value)).decode("ascii")
        else:
            encoded = self.value
        data = json.dumps(encoded, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return f'"dataType":"{self.data_type}","data":{data}'

    def size(self) -> int:
        raw = self.raw()
        return len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))


@dataclass
class Out:
    """A data message to fan out; the JSON frame is built once and only the sequenceId varies."""

    data: Data
    group: str | None = None
    from_user_id: str | None = None
    _prefix: str | None = None
    _raw: str | bytes | None = None

    def frame(self, sequence_id: int | None) -> str:
        if self._prefix is None:
            head: dict[str, Any] = {"type": "message"}
            if self.group is not None:
                head["from"] = "group"
                head["group"] = self.group
                if self.from_user_id is not None:
                    head["fromUserId"] = self.from_user_id
            else:
                head["from"] = "server"
            self._prefix = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
            self._prefix += "," + self.data.json_fields()
        if sequence_id is None:
            return self._prefix + "}"
        return f'{self._prefix},"sequenceId":{sequence_id}}}'

    def raw(self) -> str | bytes:
        if self._raw is None:
            self._raw = self.data.raw()
        return self._raw


def no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """Strict JSON (no NaN/Infinity), like the service's parser: what we relay must stay valid JSON."""
    return json.loads(text, parse_constant=no_constants)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def parse_client_data(msg: dict[str, Any]) -> Data:
    """Decode ``dataType``/``data`` of a sendToGroup/event frame as the service does."""
    if "data" not in msg:
        raise BadFrame("Missing required property 'data'.")
    data = msg["data"]
    data_type = msg.get("dataType", "json")
    if not isinstance(data_type, str):
        raise BadFrame("Expected 'dataType' to be a string.")
    data_type = data_type.lower()
    if data_type == "text":
        if not isinstance(data, str):
            raise BadFrame("'data' should be a string when 'dataType' is 'text'.")
        return Data("text", data)
    if data_type == "binary":
        if not isinstance(data, str):
            raise BadFrame("'data' is not a valid base64 encoded string.")
        try:
            return Data("binary", base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise BadFrame("'data' is not a valid base64 encoded string.") from exc
    if data_type == "json":
        if data is None:
            raise BadFrame("Invalid value for 'data': null.")
        return Data("json", data)
    raise BadFrame(f"Unknown 'dataType': {data_type}.")


def result_data(data: Any, data_type: str) -> Data:
    """Normalise an upstream response body into a message body."""
    data_type = (data_type or "json").lower()
    if data_type == "binary":
        if isinstance(data, str):
            return Data("binary", base64.b64decode(data))
        return Data("binary", bytes(data))
    if data_type == "text":
        if isinstance(data, (bytes, bytearray)):
            return Data("text", bytes(data).decode("utf-8"))
        return Data("text", str(data))
    if isinstance(data, (bytes, bytearray)):
        return Data("json", loads(bytes(data).decode("utf-8")))
    return Data("json", data)


def valid_group(group: Any) -> bool:
    return isinstance(group, str) and 0 < len(group) <= MAX_GROUP_NAME and not group.isspace()


def optional_uint(msg: dict[str, Any], name: str) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 1 << 64:
        raise BadFrame(f"'{name}' is not a valid uint64 value.")
    return value

