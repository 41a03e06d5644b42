"""The REST data plane under ``/api/hubs/{hub}``, as the service SDKs call it (api-version 2024-12-01).

Every call needs a bearer token whose ``aud`` is the request URL; answers use the status codes
the SDKs expect (202 for sends, 200/204 for membership, 404 for "does not exist").
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable

from aiohttp import web

from babelroom.twin.wpsauth import TokenError, sign_client_token, verify_rest_token

from .connection import Connection, ConnectionManager
from .wire import HUB_NAME_RE, ROLE_JOIN_LEAVE, ROLE_SEND_TO_GROUP, Data, Out, loads, valid_group

log = logging.getLogger("babelroom.twin.gateway")


class RestDataPlane(ConnectionManager):
    """REST side of the gateway (mixed into :class:`Gateway`)."""

    max_message_bytes: int

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._rest_inner(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("REST %s %s failed", request.method, request.path)
            return _error(500, "InternalServerError", "Internal server error.")

    async def _rest_inner(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        segments = [urllib.parse.unquote(s) for s in raw_path.split("/")[3:]]  # after /api/hubs/
        if not segments or not segments[0]:
            return _error(404, "NotFound", "Unknown route.")
        hub_raw, rest = segments[0], segments[1:]
        if rest and rest[-1] == "":
            rest = rest[:-1]
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return _error(401, "Unauthorized", "Missing bearer token.")
        try:
            verify_rest_token(auth[7:].strip(), self.cs.key_bytes, str(request.url), self._endpoints(request))
        except TokenError as exc:
            return _error(401, "Unauthorized", str(exc))
        if not HUB_NAME_RE.match(hub_raw):
            return _error(400, "BadRequest", "Invalid hub name.")
        hub = hub_raw.lower()
        method = request.method.upper()
        route = self._match(method, rest)
        if route is None:
            return _error(404, "NotFound", f"Unknown route {method} {raw_path}.")
        handler, args = route
        return await handler(request, hub, *args)

    def _match(
        self, method: str, rest: list[str]
    ) -> tuple[Callable[..., Awaitable[web.StreamResponse]], list[str]] | None:
        n = len(rest)
        table: list[tuple[str, tuple[str | None, ...], Callable[..., Awaitable[web.StreamResponse]]]] = [
            ("POST", (":send",), self._r_send_all),
            ("POST", (":closeConnections",), self._r_close_all),
            ("POST", (":generateToken",), self._r_generate_token),
            ("POST", ("groups", None, ":send"), self._r_send_group),
            ("POST", ("groups", None, ":closeConnections"), self._r_close_group),
            ("HEAD", ("groups", None), self._r_group_exists),
            ("GET", ("groups", None, "connections"), self._r_list_group),
            ("PUT", ("groups", None, "connections", None), self._r_add_to_group),
            ("DELETE", ("groups", None, "connections", None), self._r_remove_from_group),
            ("HEAD", ("connections", None), self._r_connection_exists),
            ("DELETE", ("connections", None), self._r_close_connection),
            ("POST", ("connections", None, ":send"), self._r_send_connection),
            ("DELETE", ("connections", None, "groups"), self._r_remove_connection_all_groups),
            ("HEAD", ("users", None), self._r_user_exists),
            ("POST", ("users", None, ":send"), self._r_send_user),
            ("POST", ("users", None, ":closeConnections"), self._r_close_user),
            ("PUT", ("users", None, "groups", None), self._r_add_user_to_group),
            ("DELETE", ("users", None, "groups", None), self._r_remove_user_from_group),
            ("DELETE", ("users", None, "groups"), self._r_remove_user_all_groups),
            ("PUT", ("permissions", None, "connections", None), self._r_grant),
            ("DELETE", ("permissions", None, "connections", None), self._r_revoke),
            ("HEAD", ("permissions", None, "connections", None), self._r_check_permission),
        ]
        for m, pattern, handler in table:
            if len(pattern) != n:
                continue
            if m != method:
                continue
            args: list[str] = []
            for want, got in zip(pattern, rest, strict=True):
                if want is None:
                    args.append(got)
                elif want.lower() != got.lower():
                    break
            else:
                return handler, args
        return None

    async def _body(self, request: web.Request) -> Data | web.Response:
        """Read a message body (413 when too large) and type it by Content-Type."""
        length = request.content_length
        if length is not None and length > self.max_message_bytes:
            return _error(413, "PayloadTooLarge", f"Message larger than {self.max_message_bytes} bytes.")
        body = await request.content.read(self.max_message_bytes + 1)
        if len(body) > self.max_message_bytes:
            return _error(413, "PayloadTooLarge", f"Message larger than {self.max_message_bytes} bytes.")
        ctype = (request.content_type or "").lower()
        if ctype in ("application/json", "text/json") or ctype.endswith("+json"):
            try:
                return Data("json", loads(body.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                return _error(400, "BadRequest", "The body is not valid JSON.")
        if ctype == "text/plain":
            try:
                return Data("text", body.decode(request.charset or "utf-8"))
            except (UnicodeDecodeError, LookupError):
                return _error(400, "BadRequest", "The body is not valid text.")
        if ctype in ("application/octet-stream", ""):
            return Data("binary", body)
        return _error(415, "UnsupportedMediaType", f"Unsupported Content-Type {ctype!r}.")

    def _filter_unsupported(self, request: web.Request) -> web.Response | None:
        if request.query.get("filter"):
            return _error(400, "BadRequest", "OData 'filter' is not supported by the twin gateway.")
        return None

    async def _r_send_all(self, request: web.Request, hub: str) -> web.StreamResponse:
        bad = self._filter_unsupported(request)
        if bad:
            return bad
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        excluded = set(request.query.getall("excluded", []))
        h = self._hubs.get(hub)
        if h is not None:
            out = Out(data)
            for cid, conn in list(h.connections.items()):
                if cid not in excluded:
                    self._deliver(conn, out)
        return web.Response(status=202)

    async def _r_send_group(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        bad = self._filter_unsupported(request)
        if bad:
            return bad
        if not valid_group(group):
            return _error(400, "BadRequest", "Invalid group name.")
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        self._send_group(hub, group, Out(data, group=group), request.query.getall("excluded", []))
        return web.Response(status=202)

    async def _r_send_connection(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        conn = self._conn(hub, cid)
        if conn is not None:
            self._deliver(conn, Out(data))
        return web.Response(status=202)

    async def _r_send_user(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        bad = self._filter_unsupported(request)
        if bad:
            return bad
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        h = self._hubs.get(hub)
        if h is not None:
            out = Out(data)
            for cid in list(h.users.get(user, ())):
                conn = h.connections.get(cid)
                if conn is not None:
                    self._deliver(conn, out)
        return web.Response(status=202)

    def _conn(self, hub: str, cid: str) -> Connection | None:
        h = self._hubs.get(hub)
        return h.connections.get(cid) if h else None

    def _reason(self, request: web.Request) -> str:
        return request.query.get("reason") or "Closed by the server."

    async def _r_close_all(self, request: web.Request, hub: str) -> web.StreamResponse:
        excluded = set(request.query.getall("excluded", []))
        h = self._hubs.get(hub)
        for cid, conn in list(h.connections.items()) if h else []:
            if cid not in excluded:
                self._close(conn, self._reason(request))
        return web.Response(status=204)

    def _close_members(self, request: web.Request, hub: str, members: str, key: str) -> web.StreamResponse:
        """Closes the connections of one group or one user (`members` names the index), minus `excluded`."""
        excluded = set(request.query.getall("excluded", []))
        h = self._hubs.get(hub)
        if h is not None:
            for cid in list(getattr(h, members).get(key, ())):
                conn = h.connections.get(cid)
                if conn is not None and cid not in excluded:
                    self._close(conn, self._reason(request))
        return web.Response(status=204)

    async def _r_close_group(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        return self._close_members(request, hub, "groups", group)

    async def _r_close_user(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        return self._close_members(request, hub, "users", user)

    async def _r_close_connection(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        conn = self._conn(hub, cid)
        if conn is not None:
            self._close(conn, self._reason(request))
        return web.Response(status=204)

    async def _r_generate_token(self, request: web.Request, hub: str) -> web.StreamResponse:
        try:
            minutes = int(request.query.get("minutesToExpire", "60"))
        except ValueError:
            return _error(400, "BadRequest", "minutesToExpire must be an integer.")
        audience = f"{self.cs.endpoint}/client/hubs/{hub}"
        token = sign_client_token(
            self.cs.key_bytes,
            audience,
            user_id=request.query.get("userId"),
            roles=request.query.getall("role", []),
            groups=request.query.getall("group", []),
            minutes_to_expire=minutes,
        )
        return web.json_response({"token": token})

    async def _r_group_exists(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        h = self._hubs.get(hub)
        return web.Response(status=200 if h and h.groups.get(group) else 404)

    async def _r_list_group(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        h = self._hubs.get(hub)
        value = []
        for cid in sorted(h.groups.get(group, ())) if h else []:
            conn = h.connections.get(cid) if h else None
            if conn is not None:
                value.append({"connectionId": cid, "userId": conn.user_id})
        return web.json_response({"value": value, "nextLink": None})

    async def _r_add_to_group(self, request: web.Request, hub: str, group: str, cid: str) -> web.StreamResponse:
        if not valid_group(group):
            return _error(400, "BadRequest", "Invalid group name.")
        conn = self._conn(hub, cid)
        if conn is None:
            return _error(404, "NotFound", f"Connection {cid} does not exist.")
        self._join(self._hub(hub), conn, group)
        return web.Response(status=200)

    async def _r_remove_from_group(self, request: web.Request, hub: str, group: str, cid: str) -> web.StreamResponse:
        conn = self._conn(hub, cid)
        if conn is not None:
            self._leave(self._hub(hub), conn, group)
        return web.Response(status=204)

    async def _r_connection_exists(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        return web.Response(status=200 if self._conn(hub, cid) is not None else 404)

    async def _r_remove_connection_all_groups(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        conn = self._conn(hub, cid)
        if conn is not None:
            h = self._hub(hub)
            for g in list(conn.groups):
                self._leave(h, conn, g)
        return web.Response(status=204)

    async def _r_user_exists(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        h = self._hubs.get(hub)
        return web.Response(status=200 if h and h.users.get(user) else 404)

    async def _r_add_user_to_group(self, request: web.Request, hub: str, user: str, group: str) -> web.StreamResponse:
        if not valid_group(group):
            return _error(400, "BadRequest", "Invalid group name.")
        h = self._hub(hub)
        h.user_groups.setdefault(user, set()).add(group)  # new connections of the user join too
        for cid in list(h.users.get(user, ())):
            conn = h.connections.get(cid)
            if conn is not None:
                self._join(h, conn, group)
        return web.Response(status=200)

    async def _r_remove_user_from_group(
        self, request: web.Request, hub: str, user: str, group: str
    ) -> web.StreamResponse:
        h = self._hub(hub)
        h.user_groups.get(user, set()).discard(group)
        for cid in list(h.users.get(user, ())):
            conn = h.connections.get(cid)
            if conn is not None:
                self._leave(h, conn, group)
        return web.Response(status=204)

    async def _r_remove_user_all_groups(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        h = self._hub(hub)
        h.user_groups.pop(user, None)
        for cid in list(h.users.get(user, ())):
            conn = h.connections.get(cid)
            if conn is not None:
                for g in list(conn.groups):
                    self._leave(h, conn, g)
        return web.Response(status=204)

    def _role(self, request: web.Request, permission: str) -> str | web.Response:
        names = {"sendtogroup": ROLE_SEND_TO_GROUP, "joinleavegroup": ROLE_JOIN_LEAVE}
        base = names.get(permission.lower())
        if base is None:
            return _error(400, "BadRequest", f"Unknown permission {permission!r}.")
        target = request.query.get("targetName")
        return f"{base}.{target}" if target else base

    async def _r_grant(self, request: web.Request, hub: str, permission: str, cid: str) -> web.StreamResponse:
        role = self._role(request, permission)
        if isinstance(role, web.Response):
            return role
        conn = self._conn(hub, cid)
        if conn is None:
            return _error(404, "NotFound", f"Connection {cid} does not exist.")
        conn.roles.add(role)
        return web.Response(status=200)

    async def _r_revoke(self, request: web.Request, hub: str, permission: str, cid: str) -> web.StreamResponse:
        role = self._role(request, permission)
        if isinstance(role, web.Response):
            return role
        conn = self._conn(hub, cid)
        if conn is not None:
            conn.roles.discard(role)
        return web.Response(status=204)

    async def _r_check_permission(
        self, request: web.Request, hub: str, permission: str, cid: str
    ) -> web.StreamResponse:
        role = self._role(request, permission)
        if isinstance(role, web.Response):
            return role
        conn = self._conn(hub, cid)
        return web.Response(status=200 if conn is not None and role in conn.roles else 404)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)

