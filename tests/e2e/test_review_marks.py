"""The review page draws the user's own marks apart from a recording's stimulus markers (issue 20 #3).

A real `collector run` on the bundled P300 recording played as a live LSL stream with its marker
stream (a P300 code every ~0.6 s), two `collector mark` commands during it, then `collector review`
rendered in headless Chromium: the legend has a "stimulus markers" group and a "your marks" entry,
and the marks' labels are on the plot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cli_runs import cli_env, collector, eeg_chunks

from collector.devices.player import XdfPlayer

REPO = Path(__file__).resolve().parents[2]
MUSE_XDF = REPO / "collector" / "data" / "muse-p300-subject1.xdf"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.lsl,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)"),
]


def test_review_page_shows_marks_and_stimulus_markers_as_separate_legend_entries(sandbox, tmp_path):
    name = f"revmarks-{uuid.uuid4().hex[:8]}"
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    spool = tmp_path / "spool"
    env = cli_env(sandbox, XDG_RUNTIME_DIR=str(runtime), COLLECTOR_SPOOL_DIR=str(spool))
    with XdfPlayer(MUSE_XDF, stream_name=name, source_id=name, speed=1.0):
        run = subprocess.Popen(
            [sys.executable, "-m", "collector", "run", "-w", sandbox.workspace_id, "-b", sandbox.block_ids[0],
             "--stream-name", name, "--markers", f"{name}-markers", "--screen", "off", "--duration", "9",
             "--chunk-seconds", "3"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        marked = []
        deadline = time.monotonic() + 30
        for text in ("phone rang", "é distracted 👀"):
            while time.monotonic() < deadline:
                proc = collector(["mark", text], env)
                if proc.returncode == 0:
                    marked.append(text)
                    break
                time.sleep(0.3)  # exit 5 until the capture records EEG
            time.sleep(2.0)
        _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert marked == ["phone rang", "é distracted 👀"]
    events = [e for c in eeg_chunks(sandbox) for e in c["events"]]
    assert [e["value"] for e in events if e.get("source") == "mark"] == marked
    stimulus = [e for e in events if "source" not in e]
    assert len(stimulus) >= 5  # the P300 codes of the recording's marker stream

    out = tmp_path / "review.html"
    proc = collector(["review", "--last", "--out", str(out)], env)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text(encoding="utf-8")
    assert f"{len(stimulus)} markers · 2 of your marks" in html
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium'}", "--proxy-server=127.0.0.1:9",
         "--virtual-time-budget=20000", "--dump-dom", out.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    ).stdout  # fmt: skip
    assert 'data-rendered="yes"' in dom
    legend = dom[dom.index('class="legend"') :]
    titles = [t for t in ("stimulus markers", "your marks") if f">{t}</text>" in legend]
    assert titles == ["stimulus markers", "your marks"]  # two legend groups, each with its title
    assert ">your marks (2)</text>" in legend  # one entry for the user's marks
    assert ">marker " in legend  # the stimulus codes' entries
    (tmp_path / "dom.html").write_text(dom, encoding="utf-8")
    labels = re.findall(r'class="annotation-text"[^>]*data-unformatted="([^"]*)"', dom)
    assert "&lt;b&gt;phone rang&lt;/b&gt;" in labels and "&lt;b&gt;é distracted 👀&lt;/b&gt;" in labels
