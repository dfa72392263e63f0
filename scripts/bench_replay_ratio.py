"""`collector replay --speed max --offline` of a long XDF against a NumPy reference (issue 23, row 2).

    python scripts/bench_replay_ratio.py                      # 1 h of 4-ch 256 Hz EEG + markers
    python scripts/bench_replay_ratio.py --tree OLD_CHECKOUT --repeat 2
    python scripts/bench_replay_ratio.py --reference FILE.xdf # the reference alone, prints JSON
    python scripts/bench_replay_ratio.py --stamps MUSELSL.csv
                                          # a real Muse's jittery packet stamps instead of a grid
    python scripts/bench_replay_ratio.py --no-account
                                          # no --workspace/--block: everything kept locally

Writes a synthetic XDF (scripts/make_xdf.py), then runs, each in a fresh interpreter (a
subprocess, timed with wait4: wall, CPU, peak RSS, imports included):

- the reference: `pyxdf.load_xdf` with the collector's loading options (clock sync, clock-reset
  handling, dejitter) and the same Welch band powers as collector/core/bandpower.py: a 2 s window
  every 0.5 s, Hann segments of 1 s with 50 % overlap, constant detrend, density scaling, absolute
  uV^2 summed over [lo, hi) bins times the bin width and relative = band / sum of the five bands
  (delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-44 Hz), one `scipy.signal.welch` call
  per batch of windows over a strided view;
- `collector replay FILE --speed max --offline` into a fresh spool, with the tree under test
  first on PYTHONPATH (`--tree`), default delivery chunking unless --chunk-seconds is given.
  It names a workspace and block, so the chunks wait in the spool for delivery; with
  --no-account it names none, as a user without an account does, and every chunk goes straight
  into the local record (compressed there).

Prints both wall and CPU times, the ratios replay / reference and the replay's peak RSS. With
--repeat N the two alternate N times and the best of each is compared. CPU time is the steadier
figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import MAX_HOURS, add_tree_args, child_rusage, collector_cmd, header, load, number, tree_env  # noqa: E402

BANDS = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 44.0),
)
WINDOW_S, STEP_S, SEGMENT_S, OVERLAP = 2.0, 0.5, 1.0, 0.5


def reference(path: Path) -> dict:
    """Load with pyxdf, band powers of every window of the EEG stream; a summary to check it ran."""
    import numpy as np
    import pyxdf
    import scipy.signal
    from numpy.lib.stride_tricks import sliding_window_view

    streams, _ = pyxdf.load_xdf(
        str(path), synchronize_clocks=True, handle_clock_resets=True, dejitter_timestamps=True
    )
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    sfreq = float(eeg["info"]["nominal_srate"][0])
    x = np.asarray(eeg["time_series"], dtype=np.float64)  # (n, n_ch)
    window, step = round(WINDOW_S * sfreq), round(STEP_S * sfreq)
    nperseg = round(SEGMENT_S * sfreq)
    noverlap = int(nperseg * OVERLAP)
    windows = sliding_window_view(x.T, window, axis=1)[:, ::step]  # (n_ch, n_win, window), a view
    n_win = windows.shape[1]
    absolute = np.empty((n_win, x.shape[1], len(BANDS)))
    batch = 1024  # windows per welch call: bounds the segment copies (~50 MB)
    for b0 in range(0, n_win, batch):
        f, psd = scipy.signal.welch(
            windows[:, b0 : b0 + batch], sfreq, window="hann", nperseg=nperseg, noverlap=noverlap,
            detrend="constant", scaling="density", axis=-1,
        )  # fmt: skip
        df = f[1] - f[0]
        for j, (_, lo, hi) in enumerate(BANDS):
            absolute[b0 : b0 + batch, :, j] = (psd[..., (f >= lo) & (f < hi)].sum(axis=-1) * df).T
    relative = absolute / absolute.sum(axis=-1, keepdims=True)
    return {
        "samples": int(x.shape[0]),
        "channels": int(x.shape[1]),
        "windows": int(n_win),
        "mean_relative_alpha": float(relative[..., 2].mean()),
        "timestamps": len(eeg["time_stamps"]),
    }


MIN_SECONDS = 10.0  # shorter, the reference's 2 s windows and the replay's chunks say little


def csv_steps(csv: Path) -> np.ndarray:
    """The steps between a muselsl CSV's `timestamps`, s, shape (n_rows - 1,), clock resets (a step
    back of more than 1 s) left out; exits with one line if they cannot stamp 256 Hz EEG."""
    import pandas as pd

    try:
        stamps = pd.read_csv(csv, usecols=["timestamps"])["timestamps"].to_numpy(np.float64)
    except FileNotFoundError:
        sys.exit(f"--stamps {csv}: no such file")
    except (OSError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        sys.exit(f"--stamps {csv}: not a CSV with a numeric `timestamps` column ({str(exc).splitlines()[0]})")
    steps = np.diff(stamps)
    steps = steps[steps > -1.0]  # also drops the steps next to an empty cell (NaN)
    if steps.size == 0 or not steps.sum() > 0:
        sys.exit(f"--stamps {csv}: needs at least 2 rows of increasing `timestamps` ({stamps.size} rows)")
    median = float(np.median(steps))
    if not 0.8 / 256 <= median <= 1.25 / 256:  # other stamps would make another benchmark
        sys.exit(f"--stamps {csv}: median step {median * 1000:.1f} ms is not a 256 Hz recording's "
                 f"(3.9 ms); give a 256 Hz muselsl CSV")  # fmt: skip
    return steps


def stamps_like(steps: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """`grid`'s length of stamps from `grid[0]` whose steps are `steps` (from `csv_steps`),
    repeated: a real device's jitter and packets (muselsl stamps 12-sample BLE packets) over
    the whole recording."""
    steps = np.resize(steps, grid.size - 1)  # no clock reset across a repeat (csv_steps drops them)
    return grid[0] + np.concatenate(([0.0], np.cumsum(steps)))


def timed(cmd: list[str], env: dict | None, cwd: Path) -> dict:
    t0 = time.monotonic()
    with open(cwd / "child.out", "wb") as out, open(cwd / "child.err", "wb") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        code, usage = child_rusage(proc)
    wall = time.monotonic() - t0
    return {
        "code": code, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024, "stdout": (cwd / "child.out").read_text(),
        "stderr": (cwd / "child.err").read_text(), "load": load(),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_args(ap)
    ap.add_argument("--hours", type=number(float, above=0, at_most=MAX_HOURS), default=1.0)
    ap.add_argument(
        "--repeat", type=number(int, at_least=1), default=1, help="alternate reference and replay N times"
    )
    ap.add_argument(
        "--chunk-seconds", type=number(float, at_least=0.5, at_most=600), default=None,
        help="replay --chunk-seconds, 0.5 to 600 as replay takes it (default: none)",
    )  # fmt: skip
    ap.add_argument("--reference", type=Path, metavar="XDF", help="run only the reference on XDF (JSON out)")
    ap.add_argument(
        "--stamps",
        type=Path,
        metavar="CSV",
        help="stamp the EEG like this muselsl CSV's `timestamps` (its steps repeated to the length), "
        "e.g. a `muse-lsl record` file; default: a perfect 256 Hz grid",
    )
    ap.add_argument(
        "--no-account", action="store_true",
        help="replay without --workspace/--block: the chunks are kept in the local record",
    )  # fmt: skip
    args = ap.parse_args()
    if args.reference:
        if not args.reference.is_file():
            sys.exit(f"--reference {args.reference}: no such file")
        try:
            print(json.dumps(reference(args.reference)))
        except Exception as exc:  # pyxdf raises bare Exception, struct.error, ... on a bad file
            sys.exit(f"--reference {args.reference}: not an XDF file with an EEG stream ({exc!r:.300})")
        return
    if args.hours * 3600 < MIN_SECONDS:
        ap.error(f"--hours {args.hours:g} is {args.hours * 3600:.3g} s; give at least {MIN_SECONDS:g} s "
                 f"({MIN_SECONDS / 3600:.4f} h)")  # fmt: skip
    steps = csv_steps(args.stamps) if args.stamps else None  # before the XDF: a bad CSV fails at once

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_xdf import synthetic_eeg, synthetic_markers, write_xdf

    header(f"replay --speed max --offline of {args.hours:g} h 4-ch 256 Hz XDF vs the pyxdf + Welch reference",
           args.tree)  # fmt: skip
    seconds = args.hours * 3600
    with tempfile.TemporaryDirectory(prefix="bench-ratio-") as tmp_name:
        tmp = Path(tmp_name)
        xdf = tmp / "long.xdf"
        eeg = synthetic_eeg(seconds)
        if steps is not None:
            eeg.timestamps = stamps_like(steps, eeg.timestamps)
        write_xdf(xdf, [eeg, synthetic_markers(seconds)])
        print(
            f"  XDF {xdf.stat().st_size / 1e6:.1f} MB "
            f"({seconds:g} s, {round(seconds * 256):,} samples x 4 ch"
            f"{f', stamped like {args.stamps.name}' if args.stamps else ''})"
            f"{'; replayed without an account (kept locally)' if args.no_account else ''}"
        )
        env = tree_env(args.tree, OPENLESSON_API_KEY="sk_benchmark_not_used")
        refs, reps = [], []
        for i in range(args.repeat):
            ref = timed([sys.executable, str(Path(__file__).resolve()), "--reference", str(xdf)], None, tmp)
            if ref["code"] != 0:
                sys.exit(f"reference failed: {ref['stderr'][-2000:]}")
            info = json.loads(ref["stdout"].strip().splitlines()[-1])
            spool = tmp / f"spool-{i}"
            target = ["--workspace", str(uuid.uuid4()), "--block", str(uuid.uuid4())]
            cmd = collector_cmd(
                "replay", str(xdf),
                *([] if args.no_account else target),
                "--speed", "max", "--offline", "--spool", str(spool), "--log-format", "json",
                *(["--chunk-seconds", f"{args.chunk_seconds:g}"] if args.chunk_seconds is not None else []),
            )  # fmt: skip
            rep = timed(cmd, env, tmp)
            if rep["code"] not in (0, 6):
                sys.exit(f"replay failed ({rep['code']}): {rep['stderr'][-2000:]}")
            refs.append(ref)
            reps.append(rep)
            print(f"  run {i + 1}: reference wall {ref['wall_s']:.2f} s CPU {ref['cpu_s']:.2f} s "
                  f"RSS {ref['maxrss_mb']:.0f} MB ({ref['load']});")  # fmt: skip
            print(f"         replay    wall {rep['wall_s']:.2f} s CPU {rep['cpu_s']:.2f} s "
                  f"RSS {rep['maxrss_mb']:.0f} MB ({rep['load']})")  # fmt: skip
        print(f"  reference: {info['windows']:,} windows x {info['channels']} ch x {len(BANDS)} bands")
        print(f"  replay command: {' '.join(cmd[1:])}")
    best = lambda runs, k: min(r[k] for r in runs)  # noqa: E731
    rw, rc = best(refs, "wall_s"), best(refs, "cpu_s")
    pw, pc = best(reps, "wall_s"), best(reps, "cpu_s")
    print(f"  best of {args.repeat}: reference {rw:.2f} s wall / {rc:.2f} s CPU; replay {pw:.2f} s wall / "
          f"{pc:.2f} s CPU")  # fmt: skip
    print(f"  ratio replay / reference: wall {pw / rw:.2f}x, CPU {pc / rc:.2f}x")
    print(f"  replay peak RSS {max(r['maxrss_mb'] for r in reps):.0f} MB "
          f"(reference {max(r['maxrss_mb'] for r in refs):.0f} MB)")  # fmt: skip


if __name__ == "__main__":
    main()
