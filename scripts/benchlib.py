"""Shared plumbing of the issue-23 benchmarks: which tree is measured, its environment, the load.

Every benchmark drives the real CLI (`python -m collector ...`) in a subprocess whose PYTHONPATH
starts with the tree under test (`--tree PATH`, default: the repository this script is in), so
one script measures an old checkout ("before") and a new one ("after"). Nothing here imports the
package under test. The sandbox API server is a fixture, not the subject: it is imported in the
benchmark's own process from `--sandbox-tree` (default: this repository), the same for every
tree measured.
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_tree_args(ap: argparse.ArgumentParser, *, sandbox: bool = False) -> None:
    ap.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help=f"source tree whose collector is measured, put first on PYTHONPATH (default {ROOT})",
    )
    if sandbox:
        ap.add_argument(
            "--sandbox-tree",
            type=Path,
            default=ROOT,
            help=f"source tree the sandbox server is imported from, in this process (default {ROOT})",
        )


def number(
    kind: type, *, above: float | None = None, at_least: float | None = None, at_most: float | None = None
):
    """An argparse `type=` that parses `kind` (int or float) and rejects values out of range with
    argparse's one-line usage error, e.g. `number(float, above=0)` for a duration in seconds."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        if value != value or value in (float("inf"), float("-inf")):  # nan, inf: no figure to print
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text} must be above {above:g}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"{text} must be at least {at_least:g}")
        if at_most is not None and not value <= at_most:
            raise argparse.ArgumentTypeError(f"{text} must be at most {at_most:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


# A synthetic recording longer than this is refused by the benchmarks that write one: a day of
# 4-ch 256 Hz EEG is 88 M samples (2.8 GB as float64), and the pyxdf reference holds it all.
MAX_HOURS = 24.0


def check_tree(tree: Path, flag: str = "--tree") -> Path:
    """`tree` resolved; exits with one line unless it holds a `collector` package to import."""
    tree = Path(tree).resolve()
    if not tree.is_dir():
        sys.exit(f"{flag} {tree}: not a directory; give the root of a checkout of this project")
    if not (tree / "collector" / "__init__.py").is_file():
        sys.exit(
            f"{flag} {tree}: no collector/__init__.py there; give the root of a checkout of this project"
        )
    return tree


def tree_env(tree: Path, *, display: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a collector subprocess: PYTHONPATH = tree first, no display unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    tree = Path(tree).resolve()
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if display is not None:
        env["DISPLAY"] = display
    env.update(extra)
    return env


def collector_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "collector", *args]


def describe_tree(tree: Path) -> str:
    """'PATH (git abc1234[, dirty]; collector from PATH/collector)'; exits if the tree's package
    is not the one a subprocess would import."""
    tree = check_tree(tree)
    probe = subprocess.run(
        [sys.executable, "-c", "import collector, os; print(os.path.dirname(collector.__file__))"],
        env=tree_env(tree), capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    where = probe.stdout.strip()
    if probe.returncode != 0 or Path(where).resolve() != tree / "collector":
        sys.exit(f"--tree {tree}: a subprocess imports collector from {where or probe.stderr[-500:]!r}")
    # Bytecode as `pip install` leaves it: with PYTHONDONTWRITEBYTECODE (or a fresh checkout) every
    # run would otherwise compile the package's changed modules again (~0.3 s of CPU per start).
    compileall.compile_dir(str(tree / "collector"), quiet=1)
    rev = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    git = f"git {rev}{', modified' if dirty else ''}" if rev else "not a git checkout"
    return f"{tree} ({git})"


def load() -> str:
    """The machine's load, to read next to each figure (the machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def header(title: str, tree: Path) -> None:
    tree_line = describe_tree(tree)  # a bad --tree ends the run before anything is printed
    print(f"{title}")
    print(f"  tree: {tree_line}")
    print(f"  python {sys.version.split()[0]}; {load()} at start; {time.strftime('%Y-%m-%d %H:%M:%S')}")


def import_sandbox(sandbox_tree: Path):
    """SandboxServer from `sandbox_tree` (both the flat and the by-stage layout have
    collector.sandbox.SandboxServer)."""
    tree = check_tree(sandbox_tree, "--sandbox-tree")
    sys.path.insert(0, str(tree))
    import collector.sandbox
    from collector.sandbox import SandboxServer

    # an editable install's finder would otherwise hand over another checkout's sandbox silently
    where = Path(collector.sandbox.__file__).resolve()
    if not where.is_relative_to(tree / "collector"):
        sys.exit(f"--sandbox-tree {tree}: this process imported collector.sandbox from {where}")
    return SandboxServer


def child_rusage(proc: subprocess.Popen) -> tuple[int, object]:
    """Wait for `proc` with wait4: (exit code, its own rusage incl. the descendants it reaped)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime (+ reaped children's) of a live process from /proc, seconds; None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the ")": state is fields[0]; utime, stime, cutime, cstime are stat fields 14-17
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_rss_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) in MB of a live process."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)
