"""``python -m babelroom.twin.gateway``: a standalone Web PubSub gateway.

With ``--upstream http://127.0.0.1:7071/runtime/webhooks/webpubsub`` it plays the local Web PubSub
service for ``func start``: client events go to the function host over the CloudEvents HTTP
upstream protocol, signed with ``--access-key``. Without it, an echo sink answers (manual testing).
"""

from __future__ import annotations

import argparse
import logging
import time
import urllib.parse

from aiohttp import web

from babelroom.twin.wpsauth import parse_connection_string, sign_client_token

from .core import Gateway
from .upstream import EchoSink, EventSink, HttpUpstream

DEFAULT_KEY = "twin-local-access-key-0123456789abcdef"


def main(argv: list[str] | None = None) -> None:
    """Parse the CLI, mount the gateway on its own app and serve it until interrupted."""
    parser = argparse.ArgumentParser(description="Standalone Web PubSub twin gateway.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--hub", default="rooms")
    parser.add_argument("--access-key", default=DEFAULT_KEY, help="the AccessKey of the connection string")
    parser.add_argument("--upstream", default=None,
                        help="event handler URL, e.g. http://127.0.0.1:7071/runtime/webhooks/webpubsub")
    parser.add_argument("--connection-string", default=None, help="overrides --host/--port/--access-key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cs = args.connection_string or f"Endpoint=http://{args.host}:{args.port};AccessKey={args.access_key};Version=1.0;"
    parsed = parse_connection_string(cs)
    sink: EventSink = EchoSink()
    if args.upstream:
        origin = urllib.parse.urlsplit(parsed.endpoint).hostname or args.host
        sink = HttpUpstream(args.upstream, [parsed.access_key], origin=origin)
    gateway = Gateway(cs, sink)
    app = web.Application()
    gateway.add_routes(app)
    token = sign_client_token(
        parsed.key_bytes, f"{parsed.endpoint}/client/hubs/{args.hub}", user_id="manual", minutes_to_expire=600
    )
    print(f"connection string: {cs}")
    print(f"upstream: {args.upstream or 'echo'}")
    print(f"client url: ws://{args.host}:{args.port}/client/hubs/{args.hub}?access_token={token}")
    print(f"started {time.strftime('%H:%M:%S')}")
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
