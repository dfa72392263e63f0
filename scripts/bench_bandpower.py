"""Benchmark the band-power core and the EEG chunker.

    python scripts/bench_bandpower.py [--minutes 10] [--hours 8] [--repeat 3] [--skip-chunker]

1. 10 min of 4-channel 256 Hz EEG, then 64-channel 500 Hz EEG, through
   (a) a per-window scipy.signal.welch loop, (b) one welch call over a strided view of all
   windows, (c) collector.core.bandpower.compute_band_powers; CPU time (best of --repeat), hours of
   EEG per CPU-second and the speed-up over (a). All three give the same band powers (checked).
2. An --hours long 4-channel 256 Hz recording generated on the fly and fed through EegChunker
   in 5 s pieces, each artifact encoded to JSON as the pipeline does: throughput and resident
   memory each simulated hour (it must stay flat), and the peak RSS increase.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.core.bandpower import BandSettings, compute_band_powers, grid_window_ends  # noqa: E402
from collector.core.chunk import EegChunker  # noqa: E402
from collector.core.records import SampleChunk, StreamDescription  # noqa: E402

SETTINGS = BandSettings()


def synthetic(n: int, n_ch: int, sfreq: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sfreq
    return rng.standard_normal((n, n_ch)) * 10.0 + 20.0 * np.sin(2 * np.pi * 10.0 * t)[:, None]


def band_sums(f: np.ndarray, psd: np.ndarray) -> np.ndarray:
    """psd (..., n_freq) -> (..., n_bands) band powers in uV^2."""
    df = f[1] - f[0]
    return np.stack(
        [psd[..., (f >= lo) & (f < hi)].sum(axis=-1) * df for _, lo, hi in SETTINGS.bands], axis=-1
    )


def welch_loop(x: np.ndarray, sfreq: float) -> np.ndarray:
    window, _, nperseg, noverlap = SETTINGS.sizes(sfreq)
    out = []
    for end in grid_window_ends(x.shape[0], sfreq, SETTINGS):
        f, psd = scipy.signal.welch(
            x[end - window + 1 : end + 1].T, sfreq, window="hann", nperseg=nperseg, noverlap=noverlap
        )
        out.append(band_sums(f, psd))
    return np.array(out)  # (n_windows, n_channels, n_bands)


def welch_strided(x: np.ndarray, sfreq: float) -> np.ndarray:
    window, step, nperseg, noverlap = SETTINGS.sizes(sfreq)
    # (n_channels, n_windows, window) view of every window, no copy; welch runs once over it.
    windows = sliding_window_view(x.T, window, axis=1)[:, ::step]
    f, psd = scipy.signal.welch(windows, sfreq, window="hann", nperseg=nperseg, noverlap=noverlap, axis=-1)
    return band_sums(f, psd).transpose(1, 0, 2)


def core(x: np.ndarray, sfreq: float) -> np.ndarray:
    return compute_band_powers(x, sfreq, SETTINGS).absolute_uv2


def best_cpu_s(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU time of `repeat` runs: the machine is shared, CPU time is what we spend."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def bench_core(minutes: float, n_ch: int, sfreq: float, repeat: int) -> None:
    x = synthetic(int(minutes * 60 * sfreq), n_ch, sfreq)
    n_windows = len(grid_window_ends(x.shape[0], sfreq, SETTINGS))
    hours = minutes / 60.0
    print(f"\n{minutes:g} min of {n_ch}-channel {sfreq:g} Hz EEG ({n_windows} windows of 2 s every 0.5 s)")
    ref = welch_loop(x, sfreq)
    for name, fn in (("strided welch", welch_strided), ("core", core)):
        got = fn(x, sfreq)
        err = float(np.max(np.abs(got - ref) / np.abs(ref)))
        assert err <= 1e-9, f"{name} differs from the welch loop: relative error {err:.2e}"
    loop_s = best_cpu_s(lambda: welch_loop(x, sfreq), max(1, repeat - 1))
    rows = [("(a) per-window welch loop", loop_s)]
    rows.append(("(b) one welch, strided view", best_cpu_s(lambda: welch_strided(x, sfreq), repeat)))
    rows.append(("(c) core (shared segments)", best_cpu_s(lambda: core(x, sfreq), repeat)))
    quality_s = best_cpu_s(lambda: compute_band_powers(x, sfreq, SETTINGS), repeat)
    no_quality_s = best_cpu_s(lambda: compute_band_powers(x, sfreq, SETTINGS, with_quality=False), repeat)
    for name, cpu_s in rows:
        print(
            f"  {name:30s} {cpu_s * 1000:9.1f} ms CPU  {hours / cpu_s:9.1f} h of EEG per CPU-s"
            f"  speed-up {loop_s / cpu_s:6.1f}x"
        )
    print(
        f"  (core includes quality flags: {quality_s * 1000:.1f} ms;"
        f" without them {no_quality_s * 1000:.1f} ms)"
    )


def rss_kb() -> int:
    """Current resident set size in kB (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bench_chunker(hours: float) -> None:
    sfreq, n_ch, chunk_s = 256.0, 4, 5.0
    desc = StreamDescription(
        name="bench", type="EEG", source_id="bench", sfreq=sfreq, channels=("TP9", "AF7", "AF8", "TP10")
    )
    chunker = EegChunker(desc, SETTINGS, capture_id="bench", stream_id=desc.stream_id, chunk_s=chunk_s)
    piece = round(chunk_s * sfreq)
    n_pieces = int(hours * 3600 / chunk_s)
    rng = np.random.default_rng(0)
    # A few distinct blocks, reused: generating fresh noise would dominate the run.
    blocks = [synthetic(piece, n_ch, sfreq, seed=s) + rng.standard_normal((1, n_ch)) for s in range(8)]
    t0_ms = 1_770_000_000_000.0
    offsets_ms = np.arange(piece) * 1000.0 / sfreq
    print(f"\nEegChunker: {hours:g} h of {n_ch}-channel {sfreq:g} Hz in {chunk_s:g} s pieces, JSON-encoded")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start_rss = rss_kb()
    total_bytes = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    per_hour = int(3600 / chunk_s)
    for k in range(n_pieces):
        times = t0_ms + k * chunk_s * 1000.0 + offsets_ms
        for out in chunker.push(SampleChunk(blocks[k % len(blocks)], times)):
            total_bytes += len(out.to_bytes())
        if (k + 1) % per_hour == 0 or k + 1 == n_pieces:
            print(f"  after {(k + 1) * chunk_s / 3600:5.2f} h: RSS {rss_kb() / 1024:7.1f} MB")
    for out in chunker.flush():
        total_bytes += len(out.to_bytes())
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
    print(
        f"  {n_pieces} chunks in {cpu_s:.1f} s CPU ({wall_s:.1f} s wall): "
        f"{hours / cpu_s:.2f} h of EEG per CPU-s, "
        f"{cpu_s / n_pieces * 1000:.1f} ms per 5 s chunk including JSON"
    )
    print(
        f"  artifacts: {total_bytes / n_pieces / 1000:.1f} kB per chunk, "
        f"{total_bytes / hours / 1e6:.0f} MB per hour"
    )
    print(
        f"  RSS at start {start_rss / 1024:.1f} MB, "
        f"peak RSS growth during the run {max(grown_kb, 0) / 1024:.1f} MB"
        " (flat: the chunker holds one chunk plus 2 s of context whatever the length)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the core benchmark streams")
    parser.add_argument("--hours", type=float, default=8.0, help="length of the chunker memory run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best is kept")
    parser.add_argument("--skip-chunker", action="store_true", help="only the band-power core")
    args = parser.parse_args(argv)
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}; "
        f"times are process CPU time, best of {args.repeat}"
    )
    bench_core(args.minutes, 4, 256.0, args.repeat)
    bench_core(args.minutes, 64, 500.0, args.repeat)
    if not args.skip_chunker:
        bench_chunker(args.hours)


if __name__ == "__main__":
    main()
