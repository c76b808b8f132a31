"""What a handler receives: the broker it serves and the request's header."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broker.protocol.messages import RequestHeader

if TYPE_CHECKING:
    from broker.app import Broker


@dataclass
class ConnectionInfo:
    peer: str
    connection_id: int


@dataclass
class RequestContext:
    broker: "Broker"
    header: RequestHeader
    connection: ConnectionInfo

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def client_id(self) -> str:
        return self.header.client_id or ""


class _NoResponse:
    """acks=0 produce: the client expects nothing back."""

    def __repr__(self) -> str:
        return "NO_RESPONSE"


NO_RESPONSE: Any = _NoResponse()


class _CloseConnection:
    """acks=0 produce that failed: Kafka sends nothing and closes the connection, so the
    client notices and refreshes its metadata."""

    def __repr__(self) -> str:
        return "CLOSE_CONNECTION"


CLOSE_CONNECTION: Any = _CloseConnection()


@dataclass
class EncodedResponse:
    """A response body written by hand (hot paths). `parts` are bytes or
    broker.storage.api.FileRegion (sent with sendfile where the transport allows)."""

    parts: list[Any] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(part.length if hasattr(part, "length") else len(part) for part in self.parts)
