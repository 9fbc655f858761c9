"""The webhook receiver: records when each event's first webhook arrived, answers 204 at once
(or, as a slow subscriber, after `answer_after_s`)."""

from __future__ import annotations

import http.server
import json
import threading
import time


class Receiver:
    def __init__(self, answer_after_s: float = 0.0):
        self.answer_after_s = answer_after_s
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def record(self, at: float, body: bytes) -> None:
        """Keys a webhook by the event id in its CloudEvents `data` (else its subject)."""
        try:
            event = json.loads(body)
            data = event.get("data") or {}
            key = str(data["id"] if isinstance(data, dict) and "id" in data else event.get("subject"))
        except (ValueError, AttributeError):
            key = None
        with self.lock:
            self.count += 1
            if key and key not in self.arrivals:
                self.arrivals[key] = at

    def arrived(self, keys) -> dict[str, float]:
        with self.lock:
            return {k: self.arrivals[k] for k in keys if k in self.arrivals}

    def stop(self) -> None:
        self.server.shutdown()


class _Server(http.server.ThreadingHTTPServer):
    # A dispatcher sends a batch of webhooks at once; the default backlog of 5 would drop
    # connections and slow delivery to TCP's retransmission timers.
    request_queue_size = 1024


def _read_chunked(rfile) -> bytes:
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        body += rfile.read(size)
        rfile.readline()


def _handler(receiver: Receiver):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            at = time.monotonic()
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                body = _read_chunked(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if receiver.answer_after_s:
                time.sleep(receiver.answer_after_s)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()
            receiver.record(at, body)

        def log_message(self, *args):
            pass

    return Handler
