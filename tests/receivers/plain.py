"""A webhook receiver with no chunked support, as plenty of real ones are: Python's http.server
(BaseHTTPRequestHandler, HTTP/1.0) reading exactly Content-Length bytes of each request and
verifying them with the Standard Webhooks reference library. A chunked request has no
Content-Length, so it reads zero bytes and the signature cannot verify (answered 401).

Records per request: arrival time, path, headers, the bytes read, whether it verified (and why
not), the status answered. See common.py for the command line.
"""

from __future__ import annotations

import http.server
import json
import time

import common


def main() -> None:
    args = common.arguments(__doc__)
    recorder = common.Recorder(args.record)

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0 (the default): one request a connection, no chunked transfer coding.

        def do_POST(self):  # noqa: N802 - http.server's naming
            at = time.time()
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            refusal = common.verify(args.secret_file, body, headers)
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            status = 204 if refusal is None else 401
            recorder.record(at=at, receiver="plain", method="POST", path=self.path, headers=headers,
                            body_bytes=len(body), verified=refusal is None, refusal=refusal,
                            event=event, status=status)
            common.answer_after(args.answer_after_ms)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = common.Server(("127.0.0.1", 0), Handler)
    common.announce(server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
