"""The Kafka listener: asyncio connections around the sans-io protocol layer.

A connection pipelines its requests without giving up Kafka's per-connection semantics:

- requests start one after another in arrival order, and a request's *ordered phase* ends
  before the next request starts;
- responses are written strictly in request order by one writer task, whatever order the
  requests complete in (a long-poll Fetch holds back the responses queued behind it, as
  in Kafka); acks=0 produces take their place in that order without writing anything;
- at most limits.connection_inflight_requests_max requests, holding at most
  limits.connection_inflight_bytes_max of frames, are in flight (started, response not
  written yet); beyond that the connection stops reading its socket;
- a malformed frame, or a request that fails inside the broker, closes the connection
  once the responses of the earlier requests are written; everyone else is still served.

Why the ordered phase is a call the connection awaits, not a signal from a task: a
handler module may define `start(context, request)`, which runs the request's ordered
phase and returns a future of its response. The connection awaits start() itself before
it reads the next frame, so two requests of one connection can never interleave their
ordered phases, whatever a handler does inside. Produce is the handler that does this
(broker/handlers/produce.py): its ordered phase is validation, the idempotent sequence
check and the append, which assigns the offsets; only the wait for fsync overlaps with the
next requests, so a producer's pipelined requests share group-commit fsyncs instead of
each waiting for its own round. Every other handler runs whole as its ordered phase, and
only after every earlier request of the connection has completed, so it sees the effects
of everything sent before it, as with Kafka, which handles one request per connection at a
time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator

from kio.schema.index import api_key_map

from broker import limits
from broker.handlers import registry
from broker.handlers.api_versions import unsupported_version_response
from broker.handlers.context import CLOSE_CONNECTION, NO_RESPONSE, ConnectionInfo, EncodedResponse, RequestContext
from broker.invariant import InvariantViolation
from broker.protocol.framing import FrameDecoder, FrameError, frame
from broker.protocol.messages import (
    API_VERSIONS_KEY, MalformedRequest, RequestHeader, decode_request, encode_response,
    encode_response_header, parse_request_header)

log = logging.getLogger("shoal.kafka")

_READ_CHUNK_BYTES = 256 * 1024
_FILE_COPY_CHUNK_BYTES = 1024 * 1024  # segment bytes read (pread) and written per socket write


class KafkaServer:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._server: asyncio.AbstractServer | None = None
        self._connection_ids = itertools.count(1)
        self._connections: set[asyncio.Task] = set()
        self._request_metrics: dict[str, tuple[Any, Any]] = {}

    async def bind(self, host: str, port: int) -> int:
        """Take the listening socket without accepting yet (connections wait in the
        backlog until `start_serving`); returns the bound port."""
        self._server = await asyncio.start_server(self._serve_connection, host, port, reuse_address=True,
                                                  start_serving=False)
        return self._server.sockets[0].getsockname()[1]

    async def start_serving(self) -> None:
        assert self._server is not None, "bind() first"
        await self._server.start_serving()

    async def start(self, host: str, port: int) -> int:
        bound_port = await self.bind(host, port)
        await self.start_serving()
        return bound_port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def request_metrics(self, api_name: str) -> tuple[Any, Any]:
        """(request counter, latency histogram) of one API; prometheus labels() lookups
        are kept per API because they cost more than the increment itself."""
        metrics = self._request_metrics.get(api_name)
        if metrics is None:
            probe = self.broker.probe
            metrics = (probe.requests.labels(api_name), probe.request_latency.labels(api_name))
            self._request_metrics[api_name] = metrics
        return metrics

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await _Connection(self, next(self._connection_ids), reader, writer).serve()
        finally:
            self._connections.discard(task)


_END_OF_REQUESTS = None  # in-flight queue marker: no more requests; write what is queued, then close


@dataclass
class _InFlight:
    header: RequestHeader
    frame_bytes: int
    response: asyncio.Future  # resolves to a kio response, EncodedResponse, NO_RESPONSE or CLOSE_CONNECTION


class _InFlightBudget:
    """Requests of one connection started but not answered yet: at most
    limits.connection_inflight_requests_max of them, holding at most
    limits.connection_inflight_bytes_max of frames (one request always fits). Only the
    connection's reader takes and only its writer gives back."""

    def __init__(self) -> None:
        self.requests = 0
        self.frame_bytes = 0
        self._closed = False
        self._given_back = asyncio.Event()

    def _has_room(self, frame_bytes: int) -> bool:
        if self.requests == 0:
            return True
        return (self.requests < limits.connection_inflight_requests_max
                and self.frame_bytes + frame_bytes <= limits.connection_inflight_bytes_max)

    async def take(self, frame_bytes: int) -> bool:
        """Wait for room; False once the connection is closing."""
        while not self._closed and not self._has_room(frame_bytes):
            self._given_back.clear()
            await self._given_back.wait()
        if self._closed:
            return False
        self.requests += 1
        self.frame_bytes += frame_bytes
        return True

    def give_back(self, frame_bytes: int) -> None:
        self.requests -= 1
        self.frame_bytes -= frame_bytes
        self._given_back.set()

    def close(self) -> None:
        self._closed = True
        self._given_back.set()


