"""The lab machine's systemd unit (scripts/collector@.service): the restart rules the README promises.

Read as systemd reads it (key=value lines under [Section] headers); `systemd-analyze verify` is run
by tests/e2e/test_doctor.py where systemd is installed.
"""

from __future__ import annotations

from pathlib import Path

from collector.errors import EXIT_AUTH, EXIT_NO_SOURCE, EXIT_NOT_FOUND, EXIT_PENDING, EXIT_USAGE
from collector.profiles.profile import DeliverySection

UNIT = Path(__file__).resolve().parents[2] / "scripts" / "collector@.service"


def unit_settings() -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{line!r} before any section"
        current[key.strip()] = value.strip()
    return sections


def seconds(value: str) -> float:
    return float(value[:-1]) if value.endswith("s") else float(value)


def test_unit_restarts_after_failures_but_not_on_bad_settings():
    unit = unit_settings()
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    # 2 bad settings, 3 key refused, 4 workspace/block not found: no retry until the user fixes it.
    prevented = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert prevented == {EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND}
    assert EXIT_NO_SOURCE not in prevented and EXIT_PENDING not in prevented  # headset off, network down
    # "With no EEG stream or headset yet (5), it retries every 30 seconds", all day long.
    assert seconds(service["RestartSec"]) == 30
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"


def test_unit_stops_gracefully_with_time_to_flush():
    service = unit_settings()["Service"]
    assert service["KillSignal"] == "SIGTERM"  # the capture flushes on SIGTERM
    flush_s = DeliverySection().flush_timeout_s
    # The flush (30 s default) plus the spool's close must fit before systemd's SIGKILL.
    assert seconds(service["TimeoutStopSec"]) >= flush_s + 10
    exec_start = service["ExecStart"].split()
    assert exec_start[1:3] == ["run", "--profile"] and "--log-format" in exec_start
    assert exec_start[exec_start.index("--log-format") + 1] == "json"
    assert "--api-key-file" in exec_start and "OPENLESSON_API_KEY" not in service.get("Environment", "")
