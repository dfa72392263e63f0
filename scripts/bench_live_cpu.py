"""CPU and memory of a live `collector run`: EEG from LSL plus screenshots under Xvfb (issue 23, row 1).

    python scripts/bench_live_cpu.py                          # 60 s, the table's row
    python scripts/bench_live_cpu.py --tree OLD_CHECKOUT        # the same against another checkout
    python scripts/bench_live_cpu.py --duration 600 --steady 20   # 10-minute steady-state figure

Starts Xvfb at 1600x900 with a mostly static window (an xmessage page of text; the root window's
colour changes every --change-every s, so most frames are unchanged), an LSL outlet of 4-channel
256 Hz float32 EEG (pylsl, in this process), and the sandbox API (in this process, 120 requests
per minute per key). Then runs the real CLI in a subprocess:

    collector run --stream-name BenchEEG --duration D --screen on --screen-interval 5 ...

and prints the collector process's CPU time (utime + stime from wait4 at its exit, so start-up,
imports and the final flush are included), as % of one core over the process's lifetime and over
the nominal duration, its peak RSS, and with `--steady S` the CPU share over the window from S s
after the launch to D s after the launch (read from /proc/<pid>/stat), which leaves out start-up
and the final flush. What was delivered (EEG chunks, screenshots) is printed as a sanity check.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    add_tree_args,
    child_rusage,
    collector_cmd,
    header,
    import_sandbox,
    load,
    number,
    proc_cpu_s,
    proc_rss_mb,
    tree_env,
)

STREAM = "BenchEEG"
PAGE = "\n".join(
    f"{i:02d}  Practice log: scales in three octaves, hands separately then together; "
    f"metronome at 72, raise after three clean repetitions."
    for i in range(30)
)


def start_xvfb(size: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    if shutil.which("Xvfb") is None:
        sys.exit("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=open(tmp / "xvfb.log", "wb"),
    )  # fmt: skip
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        sys.exit(f"Xvfb did not start: {(tmp / 'xvfb.log').read_text()[-1000:]}")
    return proc, f":{number}"


def static_window(display: str) -> subprocess.Popen | None:
    env = dict(os.environ, DISPLAY=display)
    subprocess.run(["xsetroot", "-solid", "#3a6ea5"], env=env, check=False, stderr=subprocess.DEVNULL)
    if shutil.which("xmessage") is None:
        print("  (xmessage not installed: the screen is the root window's colour only)")
        return None
    return subprocess.Popen(
        ["xmessage", "-geometry", "1200x700+150+80", "-buttons", "", PAGE],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def change_root(display: str, every_s: float, stop: threading.Event) -> None:
    """Alternate the root window's colour every `every_s` s: the rare changed frame."""
    colours = ["#3a6ea5", "#a56e3a"]
    env = dict(os.environ, DISPLAY=display)
    i = 0
    while not stop.wait(every_s):
        i += 1
        subprocess.run(
            ["xsetroot", "-solid", colours[i % 2]], env=env, check=False, stderr=subprocess.DEVNULL
        )


