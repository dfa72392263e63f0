"""Pure logic of collector/core/time_repair.py and devices/channels.distinct_keys (no I/O): the repair of
bad stamps, lasting jumps, live feeding in pieces, rate measurement, channel keys."""

from __future__ import annotations

import numpy as np
import pytest

from collector.core.channels import distinct_keys, fill_labels
from collector.core.time_repair import (
    LiveRepair,
    RateMeter,
    irregularity,
    measure_rate,
    rate_to_use,
    repair_times,
    typical_period,
)

P = 1 / 256
GRID = 1000.0 + np.arange(4000) * P


def bad(**changes) -> np.ndarray:
    t = GRID.copy()
    for index, value in changes.items():
        t[int(index.lstrip("i"))] = value
    return t


@pytest.mark.parametrize(
    ("stamps", "repaired"),
    [
        (bad(i2000=GRID[2000] + 200_000), [2000]),
        (bad(i2000=GRID[2000] - 200_000), [2000]),
        (bad(i0=GRID[0] - 200_000), [0]),
        (bad(i0=GRID[0] + 200_000), [0]),
        (bad(i3999=GRID[3999] + 200_000), [3999]),
        (bad(i3999=GRID[3999] - 200_000), [3999]),
        (bad(i100=GRID[101], i101=GRID[100]), [100, 101]),
        (bad(i101=GRID[100]), [101]),
        (bad(i700=GRID[700] + 5, i701=GRID[701] + 5, i702=GRID[702] + 5), [700, 701, 702]),
        (bad(i1280=GRID[1280] + 3.0), [1280]),
    ],
    ids=["fwd", "back", "first-early", "first-late", "last-late", "last-early", "swap", "dup", "run3", "3s"],
)
def test_isolated_bad_stamps_go_back_on_the_grid(stamps, repaired):
    r = repair_times(stamps, typical_period(stamps))
    assert r.repaired.tolist() == repaired and r.resets == []
    np.testing.assert_allclose(r.times, GRID, atol=1e-9)


