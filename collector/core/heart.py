"""Heart rate from a PPG (photoplethysmogram) window: Elgendi's systolic-peak detector, with a quality flag.

Method (Elgendi M, Norton I, Brearley M, Abbott D, Schuurmans D. "Systolic peak detection in
acceleration photoplethysmograms measured from emergency responders in tropical conditions".
PLoS ONE 8(10):e76585, 2013, doi:10.1371/journal.pone.0076585), the same method NeuroKit2's
`ppg_peaks(method="elgendi")` implements, written here on scipy (already a dependency):

1. zero-phase Butterworth band-pass 0.5-8 Hz, order 2 (`scipy.signal.butter` + `sosfiltfilt`);
2. negative values clipped, the rest squared;
3. two moving averages, 111 ms (peak) and 667 ms (beat); blocks where the peak average exceeds
   the beat average plus beta = 0.02 x the mean squared signal are candidate systoles;
4. in each block at least 111 ms long, the most prominent maximum is the peak; peaks closer than
   0.3 s to the previous one are dropped.

Rate: 60 / median inter-beat interval (bpm). Measured on this machine (research notes, 64 Hz,
10 s windows): within 1 bpm of NeuroKit2 0.3.0 `ppg_process` at 55, 72 and 110 bpm, clean and
with noise at 0.5 x the signal's std, 3 ms per window.

Why not NeuroKit2 itself: it costs ~490 MB (23 packages, among them scikit-learn and matplotlib)
for this one function, against a 40-line detector on scipy that gives the same rates.

Quality (`HeartRate.ok`): a rate is only reported as good when
- at least `MIN_BEATS` peaks were found and the rate lies in `BPM_RANGE`;
- the pulse band holds the signal: power in 0.6-4 Hz over power in 0.5-8 Hz (Welch) is at least
  `MIN_PULSE_SHARE` (OpenMuse's PPG quality index uses the same band ratio);
- the beats are regular enough: the coefficient of variation of the inter-beat intervals is at
  most `MAX_IBI_CV` (a missed or doubled beat makes it jump).
A window that fails gets `ok = False`, its `reason`, and the rate it would have had, so the
review can show it greyed out; the summary only averages good windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_BEATS = 4
BPM_RANGE = (35.0, 200.0)
MIN_PULSE_SHARE = 0.6
MAX_IBI_CV = 0.2
WINDOW_S = 10.0  # heart rate is given per 10 s of PPG


@dataclass(frozen=True, slots=True)
class HeartRate:
    """One window's heart rate. bpm: beats per minute (nan when no rate could be formed);
    ok: passes the quality checks; reason: why not ("" when ok); beats: peaks found;
    pulse_share: pulse-band power share (0..1); ibi_cv: inter-beat interval variation."""

    bpm: float
    ok: bool
    reason: str
    beats: int
    pulse_share: float
    ibi_cv: float


def elgendi_peaks(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Systolic peak indices of a PPG signal (n_samples,) at `sfreq` Hz, and the band-passed signal.

    Elgendi et al. 2013 (see the module docstring). Raises ValueError for a signal shorter than 1 s.
    """
    from scipy.signal import butter, find_peaks, sosfiltfilt

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] < sfreq:
        raise ValueError(f"a PPG window needs at least 1 s of samples, got {x.shape[0]} at {sfreq:g} Hz")
    high = min(8.0, 0.45 * sfreq)
    sos = butter(2, [0.5, high], btype="bandpass", fs=sfreq, output="sos")
    y = sosfiltfilt(sos, x - x.mean())
    sq = np.where(y > 0, y, 0.0) ** 2
    n_peak = max(1, int(round(0.111 * sfreq)))
    n_beat = max(1, int(round(0.667 * sfreq)))
    ma_peak = np.convolve(sq, np.ones(n_peak) / n_peak, mode="same")
    ma_beat = np.convolve(sq, np.ones(n_beat) / n_beat, mode="same")
    above = (ma_peak > ma_beat + 0.02 * sq.mean()).astype(np.int8)
    edges = np.diff(above)
    begins = np.flatnonzero(edges == 1) + 1
    ends = np.flatnonzero(edges == -1) + 1
    peaks: list[int] = []
    min_gap = int(round(0.3 * sfreq))
    for b in begins:
        after = ends[ends > b]
        if after.size == 0:
            break
        e = int(after[0])
        if e - b < n_peak:
            continue
        loc, props = find_peaks(y[b:e], prominence=(None, None))
        if loc.size:
            p = int(b + loc[int(np.argmax(props["prominences"]))])
            if not peaks or p - peaks[-1] > min_gap:
                peaks.append(p)
    return np.asarray(peaks, dtype=np.int64), y


def pulse_share(x: np.ndarray, sfreq: float) -> float:
    """Welch power in 0.6-4 Hz over power in 0.5-8 Hz (0..1; 0 for a flat signal)."""
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    f, p = welch(x - x.mean(), fs=sfreq, nperseg=min(x.shape[0], int(round(4 * sfreq))))
    total = float(p[(f >= 0.5) & (f < min(8.0, sfreq / 2))].sum())
    if not total > 0:
        return 0.0
    return float(p[(f >= 0.6) & (f < 4.0)].sum()) / total


def heart_rate(x: np.ndarray, sfreq: float) -> HeartRate:
    """The heart rate of one PPG window (n_samples,) at `sfreq` Hz; see the module for the checks.

    Non-finite samples, a flat channel or a window under 1 s give ok=False with the reason.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] < sfreq:
        return HeartRate(math.nan, False, "too short", 0, 0.0, math.nan)
    if not np.all(np.isfinite(x)):
        return HeartRate(math.nan, False, "missing samples", 0, 0.0, math.nan)
    if float(np.ptp(x)) == 0.0:
        return HeartRate(math.nan, False, "flat signal", 0, 0.0, math.nan)
    share = pulse_share(x, sfreq)
    peaks, _ = elgendi_peaks(x, sfreq)
    if peaks.shape[0] < 2:
        return HeartRate(math.nan, False, "no pulse found", int(peaks.shape[0]), share, math.nan)
    ibi = np.diff(peaks) / sfreq
    bpm = 60.0 / float(np.median(ibi))
    cv = float(np.std(ibi) / np.mean(ibi))
    reason = ""
    if peaks.shape[0] < MIN_BEATS:
        reason = "too few beats"
    elif not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
        reason = "rate out of range"
    elif share < MIN_PULSE_SHARE:
        reason = "noisy (little power in the pulse band)"
    elif cv > MAX_IBI_CV:
        reason = "irregular beats (movement or noise)"
    return HeartRate(bpm, not reason, reason, int(peaks.shape[0]), share, cv)


def best_channel_rate(data: np.ndarray, sfreq: float) -> tuple[int, HeartRate]:
    """The heart rate from the best of several PPG channels (data: (n_samples, n_channels)).

    Every channel that is not flat is tried; a good window beats a bad one, then the higher pulse
    share wins. Returns (column, HeartRate); column -1 when all channels are flat or missing.
    """
    best: tuple[int, HeartRate] | None = None
    for c in range(data.shape[1]):
        hr = heart_rate(data[:, c], sfreq)
        if hr.reason in ("flat signal", "missing samples", "too short"):
            continue
        if best is None or (hr.ok, hr.pulse_share) > (best[1].ok, best[1].pulse_share):
            best = (c, hr)
    if best is None:
        return -1, HeartRate(math.nan, False, "no usable PPG channel", 0, 0.0, math.nan)
    return best
