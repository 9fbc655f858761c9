"""Schemathesis hooks of the contract tests (tests/contract/run.sh loads them with SCHEMATHESIS_HOOKS).

Spin 3.6.3 refuses a request with a header value that is not valid UTF-8 before any component
runs: its HTTP trigger cannot convert the headers (spin_trigger_http::headers::
prepare_request_headers, "invalid utf-8 sequence") and answers an empty 500. devhost, which plays
Spin, answers the same. schemathesis sends such values (it sends header values as Latin-1, so a
generated "é" in an Idempotency-Key leaves as the single byte 0xE9), and every check then fails
on that 500: it is not documented and has no problem body, though the app never saw the request.

`filter_failure` drops the failures of exactly that case, a request with a header value that is
not valid UTF-8 on the wire answered by a 500 with an empty body, and records each in the file
named by $SPIN_REFUSALS_LOG so that run.sh reports how many there were. Whatever else such a
request gets (a 500 with a body, a component's 400 that breaks the contract) still fails.
"""

import os

import schemathesis


def wire_bytes(value):
    """A header value as http.client sends it: bytes as they are, text encoded as Latin-1."""
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def non_utf8_header(headers):
    """The name of the first header whose value on the wire is not valid UTF-8, or None."""
    for name, value in headers.items():
        try:
            wire_bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return name
    return None


def spin_refusal(response):
    """The header Spin refused the request for, when `response` is that refusal; else None."""
    if response.status_code != 500 or response.content:
        return None
    return non_utf8_header(response.request.headers)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    header = spin_refusal(response)
    if header is None:
        return True
    log = os.environ.get("SPIN_REFUSALS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"{case.operation.label}: {header}: {failure.title}\n")
    return False
