"""Azure Web PubSub look-alike for the offline twin.

Browsers and the official SDKs (``azure-messaging-webpubsubclient`` / ``-webpubsubservice``)
talk to this exactly as they would to ``https://<name>.webpubsub.azure.com``: client WebSockets
on ``/client/hubs/{hub}`` with the ``json.webpubsub.azure.v1`` and
``json.reliable.webpubsub.azure.v1`` subprotocols (or none: "simple" clients), and the REST data
plane under ``/api/hubs/{hub}``. Client events go to an :class:`EventSink` the way the service
calls its event handler.

Behaviour follows the service (and Microsoft's own emulator) where the docs are silent:
invalid frames without an ``ackId`` close the socket with 1007, oversize frames with 1009,
a receiver that cannot keep up is closed with 1008, reliable connections survive a socket drop
for 30 s and are resumed with ``awps_connection_id`` + ``awps_reconnection_token``.

Modules: ``wire`` (frames and bodies), ``connection`` (state, delivery, recovery), ``client``
(WebSocket endpoint), ``rest`` (data plane), ``upstream`` (event sinks, CloudEvents HTTP
upstream), ``core`` (the :class:`Gateway`), ``__main__`` (standalone CLI for ``func start``).
"""

from .core import Gateway
from .upstream import (
    ConnectionContext,
    ConnectRequest,
    ConnectResult,
    EchoSink,
    EventSink,
    HttpUpstream,
    UpstreamValidationError,
    UserEventResult,
)
from .wire import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    ROLE_JOIN_LEAVE,
    ROLE_SEND_TO_GROUP,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_RELIABLE,
    SUPPORTED_SUBPROTOCOLS,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "ROLE_JOIN_LEAVE",
    "ROLE_SEND_TO_GROUP",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_RELIABLE",
    "SUPPORTED_SUBPROTOCOLS",
    "ConnectRequest",
    "ConnectResult",
    "ConnectionContext",
    "EchoSink",
    "EventSink",
    "Gateway",
    "HttpUpstream",
    "UpstreamValidationError",
    "UserEventResult",
]
