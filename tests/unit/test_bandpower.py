"""Band-power core against a per-window scipy.signal.welch reference, and its quality flags."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.signal

from collector.core.bandpower import (
    BandSettings,
    _hann,
    compute_band_powers,
    grid_window_ends,
)
from collector.errors import UsageError


def reference(
    x: np.ndarray, sfreq: float, settings: BandSettings, ends: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per-window scipy.signal.welch, band sums as the issue defines them."""
    window, _, nperseg, noverlap = settings.sizes(sfreq)
    detrend = False if settings.detrend == "none" else settings.detrend
    absolute = np.empty((len(ends), x.shape[1], len(settings.bands)))
    line_share = np.empty((len(ends), x.shape[1]))
    for k, end in enumerate(ends):
        f, psd = scipy.signal.welch(
            x[end - window + 1 : end + 1],
            sfreq,
            window="hann",
            nperseg=nperseg,
            noverlap=noverlap,
            detrend=detrend,
            scaling="density",
            axis=0,
        )
        df = f[1] - f[0]
        for b, (_, lo, hi) in enumerate(settings.bands):
            absolute[k, :, b] = psd[(f >= lo) & (f < hi)].sum(axis=0) * df
        line = (np.abs(f - 50) <= 1) | (np.abs(f - 60) <= 1)
        line_share[k] = psd[line].sum(axis=0) / psd[f >= 1].sum(axis=0)
    relative = absolute / absolute.sum(axis=-1, keepdims=True)
    return absolute, relative, line_share


