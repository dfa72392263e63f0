"""The sandbox on a real socket: uvicorn serving the app of server.py in a daemon thread, with the
store, the fault plan and the rate limit it was made with. `with SandboxServer(tmp) as s:` starts
it and stops it."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from collector.sandbox.server import (
    FaultInjector,
    FaultPlan,
    SlidingWindowLimiter,
    create_app,
    faults_from_env,
)
from collector.sandbox.store import SandboxStore


class SandboxServer:
    """The sandbox on a real socket. `with SandboxServer(tmp) as s:` starts it and stops it."""

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        fail_503: float = 0.0,
        fail_429: float = 0.0,
        lose_reply: float = 0.0,
        latency_ms: float = 0.0,
        seed: int | None = None,
        reject_chunk: int | None = None,
        rate_limit_per_min: int = 120,
        rate_window_s: float = 60.0,
        rate_retry_after: bool = True,
        access_log: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host, self.port = host, port
        self._faults = FaultPlan(
            seed,
            reject_chunk,
            fail_503=fail_503,
            fail_429=fail_429,
            lose_reply=lose_reply,
            latency_ms=latency_ms,
        )
        self._store = SandboxStore(self.data_dir)
        self.keys: dict[str, str] = self._store.ensure_keys()
        self.api_key: str = self.keys["member"]
        self.workspace_id: str = self._store.ensure_ready_workspace()
        self.block_ids: list[str] = [b["id"] for b in self._store.blocks(self.workspace_id)]
        # A window shorter than a minute keeps the ratio (120/min: 30 per 15 s), for quicker tests.
        self.limiter = SlidingWindowLimiter(
            max(1, round(rate_limit_per_min * rate_window_s / 60.0)),
            window_s=rate_window_s,
            retry_after=rate_retry_after,
        )
        self.app = FaultInjector(create_app(self._store, self.limiter, self._faults), self._faults)
        self._access_log = access_log
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, data_dir: Path, env: Mapping[str, str] | None = None, **kw: Any) -> SandboxServer:
        """Faults from COLLECTOR_SANDBOX_* variables; explicit keyword arguments win."""
        return cls(data_dir, **{**faults_from_env(env), **kw})

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            http="h11",  # the lost-reply fault relies on its close-after-headers behaviour
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,
            log_level="info" if self._access_log else "warning",
            access_log=self._access_log,
            timeout_graceful_shutdown=2,
        )
        # uvicorn binds the socket itself: asyncio then sets TCP_NODELAY on each connection, which a
        # pre-bound socket (proto 0) misses, costing ~40 ms per reply to Nagle + delayed ACK.
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="collector-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]  # the real one when port=0

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self._store.close()

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def evidence(self, workspace_id: str | None = None) -> list[dict]:
        return self._store.evidence(workspace_id)

    def read_artifact(self, evidence_id: str) -> bytes:
        return self._store.read_artifact(evidence_id)

    def blocks(self, workspace_id: str | None = None) -> list[dict]:
        return self._store.blocks(workspace_id or self.workspace_id)

    def fault_settings(self) -> dict[str, Any]:
        return {f: getattr(self._faults, f) for f in (*FaultPlan.FIELDS, "reject_chunk")}

    def set_faults(self, **kw: Any) -> None:
        """Change fail_503, fail_429, lose_reply, latency_ms, reject_chunk (reseed: seed=) while running."""
        self._faults.update(**kw)

    def requests(self) -> list[dict[str, Any]]:
        """Every request to a contract route so far, in arrival order: `t` (arrival, time.monotonic()),
        `method`, `path`, `status` and `replied` (None until answered), `retry_after` (if sent)."""
        return [dict(r) for r in self.app.requests]
