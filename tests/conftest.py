"""Shared fixtures: a real sandbox server on loopback (uvicorn in a thread, port picked by the OS)."""

from __future__ import annotations

import pytest

from collector.sandbox import SandboxServer


@pytest.fixture
def sandbox_factory(tmp_path):
    """`make(**faults)` starts a SandboxServer on a fresh data folder; all are stopped at teardown."""
    started: list[SandboxServer] = []

    def make(data_dir=None, **kwargs) -> SandboxServer:
        server = SandboxServer(data_dir or tmp_path / f"sandbox{len(started)}", port=0, **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> SandboxServer:
    return sandbox_factory()