def eeg_like(n: int, n_ch: int, sfreq: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sfreq
    x = rng.standard_normal((n, n_ch)) * 8.0
    x += 20.0 * np.sin(2 * np.pi * 10.0 * t)[:, None] + 300.0  # alpha plus a DC offset
    x += np.cumsum(rng.standard_normal((n, n_ch)), axis=0) * 0.5  # slow drift
    return x


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize(
    ("sfreq", "window_s", "step_s"),
    [
        (256.0, 2.0, 0.5),
        (500.0, 2.0, 0.5),
        (100.0, 2.0, 0.5),
        (125.0, 2.0, 0.5),  # odd nperseg (125): hop 63, step 62: windows share no segments
        (256.0, 2.3, 0.5),  # 589-sample window: not a multiple of the 128-sample hop
        (256.0, 2.0, 0.3),  # step not a multiple of the hop
        (250.5, 3.0, 0.25),
    ],
)
def test_equals_per_window_welch(sfreq: float, window_s: float, step_s: float) -> None:
    settings = BandSettings(window_s=window_s, step_s=step_s)
    x = eeg_like(int(sfreq * 20), 3, sfreq)
    got = compute_band_powers(x, sfreq, settings)
    window, step, _, _ = settings.sizes(sfreq)
    assert np.array_equal(got.window_ends, np.arange(window - 1, x.shape[0], step))
    absolute, relative, line_share = reference(x, sfreq, settings, got.window_ends)
    assert got.absolute_uv2.shape == (len(got.window_ends), 3, 5)
    assert rel_err(got.absolute_uv2, absolute) <= 1e-9
    assert rel_err(got.relative, relative) <= 1e-9
    if sfreq / 2 > 61:
        assert rel_err(got.quality.line_noise_share, line_share) <= 1e-9


@pytest.mark.parametrize("nperseg", [*range(1, 70), 127, 128, 250, 255, 256, 500, 512, 1000, 2048, 4096])
def test_hann_is_scipys_periodic_hann_bit_for_bit(nperseg: int) -> None:
    """The window is computed without importing scipy.signal; it must be scipy's, not just close."""
    assert np.array_equal(_hann(nperseg), scipy.signal.get_window("hann", nperseg))


def test_numpy_fft_is_scipy_fft_bit_for_bit() -> None:
    """The band powers use numpy.fft (lighter to import); it must give scipy.fft's numbers exactly."""
    import scipy.fft

    rng = np.random.default_rng(7)
    for nperseg in (64, 100, 128, 200, 250, 256, 301, 500, 512, 1000, 1024):
        x = rng.normal(0.0, 30.0, (3, 5, nperseg))
        assert np.array_equal(np.fft.rfft(x, axis=-1), scipy.fft.rfft(x, axis=-1))
        for sfreq in (128.0, 250.0, 256.0, 173.3):
            assert np.array_equal(np.fft.rfftfreq(nperseg, 1 / sfreq), scipy.fft.rfftfreq(nperseg, 1 / sfreq))


def test_large_dc_offset_still_equals_welch() -> None:
    # The constant detrend is folded into the FFT (bins 0 and 1); DC-coupled amplifiers sit at
    # tens of mV, so check 100 mV of offset under 10 uV of signal.
    x = eeg_like(256 * 20, 3, 256.0) + 1e5
    got = compute_band_powers(x, 256.0)
    absolute, relative, _ = reference(x, 256.0, BandSettings(), got.window_ends)
    assert rel_err(got.absolute_uv2, absolute) <= 1e-9
    assert rel_err(got.relative, relative) <= 1e-9


@pytest.mark.parametrize("detrend", ["linear", "none"])
def test_other_detrends_equal_welch(detrend: str) -> None:
    settings = BandSettings(detrend=detrend)
    x = eeg_like(256 * 10, 2, 256.0, seed=3)
    got = compute_band_powers(x, 256.0, settings)
    absolute, relative, _ = reference(x, 256.0, settings, got.window_ends)
    assert rel_err(got.absolute_uv2, absolute) <= 1e-9
    assert rel_err(got.relative, relative) <= 1e-9


def test_irregular_window_ends_and_segment_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny FFT batches force many batches; irregular ends force the generic segment sharing.
    import collector.core.bandpower as bandpower

    monkeypatch.setattr(bandpower, "_BATCH_VALUES", 3000)
    settings = BandSettings()
    x = eeg_like(256 * 12, 4, 256.0, seed=5)
    ends = np.array([511, 512, 700, 701, 1500, 3071])
    got = compute_band_powers(x, 256.0, settings, ends)
    absolute, relative, _ = reference(x, 256.0, settings, ends)
    assert np.array_equal(got.window_ends, ends)
    assert rel_err(got.absolute_uv2, absolute) <= 1e-9
    assert rel_err(got.relative, relative) <= 1e-9
    with pytest.raises(ValueError, match="window_ends"):
        compute_band_powers(x, 256.0, settings, np.array([510]))


def test_relative_powers_sum_to_one_and_grid() -> None:
    x = eeg_like(256 * 30, 4, 256.0)
    got = compute_band_powers(x, 256.0)
    assert np.allclose(got.relative.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    assert got.band_names == ("delta", "theta", "alpha", "beta", "gamma")
    # 30 s, 2 s windows every 0.5 s: 57 windows.
    assert len(grid_window_ends(x.shape[0], 256.0, BandSettings())) == 57 == len(got.window_ends)
    assert len(grid_window_ends(511, 256.0, BandSettings())) == 0


@pytest.mark.parametrize(
    ("freq_hz", "band"), [(10.0, "alpha"), (20.0, "beta"), (6.0, "theta"), (2.5, "delta")]
)
def test_sine_lands_in_its_band(freq_hz: float, band: str) -> None:
    sfreq = 256.0
    t = np.arange(int(sfreq * 10)) / sfreq
    rng = np.random.default_rng(1)
    x = (30.0 * np.sin(2 * np.pi * freq_hz * t))[:, None] + rng.standard_normal((t.size, 2))
    got = compute_band_powers(x, sfreq)
    winner = np.argmax(got.relative, axis=-1)
    assert (winner == got.band_names.index(band)).all()
    assert got.relative[..., got.band_names.index(band)].min() > 0.8


def _brute_quality(x: np.ndarray, ends: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    ptp = np.empty((len(ends), x.shape[1]))
    share = np.empty_like(ptp)
    for k, end in enumerate(ends):
        w = x[end - window + 1 : end + 1]
        hi, lo = w.max(axis=0), w.min(axis=0)
        ptp[k] = hi - lo
        on = (w == hi).sum(axis=0) + np.where(hi == lo, 0, (w == lo).sum(axis=0))
        share[k] = on / window
    return ptp, share


@pytest.mark.parametrize(("window_s", "step_s"), [(2.0, 0.5), (2.3, 0.3)])
def test_peak_to_peak_and_clipping_equal_brute_force(window_s: float, step_s: float) -> None:
    from collector.core.bandpower import _block_quality

    settings = BandSettings(window_s=window_s, step_s=step_s)
    rng = np.random.default_rng(7)
    x = np.round(rng.standard_normal((256 * 20, 3)) * 40) * 0.48828125  # quantised like a Muse
    x[1000:1400, 1] = x[:, 1].max()  # railed stretch
    x[3000:3600, 2] = 5.0  # flat stretch
    ends = grid_window_ends(x.shape[0], 256.0, settings)
    window = settings.sizes(256.0)[0]
    ptp, share = _block_quality(np.ascontiguousarray(x.T), ends - window + 1, window)
    want_ptp, want_share = _brute_quality(x, ends, window)
    assert np.array_equal(ptp, want_ptp)
    assert np.allclose(share, want_share, rtol=0, atol=1e-15)


def test_a_window_whose_only_missing_sample_is_its_last_or_first_is_missing() -> None:
    """A window's samples are [end - window + 1, end], both ends included: a NaN on either end is
    in the window, so it is flagged `missing` and has no powers; the windows next to it are clean."""
    sfreq = 256.0
    n = int(sfreq * 12)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 2)) * 10.0
    ends = grid_window_ends(n, sfreq, BandSettings())
    last_of = int(ends[5])  # the last sample of the sixth window
    first_of = int(ends[12]) - 511  # the first sample of the thirteenth
    x[last_of, 0] = np.nan
    x[first_of, 1] = np.nan
    got = compute_band_powers(x, sfreq)
    q = got.quality
    for c, k in ((0, last_of), (1, first_of)):
        hit = (ends >= k) & (ends - 511 <= k)
        assert q.missing[:, c].tolist() == hit.tolist(), f"channel {c}: NaN at sample {k}"
        assert np.isnan(got.absolute_uv2[hit, c]).all() and np.isfinite(got.absolute_uv2[~hit, c]).all()
    assert q.missing[5, 0] and not q.missing[4, 0]  # its only NaN is its last sample
    assert q.missing[12, 1] and not q.missing[13, 1]  # ... its first sample


def test_quality_flags() -> None:
    sfreq = 256.0
    n = int(sfreq * 20)
    t = np.arange(n) / sfreq
    rng = np.random.default_rng(2)
    clean = rng.standard_normal(n) * 10.0 + 10.0 * np.sin(2 * np.pi * 10 * t)
    x = np.column_stack(
        [
            clean,  # 0: clean
            np.full(n, 123.0) + rng.standard_normal(n) * 0.05,  # 1: flat
            np.clip(clean * 8.0, -100.0, 100.0),  # 2: railed at +-100 uV
            clean + 400.0 * np.sin(2 * np.pi * 0.7 * t),  # 3: excessive amplitude (800 uV ptp)
            clean + 30.0 * np.sin(2 * np.pi * 50.0 * t),  # 4: mains at 50 Hz
            clean + 30.0 * np.sin(2 * np.pi * 60.0 * t),  # 5: mains at 60 Hz
        ]
    )
    x[3000, 0] = np.nan  # one missing sample on channel 0
    got = compute_band_powers(x, sfreq)
    q = got.quality
    ends = got.window_ends
    hit = (ends >= 3000) & (ends - 511 <= 3000)
    assert (q.missing[:, 0] == hit).all() and not q.missing[:, 1:].any()
    assert np.isnan(got.absolute_uv2[hit, 0]).all() and np.isfinite(got.absolute_uv2[~hit, 0]).all()
    assert np.isfinite(got.absolute_uv2[:, 1:]).all()
    ok = ~hit
    assert not (q.flat[ok, 0] | q.clipped[ok, 0] | q.excessive_amplitude[ok, 0] | q.line_noise[ok, 0]).any()
    assert q.flat[:, 1].all() and not q.flat[:, [0, 2, 3, 4, 5]].any()
    assert q.clipped[:, 2].all() and not q.clipped[:, [0, 3, 4, 5]][ok].any()
    assert not q.clipped[:, 1].any()  # a flat channel is flat, not clipped
    assert q.excessive_amplitude[:, 3].all() and not q.excessive_amplitude[:, [0, 1, 4, 5]].any()
    assert q.line_noise[:, 4].all() and q.line_noise[:, 5].all()
    assert (q.line_noise_share[:, 4] > 0.5).all() and (q.line_noise_share[ok, 0] < 0.05).all()
    assert np.allclose(q.ptp_uv[:, 1], np.ptp(x[:512, 1]), atol=1.0)


def test_line_noise_share_is_unknown_below_nyquist() -> None:
    x = eeg_like(100 * 10, 2, 100.0)
    q = compute_band_powers(x, 100.0).quality
    assert np.isnan(q.line_noise_share).all() and not q.line_noise.any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_s": 0}, "window_s"),
        ({"segment_s": 3.0}, "segment_s"),
        ({"overlap": 1.0}, "overlap"),
        ({"detrend": "median"}, "detrend"),
        ({"bands": (("alpha", 13.0, 8.0),)}, "alpha"),
        ({"bands": (("a", 1.0, 2.0), ("a", 2.0, 3.0))}, "repeat"),
        ({"bands": {"alpha": [8.0]}}, "malformed"),
    ],
)
def test_invalid_settings_name_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        BandSettings(**kwargs)


