"""Tests of hooks.py (tests/contract/run.sh runs them before schemathesis): exactly Spin's refusal
of a header value that is not valid UTF-8 (an empty 500) is accepted, nothing near it."""

import importlib.util
import os
import tempfile
import unittest
from types import SimpleNamespace

spec = importlib.util.spec_from_file_location("hooks", os.path.join(os.path.dirname(__file__), "hooks.py"))
hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hooks)

NOT_UTF8 = {"Authorization": "Bearer " + "5f" * 32, "Idempotency-Key": "caf\u00e9"}  # 0xE9 on the wire


def response(status, content=b"", headers=None):
    return SimpleNamespace(
        status_code=status, content=content, request=SimpleNamespace(headers=headers or NOT_UTF8)
    )


def keeps(resp):
    failure = SimpleNamespace(title="Server error")
    case = SimpleNamespace(operation=SimpleNamespace(label="POST /events"))
    return hooks.filter_failure(None, failure, case, resp)


class SpinRefusal(unittest.TestCase):
    def test_an_empty_500_for_a_non_utf8_header_is_dropped_and_logged(self):
        with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
            os.environ["SPIN_REFUSALS_LOG"] = log.name
            try:
                self.assertFalse(keeps(response(500)))
            finally:
                del os.environ["SPIN_REFUSALS_LOG"]
            self.assertEqual(log.read(), "POST /events: Idempotency-Key: Server error\n")

    def test_a_raw_byte_value_counts_too(self):
        self.assertFalse(keeps(response(500, headers={"Idempotency-Key": b"\xff"})))

    def test_a_500_with_a_body_is_kept(self):
        self.assertTrue(keeps(response(500, b'{"status": 500}')))

    def test_another_status_is_kept(self):
        self.assertTrue(keeps(response(400)))
        self.assertTrue(keeps(response(502)))

    def test_an_empty_500_for_valid_headers_is_kept(self):
        self.assertTrue(keeps(response(500, headers={"Idempotency-Key": "abc"})))
        # "Ã©" goes out as C3 A9, which is UTF-8 for "é": Spin accepts it.
        self.assertTrue(keeps(response(500, headers={"Idempotency-Key": "\u00c3\u00a9"})))


if __name__ == "__main__":
    unittest.main()