class _Connection:
    """One Kafka connection: a reader that starts requests in order and a writer task that
    writes their responses in the same order."""

    def __init__(self, server: KafkaServer, connection_id: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self._server = server
        self._broker = server.broker
        self._probe = server.broker.probe
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.info = ConnectionInfo(peer=f"{peer[0]}:{peer[1]}" if peer else "?",
                                   connection_id=connection_id)
        self._budget = _InFlightBudget()
        # Bounded by the budget; + 1 for the end marker.
        self._in_flight: asyncio.Queue[_InFlight | None] = asyncio.Queue(
            maxsize=limits.connection_inflight_requests_max + 1)
        self._unfinished: set[asyncio.Future] = set()  # responses still being worked on
        self._closing = False

    async def serve(self) -> None:
        self._probe.connections.inc()
        response_writer = asyncio.get_running_loop().create_task(self._write_responses())
        try:
            await self._read_requests()
            if not response_writer.done():
                self._in_flight.put_nowait(_END_OF_REQUESTS)
            await response_writer
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            response_writer.cancel()
            self._probe.connections.dec()
            self._writer.close()

    # -- reading and starting requests ----------------------------------------------------

    async def _read_requests(self) -> None:
        """Start each frame's request in arrival order until end of stream, a malformed
        frame or a failed request."""
        decoder = FrameDecoder()
        try:
            while not self._closing:
                data = await self._reader.read(_READ_CHUNK_BYTES)
                if not data:
                    return
                self._probe.bytes_received.inc(len(data))
                decoder.receive_data(data)
                while (request_frame := decoder.next_frame()) is not None:
                    if not await self._start_request(request_frame):
                        return
        except FrameError as error:
            self._refuse(str(error))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def _start_request(self, request_frame: bytes) -> bool:
        """Run one request's ordered phase and queue its response. False: stop reading."""
        try:
            header = parse_request_header(request_frame)
        except MalformedRequest as error:
            return self._refuse(str(error))
        module = registry.handler_for(header.api_key, header.api_version)
        request = None
        if module is not None:
            try:
                request = decode_request(header, request_frame)
            except Exception as error:
                return self._refuse(f"malformed {header.api_name} v{header.api_version}: {error}")
        if not await self._budget.take(len(request_frame)) or self._closing:
            return False  # given back by the writer once the response is written
        started = time.perf_counter()
        if module is None:
            response = self._unsupported_response(header)
        else:
            response = await self._run_ordered_phase(module, RequestContext(self._broker, header, self.info), request)
        self._queue(_InFlight(header, len(request_frame), response), started)
        return not _ends_connection(response)

    async def _run_ordered_phase(self, module: ModuleType, context: RequestContext, request: Any) -> asyncio.Future:
        """The request's ordered phase; returns the future of its response. The reader
        awaits this before it starts the next request."""
        try:
            start = getattr(module, "start", None)
            if start is not None:
                return await start(context, request)
            await self._earlier_requests_finished()
            return _resolved(await module.handle(context, request))
        except Exception as error:
            return _failed_with(error)

    async def _earlier_requests_finished(self) -> None:
        unfinished = [response for response in self._unfinished if not response.done()]
        if unfinished:
            await asyncio.wait(unfinished)

    def _unsupported_response(self, header: RequestHeader) -> asyncio.Future:
        if header.api_key == API_VERSIONS_KEY:
            return _resolved(unsupported_version_response())  # a v0 body; its header is v0 anyway
        from broker.handlers import unsupported

        response = unsupported.error_response(header) if header.api_key in api_key_map else None
        if response is None:
            log.warning("closing connection %s: unsupported %s v%d", self.info.peer,
                        header.api_name, header.api_version)
            return _resolved(CLOSE_CONNECTION)
        return _resolved(response)

    def _queue(self, in_flight: _InFlight, started: float) -> None:
        response = in_flight.response
        self._unfinished.add(response)
        response.add_done_callback(lambda done: self._on_finished(in_flight.header, done, started))
        self._in_flight.put_nowait(in_flight)

    def _on_finished(self, header: RequestHeader, response: asyncio.Future, started: float) -> None:
        """Metrics and failure logging when a request completes (before its turn to be written)."""
        self._unfinished.discard(response)
        if response.cancelled():
            return
        error = response.exception()  # also marks it retrieved when the writer never gets to it
        if error is None:
            requests, latency = self._server.request_metrics(header.api_name)
            requests.inc()
            latency.observe(time.perf_counter() - started)
            return
        self._closing = True  # start nothing more; the writer closes after the earlier responses
        self._probe.request_errors.labels(header.api_name).inc()
        if isinstance(error, InvariantViolation):
            self._broker.fail(f"{header.api_name} v{header.api_version} from {self.info.peer}", error)
            return
        log.error("%s v%d from %s failed; closing the connection", header.api_name, header.api_version,
                  self.info.peer, exc_info=error)

    def _refuse(self, reason: str) -> bool:
        self._probe.malformed_frames.inc()
        log.warning("closing connection %s: %s", self.info.peer, reason)
        return False

    # -- writing responses in order ---------------------------------------------------------

    async def _write_responses(self) -> None:
        """Write responses in request order until the end marker, a failed request or
        CLOSE_CONNECTION; then stop the reader."""
        try:
            while (in_flight := await self._in_flight.get()) is not _END_OF_REQUESTS:
                try:
                    if not await self._respond(in_flight):
                        return
                finally:
                    self._budget.give_back(in_flight.frame_bytes)
        except ConnectionError:
            pass
        except Exception:
            log.exception("writing to %s failed; closing the connection", self.info.peer)
        finally:
            self._closing = True
            self._budget.close()  # a reader waiting for room stops
            self._writer.close()  # a reader waiting for data gets end of stream

    async def _respond(self, in_flight: _InFlight) -> bool:
        try:
            response = await in_flight.response
        except Exception:
            return False  # logged by _on_finished
        if response is NO_RESPONSE:
            return True
        if response is CLOSE_CONNECTION:
            log.info("closing connection %s after a failed %s without response", self.info.peer,
                     in_flight.header.api_name)
            return False
        await self._write(in_flight.header, response)
        return True

    async def _write(self, header: RequestHeader, response: Any) -> None:
        if isinstance(response, EncodedResponse):
            await self._write_encoded(header, response)
            return
        body = encode_response(header.api_key, header.api_version, header.correlation_id, response)
        data = frame(body)
        self._writer.write(data)
        self._probe.bytes_sent.inc(len(data))
        await self._writer.drain()

    async def _write_encoded(self, header: RequestHeader, response: EncodedResponse) -> None:
        """Header, byte parts and segment bytes with one writelines per
        _FILE_COPY_CHUNK_BYTES, not one write per part: what a response costs is mostly
        its socket sends (a syscall that usually wakes the client), not copying the bytes
        (docs/benchmarks.md); uvloop has no loop.sendfile anyway."""
        response_header = encode_response_header(header.api_key, header.api_version, header.correlation_id)
        size = len(response_header) + response.size
        pending: list[bytes | bytearray | memoryview] = [size.to_bytes(4, "big", signed=True) + response_header]
        pending_bytes = 0
        for part in response.parts:
            chunks = [part] if isinstance(part, (bytes, bytearray, memoryview)) else _read_region(part)
            for chunk in chunks:
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= _FILE_COPY_CHUNK_BYTES:
                    self._writer.writelines(pending)
                    pending, pending_bytes = [], 0
                    await self._writer.drain()
        self._writer.writelines(pending)
        self._probe.bytes_sent.inc(4 + size)
        await self._writer.drain()


def _resolved(value: Any) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def _failed_with(error: BaseException) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def _ends_connection(response: asyncio.Future) -> bool:
    """True when a finished response already says the connection must close."""
    if not response.done():
        return False
    return response.cancelled() or response.exception() is not None or response.result() is CLOSE_CONNECTION


def _read_region(region: Any) -> Iterator[bytes]:
    """A segment region's bytes in chunks of at most _FILE_COPY_CHUNK_BYTES (pread, never
    the whole region at once)."""
    try:
        with open(region.path, "rb") as file:
            position, end = region.position, region.position + region.length
            while position < end:
                chunk = os.pread(file.fileno(), min(_FILE_COPY_CHUNK_BYTES, end - position), position)
                if not chunk:
                    raise ConnectionError("segment shorter than the region promised to the client")
                position += len(chunk)
                yield chunk
    except FileNotFoundError:
        # Segment deleted by retention between read() and send: the frame length is
        # already promised, so the connection cannot continue.
        raise ConnectionError(f"segment {region.path} vanished while sending") from None
