"""A small misbehaving HTTP server on loopback, for delivery tests under hostile conditions.

It answers `POST .../evidence` the way real networks and proxies do when they are not the API:
a captive portal's 302 with an HTML page, a proxy's HTML 413, a plain-text 400, a Retry-After of
99999999999, a reply trickled one byte a second, a 201 echoing the Authorization header, a 201
whose evidence id is the key; mode `json<status>` (say `json505`) is the API's own JSON error with
that HTTP status and a code the contract does not list. `GET .../blocks` answers like the API (one
block), so `run` and `replay` can start against it. Every request is recorded (method, path, time).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORTAL_PAGE = b"<html><head><title>Hotel Wi-Fi</title></head><body>Please sign in</body></html>"


class HostileServer:
    """`mode` decides what evidence POSTs get; `then_ok_after` switches to a normal 201 after N;
    `script` lists the modes of the next POSTs, one each, before `mode` again."""

    def __init__(self, mode: str, *, then_ok_after: int | None = None, retry_after: str = "99999999999"):
        self.mode = mode
        self.then_ok_after = then_ok_after
        self.script: list[str] = []
        self.retry_after = retry_after
        self.blocks_fail = 0  # this many target checks (GET blocks) get a gateway's HTML page first
        self.block_id = str(uuid.uuid4())
        self.workspace_id = str(uuid.uuid4())
        self.requests: list[tuple[str, str, float]] = []
        self.stored: list[dict] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def posts(self) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == "POST")

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: HostileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with server.lock:
                server.requests.append(("GET", self.path, time.monotonic()))
            with server.lock:
                fail = server.blocks_fail > 0
                server.blocks_fail -= int(fail)
            if fail:
                self._send(503, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            elif self.path.endswith("/blocks"):
                block = {
                    "id": server.block_id,
                    "title": "Scales",
                    "status": "available",
                    "created_at": "2026-11-30T08:00:00Z",
                }
                self._send(200, json.dumps({"blocks": [block]}).encode(), "application/json")
            else:
                self._send(404, b'{"error": {"code": "not_found", "message": "no"}}', "application/json")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if body.strip() == b"{}":  # the collector's write-access probe: the contract's answer to an
                with server.lock:  # empty body from a key that may write (kept apart from the POSTs)
                    server.requests.append(("PROBE", self.path, time.monotonic()))
                err = {"error": {"code": "validation_error", "message": "type: required", "details": {}}}
                self._send(400, json.dumps(err).encode(), "application/json")
                return
            with server.lock:
                server.requests.append(("POST", self.path, time.monotonic()))
                n = sum(1 for m, _, _ in server.requests if m == "POST")
                mode = server.script.pop(0) if server.script else server.mode
            if server.then_ok_after is not None and n > server.then_ok_after:
                mode = "ok"
            auth = self.headers.get("Authorization", "")
            if mode == "portal":
                self._send(302, PORTAL_PAGE, "text/html", {"Location": "http://portal.example/login"})
            elif mode == "413":
                page = b"<html><body><h1>413 Request Entity Too Large</h1><hr>nginx</body></html>"
                self._send(413, page, "text/html")
            elif mode == "400plain":
                self._send(400, b"Bad Request", "text/plain")
            elif mode in ("429huge", "503huge"):
                status = 429 if mode == "429huge" else 503
                code = "rate_limit_exceeded" if status == 429 else "unavailable"
                err = json.dumps({"error": {"code": code, "message": "slow down", "details": {}}}).encode()
                self._send(status, err, "application/json", {"Retry-After": server.retry_after})
            elif mode.startswith("json"):  # the API's own JSON error, its status deciding
                status = int(mode.removeprefix("json"))
                code = "rate_limit_exceeded" if status == 429 else f"status_{status}"
                err = json.dumps({"error": {"code": code, "message": f"answered {status}", "details": {}}})
                self._send(status, err.encode(), "application/json")
            elif mode == "validation":
                err = {
                    "error": {"code": "validation_error", "message": "metadata is too large", "details": {}}
                }
                self._send(400, json.dumps(err).encode(), "application/json")
            elif mode == "trickle":
                reply = _created(json.loads(body), "ev-" + uuid.uuid4().hex, server.workspace_id)
                head = (
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(reply)}\r\n\r\n"
                )
                try:
                    for byte in head.encode() + reply:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1.0)
                except OSError:  # the client gave up, as it should
                    pass
                self.close_connection = True
            else:  # ok, echo, key_as_id
                evidence_id = "ev-" + uuid.uuid4().hex
                if mode == "key_as_id":
                    evidence_id = auth.removeprefix("Bearer ")
                headers = {"X-Echo-Authorization": auth} if mode == "echo" else {}
                request = json.loads(body)
                with server.lock:
                    server.stored.append(request)
                self._send(
                    201, _created(request, evidence_id, server.workspace_id), "application/json", headers
                )

    return Handler


def _created(request: dict, evidence_id: str, workspace_id: str) -> bytes:
    evidence = {
        "id": evidence_id,
        "workspace_id": workspace_id,
        "block_id": request.get("block_id"),
        "type": request["type"],
        "file_name": request.get("file_name") or "chunk.json",
        "mime_type": request["mime_type"],
        "file_size": len(request.get("data", "")),
        "timestamp_ms": request.get("timestamp_ms"),
        "chunk_index": request.get("chunk_index", 0),
        "metadata": request.get("metadata"),
        "created_at": "2026-11-30T08:00:00Z",
    }
    return json.dumps({"evidence": evidence}).encode()
