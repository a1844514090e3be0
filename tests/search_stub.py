"""A small local HTTP server standing in for the Sunbird search service (`POST /v3/search`)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SearchStub:
    """Answers collection-status searches from ``statuses`` (course id -> status or absent).

    ``fail_with`` makes every call answer that HTTP status, ``delay_seconds`` makes every call
    wait that long first (a service timing out); ``requests`` records request bodies.
    """

    def __init__(self, statuses: dict[str, str] | None = None) -> None:
        self.statuses = dict(statuses or {})
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        self.delay_seconds = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body})
                time.sleep(stub.delay_seconds)
                if stub.fail_with or self.path != "/search/v3/search":
                    self.send_response(stub.fail_with or 404)
                    self.end_headers()
                    return
                course = body["request"]["filters"]["identifier"]
                status = stub.statuses.get(course)
                content = [{"identifier": course, "status": status}] if status else []
                payload = json.dumps(
                    {"id": "api.search", "result": {"count": len(content), "content": content}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_path(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/search"

    def __enter__(self) -> SearchStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
