"""Shared fixtures: a real sandbox server on loopback (uvicorn in a thread, port picked by the OS)."""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from collector.sandbox import SandboxServer


def _private_lsl_session() -> None:
    """Each test process (one per xdist worker) gets its own liblsl SessionID.

    Tests run in parallel workers; a private session keeps one worker's streams (and marker streams
    that `--markers auto` could follow) out of another's sight. Set before any test touches liblsl,
    which reads LSLAPICFG once per process; child processes (`python -m collector`) inherit it.
    Tests that need their own session (doctor, devices) still set LSLAPICFG for their children.
    """
    cfg = os.path.join(tempfile.mkdtemp(prefix="lsl-session-"), "lsl_api.cfg")
    with open(cfg, "w") as f:
        f.write(f"[lab]\nSessionID = collector-tests-{uuid.uuid4().hex}\n[log]\nlevel = -2\n")
    os.environ["LSLAPICFG"] = cfg


_private_lsl_session()


@pytest.fixture
def sandbox_factory(tmp_path):
    """`make(**faults)` starts a SandboxServer on a fresh data folder; all are stopped at teardown."""
    started: list[SandboxServer] = []

    def make(data_dir=None, *, start: bool = True, **kwargs) -> SandboxServer:
        """`port=N` takes a fixed port; `start=False` makes it (keys, workspace) without serving
        yet: the test calls `.start()` later (an API that is down, then comes up)."""
        kwargs.setdefault("port", 0)
        server = SandboxServer(data_dir or tmp_path / f"sandbox{len(started)}", **kwargs)
        if start:
            server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> SandboxServer:
    return sandbox_factory()
