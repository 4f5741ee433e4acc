"""A fault-injecting HTTP proxy for tests: sits in front of the moto S3 server on loopback.

Each request is forwarded to the upstream server, unless a seeded random draw picks a fault:

* ``reset``: the connection is dropped (RST) before any response;
* ``503``: an S3 ``SlowDown`` error; ``500``: an S3 ``InternalError``;
* ``truncate``: the full ``Content-Length`` is announced, half the body is sent, then RST;
* ``corrupt``: one byte of a successful object GET body is flipped (status and length intact;
  listings are left alone: an altered key name is a different, valid listing).

Only the first ``max_faults_per_key`` attempts at the same request line may fail, so every
request succeeds eventually, as on a flaky but working network. ``stats`` counts what happened.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("reset", "503", "500", "truncate", "corrupt")
_S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{msg}</Message>'
             "<RequestId>flaky-proxy</RequestId></Error>")


class FlakyProxy:
    def __init__(self, upstream: str, *, rate: float = 0.3, seed: int = 0, faults: tuple[str, ...] = FAULTS,
                 max_faults_per_key: int = 2) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.rate, self.faults, self.max_faults_per_key = rate, faults, max_faults_per_key
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._per_key: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.enabled = True
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FlakyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _pick(self, key: str, method: str) -> str | None:
        with self._lock:
            if not self.enabled or self._per_key[key] >= self.max_faults_per_key or self._rng.random() >= self.rate:
                self.stats["passed"] += 1
                return None
            choices = [f for f in self.faults if f != "corrupt" or method == "GET"]
            if method == "HEAD":
                choices = [f for f in choices if f != "truncate"]
            fault = self._rng.choice(choices)
            self._per_key[key] += 1
            self.stats[fault] += 1
            return fault

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionError, OSError):  # the client gave up on a connection we hurt
                    self.close_connection = True

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _error(self, status: int, code: str) -> None:
                payload = _S3_ERROR.format(code=code, msg="injected by the flaky proxy").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._pick(f"{self.command} {self.path}", self.command)
                if fault == "reset":
                    return self._reset()
                if fault == "503":
                    return self._error(503, "SlowDown")
                if fault == "500":
                    return self._error(500, "InternalError")
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "transfer-encoding")}
                headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    status, reply_headers = response.status, response.getheaders()
                finally:
                    upstream.close()
                object_get = "list-type" not in self.path and self.path.strip("/").count("/") >= 1
                if fault == "corrupt" and (status != 200 or not payload or not object_get):
                    fault = None
                if fault == "corrupt":
                    index = len(payload) // 2
                    payload = payload[:index] + bytes([payload[index] ^ 0x5A]) + payload[index + 1:]
                self.send_response_only(status)
                for key, value in reply_headers:
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", response.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "truncate" and len(payload) > 1:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    return self._reset()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