def test_stamps_repeated_in_pairs_are_spread_on_their_fitted_line():
    """A sender that stamps two samples alike: half a period of jitter, not bad stamps. Every sample
    once, one period apart, on the line through the pairs (GRID - P/2; within 5 % of a period,
    the first 0.5 s being fitted on a robust line before the least-squares one takes over), so
    each time is within the stamps' own jitter (half a period) of its stamp."""
    t = 1000.0 + (np.arange(4000) // 2) * 2 * P
    assert typical_period(t) == pytest.approx(P)
    r = repair_times(t, typical_period(t))
    assert r.repaired.size == 0 and r.resets == [] and r.gaps == []
    np.testing.assert_allclose(r.times, GRID - P / 2, atol=0.05 * P)
    assert np.all(np.diff(r.times) > 0.9 * P) and np.all(np.diff(r.times) < 1.1 * P)
    assert np.abs(r.times - t).max() <= 0.55 * P


def test_lasting_jumps_are_kept_forward_and_closed_up_backward():
    t = GRID.copy()
    t[1500:] += 2.0  # a real forward jump: the gap stays
    t[3000:] -= 1.0  # a clock reset: later samples follow one period after the earlier ones
    r = repair_times(t, P)
    assert r.repaired.size == 0 and r.resets == [3000]
    assert np.all(np.diff(r.times) > 0)
    assert r.times[1500] - r.times[1499] == pytest.approx(2.0 + P)
    assert r.times[3000] - r.times[2999] == pytest.approx(P)


@pytest.mark.parametrize(
    ("start", "length", "offset"),
    [(2000, 12, -200_000.0), (2000, 40, 200_000.0), (100, 300, -3.0), (3500, 9, 7.5)],
    ids=["12-back", "40-forward", "300-back-3s", "9-forward"],
)
def test_a_long_run_of_bad_stamps_that_comes_back_to_the_grid_is_repaired(start, length, offset):
    """Longer than MAX_RUN, but the neighbours on both sides agree with one grid: the clock did
    not jump, so there is no gap and nothing after the run moves (review 9, finding 3)."""
    t = GRID.copy()
    t[start : start + length] += offset
    r = repair_times(t, typical_period(t))
    assert r.repaired.tolist() == list(range(start, start + length)) and r.resets == []
    np.testing.assert_allclose(r.times, GRID, atol=1e-9)


def test_a_backward_jump_that_never_comes_back_stays_a_reset():
    t = GRID.copy()
    t[2000:] -= 200_000.0
    r = repair_times(t, typical_period(t))
    assert r.repaired.size == 0 and r.resets == [2000]
    assert np.all(np.diff(r.times) > 0) and r.times[-1] - r.times[0] == pytest.approx(3999 * P)


def test_live_pieces_repair_a_long_run_that_comes_back_within_a_piece():
    t = GRID.copy()
    t[1010:1022] -= 200_000.0
    live = LiveRepair(P)
    data = np.zeros((t.size, 1))
    out = [live.feed(t[i : i + 200], data[i : i + 200])[0] for i in range(0, t.size, 200)]
    out.append(live.feed(np.zeros(0), data[:0], final=True)[0])
    np.testing.assert_allclose(np.concatenate(out), GRID, atol=1e-9)
    assert live.repaired_total == 12 and live.resets_total == 0


@pytest.mark.parametrize("offset", [-200_000.0, 200_000.0])
@pytest.mark.parametrize("piece", [5, 7, 32])
def test_live_pieces_hold_a_long_run_of_bad_stamps_across_pieces(piece, offset):
    """12 bad stamps spread over several pieces: held until the stamps come back, then repaired;
    nothing after them moves (review 9, finding 3, live)."""
    t = GRID.copy()
    t[1003:1015] += offset
    live = LiveRepair(P)
    data = np.arange(t.size, dtype=np.float64)[:, None]
    out_t, out_x = [], []
    for i in range(0, t.size, piece):
        times, rows, _, _ = live.feed(t[i : i + piece], data[i : i + piece])
        out_t.append(times)
        out_x.append(rows)
    times, rows, _, _ = live.feed(np.zeros(0), data[:0], final=True)
    np.testing.assert_allclose(np.concatenate(out_t + [times]), GRID, atol=1e-9)
    np.testing.assert_array_equal(np.concatenate(out_x + [rows]), data)
    assert live.repaired_total == 12 and live.resets_total == 0


def test_live_packets_sharing_one_stamp_are_not_held_as_a_possible_long_run():
    """A sender that stamps each packet of 12 samples alike: no step goes clearly back, so the
    samples are never held as a possible long run of bad stamps (`suspect`, up to 10 s); only the
    clock fit's look-ahead is held (under 1 s of samples). Every sample once, strictly increasing,
    each within the stamps' own jitter (half a packet, 6 periods) of its stamp."""
    t = 1000.0 + (np.arange(4000) // 12) * 12 * P
    live = LiveRepair(P)
    data = np.arange(t.size, dtype=np.float64)[:, None]
    held, out_t, out_x = [], [], []
    for i in range(0, t.size, 24):
        times, rows, _, _ = live.feed(t[i : i + 24], data[i : i + 24])
        out_t.append(times), out_x.append(rows)
        held.append(live.held)
        assert not live.suspect
    times, rows, _, _ = live.feed(np.zeros(0), data[:0], final=True)
    times, rows = np.concatenate(out_t + [times]), np.concatenate(out_x + [rows])
    np.testing.assert_array_equal(rows, data)
    assert max(held) < 256  # under 1 s at 256 Hz
    assert np.all(np.diff(times) > 0) and np.abs(times - t).max() <= 6 * P
    assert live.repaired_total == 0 and live.resets_total == 0


def test_jittered_stamps_are_fitted_within_their_jitter():
    """Stamps jittered by up to 0.3 period on a clean clock: no repair, no reset, no gap; the times
    are the fitted clock, which recovers the true grid to 5 % of a period, so each time is within
    the stamp's own jitter (0.3 period) plus that of its stamp."""
    rng = np.random.default_rng(0)
    t = GRID + rng.uniform(-0.3 * P, 0.3 * P, GRID.size)
    r = repair_times(t, typical_period(t))
    assert r.repaired.size == 0 and r.resets == [] and r.gaps == []
    assert np.all(np.diff(r.times) > 0)
    assert np.abs(r.times - GRID).max() <= 0.05 * P
    assert np.abs(r.times - t).max() <= 0.35 * P


@pytest.mark.parametrize("piece", [1, 7, 50, 333])
def test_live_pieces_give_the_same_times_as_the_whole_stream(piece):
    t = GRID.copy()
    t[49] += 200_000
    t[150] -= 200_000
    t[1001] = t[1000]
    t[2000], t[2001] = t[2001], t[2000]
    whole = repair_times(t, P)
    live = LiveRepair(P)
    data = np.arange(t.size, dtype=float)[:, None]
    out_t, out_x, repaired = [], [], 0
    for i in range(0, t.size, piece):
        times, rows, fixed, _ = live.feed(t[i : i + piece], data[i : i + piece])
        out_t.append(times)
        out_x.append(rows)
        repaired += len(fixed)
    times, rows, fixed, _ = live.feed(np.zeros(0), data[:0], final=True)
    out_t.append(times)
    out_x.append(rows)
    repaired += len(fixed)
    np.testing.assert_allclose(np.concatenate(out_t), whole.times, atol=1e-9)
    np.testing.assert_array_equal(np.concatenate(out_x), data)  # every sample, in order
    assert repaired == whole.repaired.size == 5


def test_live_clock_reset_shifts_every_later_piece():
    t = GRID.copy()
    t[1000:] -= 10.0
    live = LiveRepair(P)
    data = np.zeros((t.size, 1))
    out = [live.feed(t[i : i + 100], data[i : i + 100])[0] for i in range(0, t.size, 100)]
    out.append(live.feed(np.zeros(0), data[:0], final=True)[0])
    times = np.concatenate(out)
    assert times.size == t.size and np.all(np.diff(times) > 0) and live.resets_total == 1


def test_rates_from_gap_free_stretches_and_the_median_spacing():
    t = np.concatenate([1000 + np.arange(2000) / 200.0, 1030 + np.arange(2000) / 200.0])  # a 20 s pause
    assert measure_rate(t, typical_period(t)) == pytest.approx(200.0)
    assert measure_rate(t, typical_period(t), robust=True) == pytest.approx(200.0)
    assert (t.size - 1) / (t[-1] - t[0]) < 130  # what a span over the pause would say
    assert measure_rate(t[:5], 0.005) is None
    meter = RateMeter(window_s=60.0)
    for i in range(0, t.size, 64):
        meter.add(t[i : i + 64], 0.005)
    assert meter.rate() == pytest.approx(200.0)


def test_rate_to_use_beyond_one_percent_and_irregularity():
    assert rate_to_use(256.0, 255.0) == 256.0  # 0.4 %: the declared rate stays
    assert rate_to_use(256.0, 200.0) == 200.0
    assert rate_to_use(0.0, 250.3) == 250.3
    assert rate_to_use(256.0, None) == 256.0
    rng = np.random.default_rng(1)
    assert irregularity(np.cumsum(np.full(500, 0.004) + rng.uniform(-0.001, 0.001, 500))) < 0.5
    assert irregularity(np.cumsum(rng.exponential(0.004, 500))) > 1.0
    # One stamp per pushed chunk of 20-44 samples at 250 Hz (the chunk's last sample's time): each
    # step counts per sample of the chunk it ends, so the stream is regular; a stamp per sample
    # drawn from the same steps is not.
    sizes = rng.integers(20, 45, 60)
    ends = 1000.0 + np.cumsum(sizes) / 250.0
    stamps = np.repeat(ends, sizes)
    assert irregularity(stamps) < 0.01 and typical_period(stamps) == pytest.approx(0.004, rel=0.05)
    assert irregularity(np.cumsum(np.repeat(sizes, 1) / 250.0)) > 0.2


@pytest.mark.parametrize(
    ("labels", "keys"),
    [
        (["EEG"] * 4, ("EEG", "EEG#2", "EEG#3", "EEG#4")),
        (["Cz", "", "Cz", "Pz", "Cz", "ch2"], ("Cz", "ch2#2", "Cz#2", "Pz", "Cz#3", "ch2")),
        (["A", "A#2", "A"], ("A", "A#2", "A#3")),
        ([None, None], ("ch1", "ch2")),
        (["TP9", "AF7", "AF8", "TP10"], ("TP9", "AF7", "AF8", "TP10")),
    ],
)
def test_channel_keys_are_distinct_and_in_column_order(labels, keys):
    assert distinct_keys(labels) == keys


def test_missing_labels_are_filled_per_column():
    assert fill_labels(["Fz", None], 3) == ("Fz", "ch2", "ch3")
    assert fill_labels(["X", "X"], 2, ["TP9", "AF7"]) == ("X", "X#2")
