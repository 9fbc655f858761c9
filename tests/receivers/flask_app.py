"""A webhook receiver on the original service's stack, Flask (on Werkzeug's threaded server),
as a subscriber would write one: each delivery verified with the Standard Webhooks reference
library, then parsed with the CloudEvents Python SDK (HTTP binding, binary or structured mode as
the request says). Answers 204 to a delivery that verifies and parses, 401 or 400 otherwise.

Records per request: arrival time, headers, the bytes read, whether it verified (and why
not), the parsed CloudEvent's attributes and data (or why it did not parse), the status
answered. See common.py for the command line.
"""

from __future__ import annotations

import logging
import time

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from flask import Flask, request
from werkzeug.serving import make_server

import common


def parsed(headers: dict[str, str], body: bytes) -> dict:
    event = from_http_event(HTTPMessage(headers=headers, body=body))
    time_attribute = event.get_time()
    return {
        "specversion": event.get_specversion(),
        "id": event.get_id(),
        "type": event.get_type(),
        "source": event.get_source(),
        "subject": event.get_subject(),
        "time": time_attribute.isoformat() if time_attribute else None,
        "datacontenttype": event.get_datacontenttype(),
        "data": event.get_data(),
    }


def app(args) -> Flask:
    flask = Flask(__name__)
    recorder = common.Recorder(args.record)

    @flask.post("/hook")
    def hook():
        at = time.time()
        body = request.get_data()
        headers = {name.lower(): value for name, value in request.headers.items()}
        refusal = common.verify(args.secret_file, body, headers)
        event = problem = None
        if refusal is None:
            try:
                event = parsed(headers, body)
            except Exception as error:  # noqa: BLE001 - recorded: the test says what failed
                problem = f"{type(error).__name__}: {error}"
        status = 401 if refusal else (400 if problem else 204)
        recorder.record(at=at, receiver="flask", method=request.method, path=request.path, headers=headers,
                        body_bytes=len(body), verified=refusal is None, refusal=refusal, event=event,
                        parse_error=problem, status=status)
        common.answer_after(args.answer_after_ms)
        return "", status

    return flask


def main() -> None:
    args = common.arguments(__doc__)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app(args), threaded=True)
    common.announce(server.server_port)
    server.serve_forever()


if __name__ == "__main__":
    main()