def test_bands_from_a_profile_mapping() -> None:
    from_profile = BandSettings(
        bands={"delta": [1, 4], "theta": [4, 8], "alpha": [8, 13], "beta": [13, 30], "gamma": [30, 44]}
    )
    assert from_profile == BandSettings() and hash(from_profile) == hash(BandSettings())
    two = BandSettings(bands={"alpha": (8, 13), "beta": (13, 30)})
    assert two.band_names == ("alpha", "beta")
    x = eeg_like(256 * 6, 2, 256.0)
    assert compute_band_powers(x, 256.0, two).absolute_uv2.shape[-1] == 2


def test_invalid_rate_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="Sampling rate"):
        BandSettings().sizes(0.0)


def test_much_faster_than_a_welch_loop() -> None:
    # The benchmark (scripts/bench_bandpower.py) measures ~50x on 10 min; 10x here leaves room
    # for a loaded CI machine.
    sfreq, settings = 256.0, BandSettings()
    x = eeg_like(int(sfreq * 120), 4, sfreq)
    ends = grid_window_ends(x.shape[0], sfreq, settings)

    def best(fn, repeat: int = 3) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    loop = best(lambda: reference(x, sfreq, settings, ends))
    core = best(lambda: compute_band_powers(x, sfreq, settings))
    assert loop / core > 10, f"core {core:.4f} s vs loop {loop:.4f} s"
