"""Serves the static client in web/ from the function app, so page and /api share one origin in
Azure as in the twin (no CORS, one deployment). host.json sets routePrefix "" for this."""

from __future__ import annotations

import mimetypes
from pathlib import Path

import azure.functions as func

bp = func.Blueprint()
WEB = (Path(__file__).resolve().parent.parent / "web").resolve()
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
         ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon"}


@bp.route(route="{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def web(req: func.HttpRequest) -> func.HttpResponse:
    rel = req.route_params.get("path") or "index.html"
    target = (WEB / rel).resolve()
    if not target.is_relative_to(WEB) or not target.is_file() or rel.startswith("api/"):
        return func.HttpResponse('{"error": {"code": "not_found", "message": "no such page"}}', status_code=404,
                                 mimetype="application/json")
    mime = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache"}
    return func.HttpResponse(target.read_bytes(), status_code=200, mimetype=mime, headers=headers)
