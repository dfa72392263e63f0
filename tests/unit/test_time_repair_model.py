"""The clock model (collector.core.clock_fit through collector.core.time_repair): a fitted line of
stamp against sample index tells jitter from gaps, clock resets and bad stamps, live as in replay.

Pure and fast: real recordings' stamps (tests/data) through the functions, no sources, no CLI
(that is tests/e2e/test_field_cases_jitter.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collector.core.time_repair import LiveRepair, measure_rate, repair_times, typical_period

DATA = Path(__file__).resolve().parents[1] / "data"
FIELD = DATA / "field-cases"
RESETS = DATA / "xdf-example-clock_resets.xdf"
P = 1 / 256


def muselsl(name: str) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(FIELD / name)["timestamps"].to_numpy(np.float64).copy()


def xdf_stream(path: Path, name: str | None = None) -> tuple[np.ndarray, float]:
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    eeg = [
        s for s in streams if len(s["time_stamps"]) > 100 and (name is None or s["info"]["name"][0] == name)
    ]
    s = max(eeg, key=lambda s: len(s["time_stamps"]))
    return np.asarray(s["time_stamps"], dtype=np.float64), float(s["info"]["nominal_srate"][0])


def fit(t: np.ndarray):
    return repair_times(t, typical_period(t))


def live(t: np.ndarray, piece: int, p: float | None = None):
    rep = LiveRepair(p if p is not None else typical_period(t[:512]))
    data = np.arange(t.size, dtype=np.float64)[:, None]
    out_t, out_x, repaired, resets, pos = [], [], [], [], 0
    for i in range(0, t.size, piece):
        times, rows, fixed, res = rep.feed(t[i : i + piece], data[i : i + piece])
        out_t.append(times), out_x.append(rows)
        repaired += [pos + k for k in fixed]
        resets += [pos + k for k in res]
        pos += times.size
    times, rows, fixed, res = rep.feed(np.zeros(0), data[:0], final=True)
    out_t.append(times), out_x.append(rows)
    repaired += [pos + k for k in fixed]
    resets += [pos + k for k in res]
    return np.concatenate(out_t), np.concatenate(out_x), repaired, resets


def gaps_in(times: np.ndarray, p: float) -> np.ndarray:
    """What every caller sees as a gap: a step over 4 periods (at least 20 ms)."""
    return np.flatnonzero(np.diff(times) > max(4 * p, 0.02)) + 1


# -- jitter is not a gap --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["muselsl_jitter_n170.csv", "muselsl_jitter_ssaep.csv"])
def test_muselsl_packet_jitter_gives_no_gap_no_reset_no_repair(name):
    t = muselsl(name)
    assert np.sum(np.diff(t) < 0) > 40  # the stamps do go back, dozens of times
    r = fit(t)
    assert r.gaps == [] and r.resets == [] and r.repaired.size == 0
    assert r.packet == 12 and 0.005 < r.jitter_s < 0.03
    steps = np.diff(r.times)
    assert steps.min() > 0.9 * P and steps.max() < 1.1 * P  # contiguous, monotone
    assert np.abs(r.times - t).max() < 0.035  # within the stamps' own jitter
    assert gaps_in(r.times, P).size == 0
    assert measure_rate(r.times, P) == pytest.approx(256.0, rel=2e-4)


@pytest.mark.parametrize("name", ["muselsl_jitter_n170.csv", "muselsl_jitter_ssaep.csv"])
@pytest.mark.parametrize("lost", [12, 24])
@pytest.mark.parametrize("at", [15000, 15005, 15011, 3000])
def test_a_lost_packet_in_a_jittery_stream_is_exactly_one_gap_of_its_length(name, lost, at):
    t = np.delete(muselsl(name), np.arange(at, at + lost))
    r = fit(t)
    assert r.gaps == [at] and r.resets == [] and r.repaired.size == 0
    step = r.times[at] - r.times[at - 1]
    assert step == pytest.approx((lost + 1) * P, abs=0.004)  # the missing samples, +- a few ms
    assert gaps_in(r.times, P).tolist() == [at]


@pytest.mark.slow
def test_packet_stamped_stream_with_drift_has_no_gap_and_its_fitted_rate():
    """A sender 0.01 % fast, stamping 12-sample packets on arrival (0-25 ms late, sometimes two in a
    burst, stamps stepping back): no gap, the rate of its clock."""
    rng = np.random.default_rng(7)
    n = 256 * 300
    true = 50.0 + np.arange(n) * P * (1 - 1e-4)
    delay = np.repeat(rng.gamma(2.0, 4e-3, n // 12).clip(0, 0.03), 12)
    # muselsl: each packet's last sample stamped on arrival, the others extrapolated back; ms resolution
    t = np.round(true[11::12].repeat(12) + delay - np.tile(np.arange(11, -1, -1), n // 12) * P, 3)
    assert np.sum(np.diff(t) < 0) > 10
    r = fit(t)
    assert r.gaps == [] and r.resets == [] and r.repaired.size == 0
    assert measure_rate(r.times, P) == pytest.approx(256.0 / (1 - 1e-4), rel=2e-5)
    assert np.all(np.diff(r.times) > 0)


# -- bad stamps -----------------------------------------------------------------------------------

GRID = 1000.0 + np.arange(4000) * P


@pytest.mark.parametrize("offset", [200_000.0, -200_000.0])
@pytest.mark.parametrize("where", [0, 1280, 2000, 3999])
def test_an_outlier_stamp_is_repaired_from_the_line(offset, where):
    t = GRID.copy()
    t[where] += offset
    r = fit(t)
    assert r.repaired.tolist() == [where] and r.resets == [] and r.gaps == []
    np.testing.assert_allclose(r.times, GRID, atol=1e-9)


@pytest.mark.slow
def test_an_outlier_in_a_jittery_stream_is_repaired_and_nothing_else():
    t = muselsl("muselsl_jitter_n170.csv")
    clean = fit(t).times
    t[12345] += 200_000.0
    r = fit(t)
    assert r.repaired.tolist() == [12345] and r.gaps == [] and r.resets == []
    assert abs(r.times[12345] - clean[12345]) < 0.002


def test_swapped_stamps_on_a_clean_clock_are_repaired_and_within_jitter_are_just_jitter():
    t = GRID.copy()
    t[100], t[101] = t[101], t[100]
    r = fit(t)
    assert r.repaired.tolist() == [100, 101]
    np.testing.assert_allclose(r.times, GRID, atol=1e-9)
    m = muselsl("muselsl_jitter_ssaep.csv")
    m[5000], m[5001] = m[5001], m[5000]
    r = fit(m)
    assert r.gaps == [] and r.resets == [] and np.all(np.diff(r.times) > 0)


@pytest.mark.parametrize(
    ("start", "length", "offset"),
    [(2000, 12, -200_000.0), (2000, 40, 200_000.0), (100, 300, -3.0), (3500, 9, 7.5)],
)
def test_a_run_of_bad_stamps_that_comes_back_is_repaired(start, length, offset):
    t = GRID.copy()
    t[start : start + length] += offset
    r = fit(t)
    assert r.repaired.tolist() == list(range(start, start + length)) and r.resets == [] and r.gaps == []
    np.testing.assert_allclose(r.times, GRID, atol=1e-9)


# -- gaps and resets ------------------------------------------------------------------------------


def test_a_real_reset_closes_up_and_a_forward_jump_stays_a_gap():
    t = GRID.copy()
    t[1500:] += 2.0
    t[3000:] -= 5.0
    r = fit(t)
    assert r.gaps == [1500] and r.resets == [3000] and r.repaired.size == 0
    assert r.times[1500] - r.times[1499] == pytest.approx(2.0 + P)
    assert r.times[3000] - r.times[2999] == pytest.approx(P)
    assert np.all(np.diff(r.times) > 0)


def test_a_reset_in_a_jittery_stream():
    t = muselsl("muselsl_jitter_n170.csv")
    t[20000:] -= 30.0
    r = fit(t)
    assert r.resets == [20000] and r.gaps == [] and r.repaired.size == 0
    assert r.times[20000] - r.times[19999] == pytest.approx(P, rel=0.05)


def test_clock_reset_example_keeps_its_one_real_break_despite_a_wandering_clock():
    t, _ = xdf_stream(RESETS, "BioSemi")
    r = fit(t)
    assert r.gaps == [12876] and r.resets == [] and r.repaired.size == 0
    assert np.all(np.diff(r.times) > 0)


def test_irregular_eeg_hole_is_one_gap_and_swapped_samples_are_in_order():
    t, nominal = xdf_stream(FIELD / "irregular_eeg.xdf")
    assert nominal == 0
    r = fit(t)
    assert len(r.gaps) == 1 and r.resets == []
    k = r.gaps[0]
    assert r.times[k] - r.times[k - 1] == pytest.approx(0.5, abs=0.03)
    assert np.all(np.diff(r.times) > 0)
    assert measure_rate(r.times, typical_period(t), robust=True) == pytest.approx(250, rel=0.02)


def test_declared_256_really_200_measures_200():
    t, nominal = xdf_stream(FIELD / "declared256_real200.xdf")
    assert nominal == 256
    r = repair_times(t, typical_period(t))
    assert r.gaps == [] and r.resets == []
    assert measure_rate(r.times, typical_period(t)) == pytest.approx(200.0, rel=1e-3)
    times, _, _, _ = live(t, 37, p=1 / 256)  # live starts from the declared rate
    assert measure_rate(times, typical_period(t)) == pytest.approx(200.0, rel=1e-3)


def test_live_period_follows_the_streams_recent_stamps_not_its_first_estimate():
    """Declared 64 Hz, really 256 Hz, then 250 Hz from 15 s on: the live period (which sets the
    source's gap threshold and its rate meter) is the fitted clock's, over its last seconds."""
    t = 100.0 + np.arange(256 * 15) / 256.0
    t = np.concatenate((t, t[-1] + np.arange(1, 250 * 15 + 1) / 250.0))
    rep = LiveRepair(1 / 64)
    data = np.zeros((t.size, 1))
    periods = {}
    for i in range(0, t.size, 32):
        rep.feed(t[i : i + 32], data[i : i + 32])
        periods[i + 32] = rep.period_s
    assert periods[256 * 3] == pytest.approx(1 / 256, rel=1e-6)  # not the declared 1/64
    assert periods[256 * 14] == pytest.approx(1 / 256, rel=1e-6)
    assert rep.period_s == pytest.approx(1 / 250, rel=1e-6)  # the rate it has now, not its first


@pytest.mark.parametrize("name", ["jump_outlier.xdf", "jump_outlier_first_of_chunk.xdf"])
def test_jump_outlier_files(name):
    t, _ = xdf_stream(FIELD / name)
    r = fit(t)
    assert r.repaired.size == 1 and r.gaps == [] and r.resets == [] and t.size == 5120
    assert np.all(np.diff(r.times) > 0)


# -- live = replay --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("piece", [1, 12, 50, 333])
def test_live_pieces_give_the_same_times_gaps_and_repairs_as_the_whole_stream(piece):
    t = np.delete(muselsl("muselsl_jitter_n170.csv")[:12000], np.arange(6000, 6012))
    t[300] += 200_000.0
    t[9000:] -= 20.0
    whole = fit(t)
    times, rows, repaired, resets = live(t, piece, p=P)
    np.testing.assert_allclose(times, whole.times, atol=1e-9)
    np.testing.assert_array_equal(rows[:, 0], np.arange(t.size))  # every sample, once, in order
    assert repaired == whole.repaired.tolist() == [300]
    assert resets == whole.resets == [9000]
    assert whole.gaps == [6000] and gaps_in(times, P).tolist() == [6000]


def test_live_holds_only_the_look_ahead_in_a_jittery_stream():
    t = muselsl("muselsl_jitter_ssaep.csv")[:5000]
    rep = LiveRepair(P)
    data = np.zeros((t.size, 1))
    held = []
    for i in range(0, t.size, 12):
        rep.feed(t[i : i + 12], data[i : i + 12])
        held.append(rep.held)
        assert not rep.suspect
    assert max(held) <= 4 * 64  # 1 s at most (the first second of a segment), then about 0.75 s


# -- clean blocks at once = block by block --------------------------------------------------------


def _synthetic(seed: int) -> tuple[np.ndarray, float]:
    """Stamps with one kind of trouble each: packets with late arrivals, white jitter, gaps, bad
    stamps and a reset, ms-rounded late packets; rates from 128 to 1000 Hz."""
    rng = np.random.default_rng(seed)
    p = 1 / float(rng.choice([128, 250, 256, 500, 1000]))
    n = int(rng.integers(3000, 40000))
    t = 1000 + np.arange(n) * p * (1 + rng.normal(0, 1e-4))
    kind = seed % 5
    if kind == 0:
        pk = int(rng.choice([6, 12, 32]))
        t = np.repeat(t[::pk] + np.abs(rng.normal(0, 0.006, t[::pk].size)), pk)[:n]
    elif kind == 1:
        t += rng.normal(0, p * rng.uniform(0.01, 0.4), n)
    elif kind == 2:
        for i in rng.integers(1, n, 3):
            t[i:] += rng.uniform(0.05, 5)
    elif kind == 3:
        for i in rng.integers(0, n, 5):
            t[i] += rng.choice([-1, 1]) * rng.uniform(0.01, 1e5)
        t[int(rng.integers(n // 2, n)) :] -= rng.uniform(0.1, 30)
    else:
        t = np.round(t + np.abs(rng.normal(0, 0.004, n)), 3)
    return t, p


def _model_outcome(t: np.ndarray, p: float, piece: int | None) -> tuple:
    from collector.core.clock_fit import ClockFit

    m = ClockFit(p)
    if piece is None:
        m.add(t)
        m.run(True)
        times = m.take(True)
    else:
        parts = []
        for i in range(0, t.size, piece):
            m.add(t[i : i + piece])
            m.run(False)
            parts.append(m.take(False))
        m.run(True)
        times = np.concatenate([*parts, m.take(True)])
    return times, sorted(m.repaired), m.resets, m.gaps, m.jitter, m.packet


@pytest.mark.parametrize("case", [*range(10), "n170", "ssaep", "resets", "outlier"])
@pytest.mark.parametrize("piece", [None, 37])
def test_clean_blocks_at_once_give_bit_for_bit_what_block_by_block_gives(case, piece, monkeypatch):
    """`ClockFit._clean_blocks` (a run of clean blocks in one vectorised pass, issue 23) must decide
    exactly as `_block` one by one: the same times to the bit, repairs, gaps, resets, jitter, packet."""
    from collector.core.clock_fit import ClockFit

    if case in ("n170", "ssaep"):
        t = muselsl(f"muselsl_jitter_{case}.csv")
        t = np.delete(t, np.arange(9000, 9012))  # and a lost packet
        t[20000] += 0.3
    elif case == "resets":
        t, _ = xdf_stream(RESETS)
    elif case == "outlier":
        t, _ = xdf_stream(FIELD / "jump_outlier.xdf")
    else:
        t, _ = _synthetic(int(case))
    p = typical_period(t)
    batched = _model_outcome(t, p, piece)
    monkeypatch.setattr(ClockFit, "_clean_blocks", lambda self: False)
    one_by_one = _model_outcome(t, p, piece)
    np.testing.assert_array_equal(batched[0], one_by_one[0])
    assert batched[1:] == one_by_one[1:]


@pytest.mark.parametrize("case", [0, 1, 5, 6, "n170"])
def test_the_packet_pre_check_changes_no_outcome(case, monkeypatch):
    """`_packets_possible` only skips packet sizes that cannot win: with it on or forced off, the
    model decides the same times, repairs, gaps, resets, jitter and packet."""
    from collector.core import clock_fit

    t = muselsl("muselsl_jitter_n170.csv") if case == "n170" else _synthetic(int(case))[0]
    p = typical_period(t)
    checked = _model_outcome(t, p, None)
    monkeypatch.setattr(clock_fit, "_packets_possible", lambda irregular, smallest: True)
    monkeypatch.setattr(
        clock_fit,
        "_packets_possible_rows",
        lambda irregular, smallest: (np.count_nonzero(irregular, axis=1), np.ones(irregular.shape[0], bool)),
    )
    unchecked = _model_outcome(t, p, None)
    np.testing.assert_array_equal(checked[0], unchecked[0])
    assert checked[1:] == unchecked[1:]


def test_the_packet_pre_check_never_rules_out_a_size_that_holds_the_share():
    """Against brute force on many position sets: whenever some m >= smallest has PACKET_SHARE
    of the positions on one phase, `_packets_possible` says so."""
    from collector.core.clock_fit import MAX_PACKET, PACKET_SHARE, _packets_possible

    rng = np.random.default_rng(7)
    ruled_out = 0
    for _ in range(3000):
        m_true = int(rng.integers(2, 20))
        n = int(rng.integers(16, 200))
        on = np.arange(n) * m_true + int(rng.integers(0, m_true))
        noise = rng.integers(0, n * m_true, int(rng.integers(0, n // 2 + 1)))
        where = np.unique(np.concatenate((on[: int(n * rng.uniform(0.6, 1.0))], noise)))
        smallest = int(rng.integers(2, 16))
        holds = any(
            np.bincount(where % m, minlength=m).max() >= PACKET_SHARE * where.size
            for m in range(smallest, MAX_PACKET + 1)
        )
        possible = _packets_possible(where, smallest)
        assert possible or not holds
        ruled_out += not possible
    assert ruled_out > 300  # the check does rule sets out, or this test would prove nothing


def test_the_batched_thresholds_are_the_one_by_one_thresholds_to_the_bit():
    """`_thresholds_rows` (issue 23) gives each row exactly `ClockFit._thresholds`' gap and bad
    limits, where each of its three terms is the largest and on ties."""
    from collector.core.clock_fit import ClockFit, _thresholds_rows

    rng = np.random.default_rng(11)
    slope = np.concatenate((1.0 / rng.uniform(1, 3000, 4000), [1 / 256, 1 / 200, 0.005, 0.04, 1.0]))
    jitter = np.concatenate(
        (rng.uniform(0, 0.05, 4000) * rng.integers(0, 2, 4000), [0.0, 0.02, 0.0, 0.5, 0.0])
    )
    packet = np.concatenate((rng.integers(1, 65, 4000), [1, 12, 4, 1, 64]))
    gap, bad = _thresholds_rows(slope, jitter, packet)
    model = ClockFit(1 / 256)
    want = [
        model._thresholds(s, j, m)
        for s, j, m in zip(slope.tolist(), jitter.tolist(), packet.tolist(), strict=True)
    ]
    assert gap.tolist() == [g for g, _ in want] and bad.tolist() == [b for _, b in want]
    assert (
        len({int(np.argmax(terms)) for terms in _terms(slope, jitter, packet)}) == 3
    )  # each term wins somewhere


def _terms(slope, jitter, packet):
    from collector.core.clock import gap_threshold_s
    from collector.core.clock_fit import GAP_JITTER, GAP_PACKETS

    for s, j, m in zip(slope.tolist(), jitter.tolist(), packet.tolist(), strict=True):
        yield (gap_threshold_s(1.0 / s), GAP_JITTER * j, GAP_PACKETS * m * s)


def test_the_packet_pre_check_of_all_rows_at_once_is_the_one_by_one_check():
    """`_packets_possible_rows` (issue 23) decides every row as `_packets_possible` decides its
    positions: rows of packets, of jitter, empty rows, rows with one position, first and last
    positions set."""
    from collector.core.clock_fit import _packets_possible, _packets_possible_rows

    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(300):
        rows, n = int(rng.integers(1, 40)), int(rng.integers(2, 900))
        irregular = np.zeros((rows, n), dtype=bool)
        for r in range(rows):
            m = int(rng.integers(2, 20))
            irregular[r, int(rng.integers(0, m)) :: m] = rng.random() < 0.7
            irregular[r] |= rng.random(n) < rng.choice([0.0, 0.02, 0.3])
        irregular[rng.random(rows) < 0.1] = False
        smallest = int(rng.integers(2, 16))
        counts, possible = _packets_possible_rows(irregular, smallest)
        assert counts.tolist() == np.count_nonzero(irregular, axis=1).tolist()
        assert possible.tolist() == [_packets_possible(np.flatnonzero(row), smallest) for row in irregular]
        seen |= set(possible[counts >= 16].tolist())
    assert seen == {True, False}  # both outcomes were tested


@pytest.mark.parametrize("packet", [1, 2, 3, 12, 32, 64, 256])
def test_packets_under_one_stamp_give_the_period_and_a_fit_without_gaps(packet):
    """A sender that stamps each packet of m samples once (the stamp repeated m times): the period
    is the packet step over m samples, every window of equal stamps is fitted without a crash,
    and the fitted times are one period apart with no gap (issue 23 review: m >= 32 divided by a
    zero slope)."""
    from collector.core.clock_fit import repeated_stamps

    sfreq = 250.0
    i = np.arange(int(sfreq * 60))
    t = 1000.0 + ((i // packet) * packet + packet - 1) / sfreq
    assert repeated_stamps(t) == packet
    assert typical_period(t) == pytest.approx(1 / sfreq, rel=1e-9)
    assert typical_period(t[: 3 * packet]) == pytest.approx(1 / sfreq, rel=1e-9)  # few samples
    r = repair_times(t, typical_period(t))
    assert r.gaps == [] and r.resets == [] and r.repaired.size == 0
    # Each sample's time is the line over the 10 s before it, so a window that ends inside a packet
    # tilts it: steps wobble (up to 21 % of a period at 64 samples per stamp; a replay refits each
    # stretch with one line, `dejitter`). Beyond MAX_PACKET (256) the packet is not found at all.
    steps = np.diff(r.times)
    assert steps.min() > 0
    if packet <= 64:
        assert steps == pytest.approx(1 / sfreq, rel=0.25)
    assert (r.times[-1] - r.times[0]) / (i.size - 1) == pytest.approx(1 / sfreq, rel=1e-2)
