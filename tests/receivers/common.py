"""What the Python receivers share: their command line, the subscription's secret, signature
verification with the Standard Webhooks reference library, and the record of each request.

Every receiver takes
    --record FILE        one JSON line per request received, appended as it is answered
    --secret-file FILE   the subscription's whsec_ secret, read at each request (the test
                         writes it once it has subscribed the receiver's URL)
    --answer-after-ms N  wait this long before answering (a slow subscriber)
binds a free loopback port and prints {"port": N} as its first line on stdout.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from pathlib import Path

from standardwebhooks import Webhook


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    parser.add_argument("--answer-after-ms", type=int, default=0)
    return parser.parse_args()


def announce(port: int) -> None:
    print(json.dumps({"port": port}), flush=True)


def verify(secret_file: Path, body: bytes, headers: dict[str, str]) -> str | None:
    """None when the reference library verifies the request, else why not."""
    try:
        secret = secret_file.read_text().strip()
    except OSError:
        return "no secret yet"
    try:
        Webhook(secret).verify(body, headers)
    except Exception as error:  # noqa: BLE001 - every refusal is recorded as such
        return f"{type(error).__name__}: {error}"
    return None


class Recorder:
    """Appends one JSON line per request; lines from concurrent requests never interleave."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def record(self, **fields) -> None:
        line = json.dumps(fields, default=str) + "\n"
        with self.lock, self.path.open("a") as file:
            file.write(line)


def answer_after(ms: int) -> None:
    if ms:
        time.sleep(ms / 1000)


class Server(http.server.ThreadingHTTPServer):
    """A thread per connection. Deliveries arrive several at once: the default listen backlog
    of 5 would drop connections and slow delivery down to TCP's retransmission timers."""

    request_queue_size = 128
    daemon_threads = True