def lsl_outlet(stop: threading.Event, sfreq: float = 256.0, n_ch: int = 4, per_push: int = 8) -> None:
    """4-channel EEG at `sfreq` in pushes of `per_push` samples, on a drift-free schedule."""
    import numpy as np
    import pylsl

    info = pylsl.StreamInfo(STREAM, "EEG", n_ch, sfreq, "float32", "bench-live-cpu")
    chans = info.desc().append_child("channels")
    for label in ("TP9", "AF7", "AF8", "TP10")[:n_ch]:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    outlet = pylsl.StreamOutlet(info, chunk_size=per_push)
    rng = np.random.default_rng(0)
    t0 = pylsl.local_clock()
    sent = 0
    while not stop.is_set():
        due = t0 + (sent + per_push) / sfreq
        wait = due - pylsl.local_clock()
        if wait > 0:
            stop.wait(wait)
        idx = sent + np.arange(per_push)
        t = idx / sfreq
        x = 10.0 * np.sin(2 * np.pi * 10.0 * t)[:, None] + rng.normal(0, 5, (per_push, n_ch))
        outlet.push_chunk(x.astype(np.float32), timestamp=t0 + (sent + per_push - 1) / sfreq)
        sent += per_push


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_args(ap, sandbox=True)
    seconds = number(float, above=0)
    ap.add_argument("--duration", type=seconds, default=60.0, help="collector run --duration (default 60)")
    ap.add_argument("--screen-interval", type=seconds, default=5.0)
    ap.add_argument("--size", default="1600x900", help="Xvfb screen size WxH (default 1600x900)")
    ap.add_argument(
        "--steady", type=number(float, at_least=0), metavar="S", default=None,
        help="also report CPU over [S, duration] s after the launch (e.g. 20)",
    )  # fmt: skip
    # 0 would spawn xsetroot in a busy loop, on the CPU being measured
    ap.add_argument("--change-every", type=seconds, default=30.0, help="root colour change period, s")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `collector run` options")
    args = ap.parse_args()
    if args.steady is not None and not 0 <= args.steady < args.duration - 1:
        ap.error("--steady S needs 0 <= S < duration - 1")
    if not re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", args.size):
        ap.error(f"--size {args.size!r}: give the screen as WIDTHxHEIGHT in pixels, e.g. 1600x900")
    header(f"collector run, {args.duration:g} s, 4-ch 256 Hz LSL + {args.size} screenshots "
           f"every {args.screen_interval:g} s under Xvfb", args.tree)  # fmt: skip
    SandboxServer = import_sandbox(args.sandbox_tree)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp_name:
        tmp = Path(tmp_name)
        own_cfg = not os.environ.get("LSLAPICFG")
        if own_cfg:  # liblsl in this process: errors only, not its INFO lines (not passed on)
            (tmp / "bench-lsl.cfg").write_text("[log]\nlevel = -2\n")
            os.environ["LSLAPICFG"] = str(tmp / "bench-lsl.cfg")
        xvfb, display = start_xvfb(args.size, tmp)
        window = None
        threads = []
        try:
            window = static_window(display)
            threads = [
                threading.Thread(target=lsl_outlet, args=(stop,), daemon=True),
                threading.Thread(target=change_root, args=(display, args.change_every, stop), daemon=True),
            ]
            for t in threads:
                t.start()
            time.sleep(1.0)  # the outlet is announced, the window mapped
            with SandboxServer(tmp / "sandbox") as sandbox:
                env = tree_env(
                    args.tree, display=display,
                    OPENLESSON_API_KEY=sandbox.api_key, OPENLESSON_BASE_URL=sandbox.base_url,
                )  # fmt: skip
                if own_cfg:
                    env.pop("LSLAPICFG")  # the collector picks its own, as for a user
                cmd = collector_cmd(
                    "run", "--workspace", sandbox.workspace_id, "--block", sandbox.block_ids[0],
                    "--spool", str(tmp / "spool"), "--stream-name", STREAM,
                    "--duration", f"{args.duration:g}", "--screen", "on",
                    "--screen-interval", f"{args.screen_interval:g}", "--log-format", "json", *args.extra,
                )  # fmt: skip
                load_start = load()
                with open(tmp / "out.log", "wb") as out, open(tmp / "err.log", "wb") as err:
                    t_launch = time.monotonic()
                    proc = subprocess.Popen(
                        cmd, env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                    )
                    samples: list[tuple[float, float, float]] = []  # (t since launch, cpu s, rss MB)

                    def watch() -> None:
                        while True:
                            cpu, mem = proc_cpu_s(proc.pid), proc_rss_mb(proc.pid)
                            if cpu is None or mem is None:
                                return
                            samples.append((time.monotonic() - t_launch, cpu, mem[0]))
                            if stop.wait(0.5) or proc.returncode is not None:
                                return

                    watcher = threading.Thread(target=watch, daemon=True)
                    watcher.start()
                    code, usage = child_rusage(proc)
                    wall = time.monotonic() - t_launch
                load_end = load()
                requests = sandbox.requests()
                rows = sandbox.evidence(sandbox.workspace_id)
        finally:
            stop.set()
            if window is not None:
                window.terminate()
                window.wait()
            xvfb.terminate()
            xvfb.wait()
        if code != 0:
            sys.stderr.write((tmp / "err.log").read_text()[-3000:])
            sys.exit(f"collector run exited {code}")

    cpu = usage.ru_utime + usage.ru_stime
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r.get("type", "?")] = by_type.get(r.get("type", "?"), 0) + 1
    first_req = min((r["t"] for r in requests), default=None)
    print(f"  command: {' '.join(cmd[1:])}")
    print(f"  collector process: wall {wall:.1f} s (launch to exit), CPU {cpu:.2f} s "
          f"(user {usage.ru_utime:.2f} + sys {usage.ru_stime:.2f})")  # fmt: skip
    print(f"  CPU incl. start-up: {100 * cpu / wall:.2f} % of one core over its lifetime, "
          f"{100 * cpu / args.duration:.2f} % over the nominal {args.duration:g} s")  # fmt: skip
    print(f"  peak RSS {usage.ru_maxrss / 1024:.0f} MB (wait4 ru_maxrss)")
    if first_req is not None:
        print(f"  first request to the API {first_req - t_launch:.1f} s after the launch")
    marks = [m for m in (1, 2, 3, 5, 10, 20) if m < args.duration]
    at = [next((s for s in samples if s[0] >= m), None) for m in marks]
    if any(a is not None for a in at):  # where the start-up goes: CPU used by then (/proc samples)
        print("  CPU used by: " + ", ".join(f"{a[0]:.1f} s {a[1]:.2f} s" for a in at if a is not None))
    if args.steady is not None:
        lo = [s for s in samples if s[0] >= args.steady]
        hi = [s for s in samples if s[0] <= args.duration]
        if lo and hi and hi[-1][0] > lo[0][0]:
            a, b = lo[0], hi[-1]
            share = 100 * (b[1] - a[1]) / (b[0] - a[0])
            print(f"  steady state: CPU {b[1] - a[1]:.2f} s over [{a[0]:.1f}, {b[0]:.1f}] s after the launch "
                  f"= {share:.2f} % of one core; RSS {a[2]:.0f} -> {b[2]:.0f} MB")  # fmt: skip
        else:
            print("  steady state: no /proc samples in the window")
    print(f"  delivered: {len(rows)} evidence items "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))}); "
          f"{len(requests)} requests")  # fmt: skip
    print(f"  load: {load_start} at launch, {load_end} at exit")


if __name__ == "__main__":
    main()
