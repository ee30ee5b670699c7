"""Fault injection for the local Hub server (:mod:`tests.hubserver`): a :class:`FaultyHub` serves the same
protocol, but the next requests of a file can be made to fail in chosen ways.

``hub.inject("model.safetensors", Fault("status", status=503, retry_after=1))`` queues one fault for the
next GET of that file (``method="HEAD"`` for the metadata request); each request consumes the first fault
queued for it. Faults:

* ``status``: answer ``status`` (500, 503 ...) with no body, with a ``Retry-After`` header if given;
* ``reset``: send the headers and half the body, then reset the connection (TCP RST);
* ``stall``: send the headers and nothing more for ``seconds`` (the client's read timeout fires);
* ``short``: announce a ``Content-Length`` ``extra`` bytes longer than the body, send the body and close;
* ``long``: announce a ``Content-Length`` shorter than the body (the client reads a truncated file);
* ``redirect``: answer ``302`` to the same URL, forever (a redirect loop);
* ``slow``: wait ``seconds``, then answer normally (a client to kill mid-download).

``hub.delay`` (from FakeHub: seconds before each GET body, after the request is counted) keeps a client
waiting, so that it can be killed mid-download or overlap with another.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.hubserver import FakeHub


@dataclass
class Fault:
    kind: str
    status: int = 500
    retry_after: float | None = None
    seconds: float = 5.0
    extra: int = 1000
    times: int = 1  # how many requests it applies to (``redirect`` applies to every request anyway)


class FaultyHub(FakeHub):
    """:class:`~tests.hubserver.FakeHub` with a queue of :class:`Fault` per (method, filename)."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[tuple[str, str], deque[Fault]] = defaultdict(deque)
        self.injected: list[tuple[str, str, str]] = []  # (method, filename, fault kind), in order

    def inject(self, filename: str, fault: Fault, method: str = "GET") -> FaultyHub:
        with self.lock:
            self.faults[(method, filename)].append(fault)
        return self

    def _take(self, method: str, filename: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get((method, filename))
            if not queue:
                return None
            fault = queue[0]
            if fault.kind != "redirect":
                fault.times -= 1
                if fault.times <= 0:
                    queue.popleft()
            self.injected.append((method, filename, fault.kind))
            return fault

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        method = "GET" if body else "HEAD"
        filename = h.path.split("?")[0].rsplit("/", 1)[-1]
        fault = self._take(method, filename)
        if fault is None:
            super()._serve(h, body)
            return
        if fault.kind == "slow":
            time.sleep(fault.seconds)
            super()._serve(h, body)
            return
        if fault.kind == "status":
            h.send_response(fault.status)
            if fault.retry_after is not None:
                h.send_header("Retry-After", f"{fault.retry_after:g}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if fault.kind == "redirect":
            with self.lock:
                self.requests[(method, h.path)] += 1
            h.send_response(302)
            h.send_header("Location", h.path)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        # The remaining faults damage a real answer: serve it through a wrapper of the output stream.
        real = h.wfile
        h.wfile = _Damaged(real, h, fault)  # type: ignore[assignment]
        try:
            super()._serve(h, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            h.wfile = real
            h.close_connection = True


class _Damaged:
    """The handler's output stream, damaging the response as ``fault`` says."""

    def __init__(self, real, handler: BaseHTTPRequestHandler, fault: Fault) -> None:  # type: ignore[no-untyped-def]
        self.real, self.h, self.fault = real, handler, fault
        self.in_body = False

    def write(self, data: bytes) -> int:
        kind = self.fault.kind
        if not self.in_body:
            text = bytes(data)
            if b"Content-Length:" in text and kind in ("short", "long"):
                head, _, rest = text.partition(b"Content-Length: ")
                value, _, tail = rest.partition(b"\r\n")
                n = int(value)
                n = n + self.fault.extra if kind == "short" else max(1, n // 2)
                text = head + b"Content-Length: " + str(n).encode() + b"\r\n" + tail
            if text.endswith(b"\r\n\r\n") or b"\r\n\r\n" in text:
                self.in_body = True
            self.real.write(text)
            self.real.flush()
            return len(data)
        if kind == "reset":
            self.real.write(data[: len(data) // 2])
            self.real.flush()
            sock = self.h.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST: "connection reset by peer" on the client
            raise ConnectionResetError("fault injected: reset")
        if kind == "stall":
            time.sleep(self.fault.seconds)
            raise ConnectionResetError("fault injected: stalled")
        self.real.write(data)  # short / long: the body as it is, under a wrong Content-Length
        self.real.flush()
        return len(data)

    def flush(self) -> None:
        self.real.flush()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, name)
