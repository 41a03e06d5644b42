"""Web PubSub connection strings and access tokens, as the Azure service checks them.

The official SDKs sign every token themselves (HS256, key = the AccessKey string as UTF-8 bytes),
so the twin gateway only has to verify exactly what the service would: client tokens whose
``aud`` is ``{endpoint}/client/hubs/{hub}`` and REST tokens whose ``aud`` is the request URL.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

LEEWAY_SECONDS = 5
"""Clock skew tolerated on ``exp``/``nbf``: both sides run on the same machine in the twin."""


class TokenError(Exception):
    """The token is missing, badly signed, expired or meant for another audience."""


@dataclass(frozen=True)
class ConnectionString:
    """The parts of ``Endpoint=...;AccessKey=...;Version=1.0;[Port=...;]`` that matter."""

    endpoint: str  # scheme://host[:port], no trailing slash
    access_key: str
    version: str = "1.0"

    @property
    def key_bytes(self) -> bytes:
        """The HMAC key: the AccessKey string itself, not its base64 decoding (as the SDKs do)."""
        return self.access_key.encode("utf-8")


def parse_connection_string(connection_string: str) -> ConnectionString:
    """Parse a Web PubSub connection string; ``Port=`` is appended to the endpoint like the SDK does."""
    parts: dict[str, str] = {}
    for item in connection_string.split(";"):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"malformed connection string segment: {item!r}")
        parts[key.strip().lower()] = value.strip()
    endpoint = parts.get("endpoint")
    key = parts.get("accesskey")
    if not endpoint or not key:
        raise ValueError("connection string needs Endpoint= and AccessKey=")
    endpoint = endpoint.rstrip("/")
    port = parts.get("port")
    if port:
        parsed = urllib.parse.urlsplit(endpoint)
        endpoint = f"{parsed.scheme}://{parsed.hostname}:{int(port)}"
    return ConnectionString(endpoint=endpoint, access_key=key, version=parts.get("version", "1.0"))


def _norm_url(url: str) -> str:
    """Scheme-free, case-insensitive, unquoted ``host:port/path`` used to compare audiences."""
    parsed = urllib.parse.urlsplit(url.strip())
    host = (parsed.hostname or "").lower()
    port = parsed.port
    if port is None:
        port = 443 if parsed.scheme in ("https", "wss") else 80
    path = urllib.parse.unquote(parsed.path).rstrip("/").lower()
    return f"{host}:{port}{path}"


def _norm_path(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url.strip()).path).rstrip("/").lower()


def _decode(token: str, key: bytes) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["HS256", "HS384", "HS512"],
            options={"verify_aud": False, "require": ["exp"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from exc
    return claims


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def verify_client_token(token: str, key: bytes, hub: str, endpoints: Iterable[str]) -> dict[str, Any]:
    """Verify a client access token for ``hub``; ``endpoints`` are the base URLs we answer to."""
    claims = _decode(token, key)
    wanted = {_norm_url(f"{e.rstrip('/')}/client/hubs/{hub}") for e in endpoints}
    wanted_paths = {f"/client/hubs/{hub.lower()}"}
    for aud in _audiences(claims):
        norm = _norm_url(aud)
        if norm in wanted:
            return claims
        # Same machine, other spelling of the host (localhost vs 127.0.0.1): the path decides.
        if _norm_path(aud) in wanted_paths and urllib.parse.urlsplit(aud).hostname in _LOCAL_HOSTS:
            return claims
    raise TokenError("token audience does not match this hub")


def verify_rest_token(token: str, key: bytes, request_url: str, endpoints: Iterable[str]) -> dict[str, Any]:
    """Verify a REST bearer token, whose ``aud`` is the full request URL (query order ignored)."""
    claims = _decode(token, key)
    want_path = _norm_path(request_url)
    hosts = {_norm_url(e).split("/", 1)[0] for e in [*endpoints, request_url]}
    for aud in _audiences(claims):
        norm = _norm_url(aud)
        host = norm.split("/", 1)[0]
        host_ok = host in hosts or urllib.parse.urlsplit(aud).hostname in _LOCAL_HOSTS
        if host_ok and _norm_path(aud) == want_path:
            return claims
    raise TokenError("token audience does not match the request URL")


_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def sign_client_token(
    key: bytes,
    audience: str,
    *,
    user_id: str | None = None,
    roles: Iterable[str] = (),
    groups: Iterable[str] = (),
    minutes_to_expire: int = 60,
) -> str:
    """Mint a client access token like ``get_client_access_token`` / ``:generateToken`` do."""
    now = int(time.time())
    payload: dict[str, Any] = {"aud": audience, "iat": now, "exp": now + 60 * max(1, minutes_to_expire)}
    if user_id:
        payload["sub"] = user_id
    roles = list(roles)
    groups = list(groups)
    if roles:
        payload["role"] = roles
    if groups:
        payload["webpubsub.group"] = groups
    return jwt.encode(payload, key, algorithm="HS256")


def claim_list(claims: Mapping[str, Any], name: str) -> list[str]:
    """A claim as the list of strings the service passes upstream (single values become lists)."""
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def connection_signature(key: bytes, connection_id: str) -> str:
    """``ce-signature`` value: ``sha256=`` + hex HMAC of the connection id, as upstreams validate it."""
    digest = hmac.new(key, connection_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def event_signature(access_keys: Iterable[str], connection_id: str) -> str:
    """``ce-signature`` for several keys (primary, secondary): one ``sha256=...`` per key, comma separated."""
    return ",".join(connection_signature(k.encode("utf-8"), connection_id) for k in access_keys)


def verify_event_signature(access_keys: Iterable[str], connection_id: str, header: str | None) -> bool:
    """What an event handler checks: some ``sha256=`` value in ``ce-signature`` matches one of its keys."""
    if not header:
        return False
    offered = [s.strip() for s in header.split(",")]
    for key in access_keys:
        expected = connection_signature(key.encode("utf-8"), connection_id)
        if any(hmac.compare_digest(expected, s) for s in offered):
            return True
    return False
