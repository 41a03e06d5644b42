"""Serves the static client in web/ from the function app, so page and /api share one origin in
Azure as in the twin (no CORS, one deployment). host.json sets routePrefix "" for this.

Every answer, found or not, carries the page's security headers: a CSP that allows only this
origin's scripts and styles (no inline code), nosniff, and no framing (clickjacking).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

import azure.functions as func

bp = func.Blueprint()
WEB = (Path(__file__).resolve().parent.parent / "web").resolve()
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
         ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon"}
# connect-src: the API may live on another origin (meta babelroom-api) and Web PubSub does in Azure.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self' https: wss:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
    "Referrer-Policy": "no-referrer",
}


def _not_found() -> func.HttpResponse:
    return func.HttpResponse('{"error": {"code": "not_found", "message": "no such page"}}', status_code=404,
                             mimetype="application/json", headers=dict(SECURITY_HEADERS))


def _safe(rel: str) -> PurePosixPath | None:
    """A relative path inside web/, or None: NUL bytes, backslashes, drive letters, dot segments and
    absolute paths never reach the file system (Path.resolve() raises on a NUL byte)."""
    if any(c in rel for c in "\x00\\:") or rel.startswith("/"):
        return None
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("..", ".") or p.startswith(".") for p in parts):
        return None
    return PurePosixPath(*parts)


@bp.route(route="{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web(req: func.HttpRequest) -> func.HttpResponse:
    rel = req.route_params.get("path") or "index.html"
    safe = _safe(rel)
    if safe is None or rel.startswith("api/"):
        return _not_found()
    target = (WEB / safe).resolve()
    if not target.is_relative_to(WEB) or not target.is_file():
        return _not_found()
    mime = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache", **SECURITY_HEADERS}
    return func.HttpResponse(target.read_bytes(), status_code=200, mimetype=mime, headers=headers)
