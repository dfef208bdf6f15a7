"""A client of oblio's HTTP API as a tenant's backend would use it (tests and benchmarks)."""

from __future__ import annotations

import json
import time
from typing import Any

import requests as http


class Api:
    """A client of the HTTP API as a tenant's backend would use it."""

    def __init__(self, base: str, key: str | None) -> None:
        self.base, self.key = base, key

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        return {**h, **(extra or {})}

    def get(self, path: str, **params: Any) -> http.Response:
        return http.get(self.base + path, params=params, headers=self._headers(), timeout=60)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: str | None = None) -> http.Response:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return http.post(self.base + path, data=data, headers=self._headers(headers),
                         timeout=60)

    def put(self, path: str, body: Any = None) -> http.Response:
        return http.put(self.base + path, data=json.dumps(body if body is not None else {}),
                        headers=self._headers(), timeout=60)

    def patch(self, path: str, body: Any = None) -> http.Response:
        return http.patch(self.base + path, data=json.dumps(body if body is not None else {}),
                          headers=self._headers(), timeout=60)

    def wait(self, request_id: str, timeout: float = 60) -> dict[str, Any]:
        """Poll a request until it leaves queued/running and its `io` is complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"/v1/requests/{request_id}")
            assert r.status_code == 200, r.text
            body = r.json()
            io = (body.get("result") or {}).get("io") or {}
            # ended, and its last task's calls counted (`io.complete`: they land just after)
            if body["status"] not in ("received", "queued", "running", "finishing") and \
                    (io.get("complete", True) or body["status"] == "cancelled"):
                return body
            time.sleep(0.3)
        raise AssertionError(f"request {request_id} did not finish in {timeout}s")

    def erase(self, subject: dict[str, str], timeout: float = 60,
              **extra: Any) -> dict[str, Any]:
        r = self.post("/v1/requests", {"type": "erasure", "subject": subject, "confirm": True,
                                       **extra})
        assert r.status_code == 202, r.text
        return self.wait(r.json()["request_id"], timeout=timeout)
