"""HTTP for set-up and measurements (the load itself is wrk's)."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse


def http_request(base_url: str, method: str, path: str, token: str | None = None, body=None,
                 content_type: str = "application/json", timeout: float = 10.0):
    """One request on a fresh connection: (status, lower-cased headers, body bytes)."""
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = content_type
    try:
        conn.request(method, url.path.rstrip("/") + path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def next_link(headers: dict) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', headers.get("link", ""))
    return match.group(1) if match else None


def path_of(link: str) -> str:
    """The path and query of a link, for requests to the same server."""
    parts = urllib.parse.urlsplit(link)
    return parts.path + ("?" + parts.query if parts.query else "")
