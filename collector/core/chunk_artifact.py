"""The EEG chunk artifact (the `data` of `eeg` evidence): its schema, version 1, and how one is
written from a chunk's samples, window powers, gaps and markers. collector/core/chunk.py decides
what goes into each chunk; this module writes it down.

Artifact schema (`application/json`, compact UTF-8; version 1):

    {
      "format": "openlesson-collector.eeg-chunk",
      "version": 1,
      "capture_id": str,
      "stream_id": str,                    # e.g. "eeg:Muse-00:55:DA:B0:0B:61"
      "collector_version": str,
      "chunk_index": int,                  # 0, 1, 2, ... per stream
      "device": {"name": str, "model": str, "source_id": str,
                 "sfreq": float,           # Hz used for windows, segments and PSD
                 "nominal_sfreq": float,   # declared rate, 0 = irregular
                 "measured_sfreq": float | null,   # from the timestamps, gaps excluded
                 "channels": [str, ...],   # distinct keys, one per column of samples
                 "unit": "microvolts"},    # (collector.core.channels.distinct_keys)
      "t0_ms": int,                        # Unix ms of the first sample, rounded down;
                                           # equals the evidence timestamp_ms
      "times_ms": [float, ...],            # per sample: Unix ms - t0_ms, to 0.001 ms
                                           # (0 <= times_ms[0] <= 1: never negative)
      "samples": [[float, ...], ...],      # one row per sample, one column per channel, in
                                           # `device.unit`, rounded to 0.001 uV; null = the
                                           # source delivered a non-finite value
      "method": {"psd": "welch", "window": "hann", "window_s": float, "step_s": float,
                 "segment_s": float, "nperseg": int, "noverlap": int,
                 "detrend": "constant", "scaling": "density", "average": "mean",
                 "quality_thresholds": {"flat_ptp_uv": float, "max_ptp_uv": float,
                                        "clip_fraction": float, "line_noise_max_share": float,
                                        "line_freqs_hz": [float, ...],
                                        "line_halfwidth_hz": float},
                 "timestamps_repaired": int},   # samples here whose stamp the source
                                                # replaced from the stream's grid
      "bands_hz": {"delta": [1.0, 4.0], "theta": [4.0, 8.0], "alpha": [8.0, 13.0],
                   "beta": [13.0, 30.0], "gamma": [30.0, 44.0]},   # [lo, hi)
      "windows": [                         # windows whose last sample is in this chunk
        {"end_ms": float,                  # Unix ms of the window's last sample, to 0.001 ms
         "absolute": {channel: {band: float | null}} | null,   # uV^2, 6 significant digits
         "relative": {channel: {band: float | null}} | null,   # band / sum of the bands
         "quality": {
           "gap": bool,                    # spans a gap: absolute/relative are null
           "ok": bool,                     # no gap and no flag on any channel
           "channels": {channel: {
             "flat": bool | null,          # peak-to-peak < flat_ptp_uv
             "clipped": bool | null,       # >= clip_fraction of samples on the window's max/min
             "excessive_amplitude": bool | null,   # peak-to-peak > max_ptp_uv
             "line_noise": bool | null,    # line_noise_share > line_noise_max_share
             "missing": bool,              # non-finite samples, or the window spans a gap
             "ptp_uv": float | null,
             "line_noise_share": float | null}}}}  # power at 50+-1 and 60+-1 Hz over the
      ],                                   # power from 1 Hz to Nyquist, same spectrum; null
                                           # when no line frequency fits below Nyquist
      "band_powers": {band: float},        # mean over channels and windows of `relative`
                                           # (windows with powers only); {} if none
       "events": [{"time_ms": float, "value": str,     # markers, Unix ms to 0.001 ms;
                  "source": "mark"}],             # source only on the user's own marks; an
                                                  # annotation with a duration adds "duration_s"
      "gaps": [{"start_ms": float, "end_ms": float}]  # Unix ms of the last sample before and
    }                                                 # the first sample after each gap

Flags are null (not evaluated) in windows that span a gap. Welch's method follows
`scipy.signal.welch` exactly; absolute band power is the sum of PSD bins lo <= f < hi times the
bin width. In memory (`write_artifact`), `times_ms` and `samples` are float64 NumPy arrays that
`encode` writes as the lists above. Sample precision: 0.001 uV is far below any EEG amplifier's
noise (a Muse LSB is 0.49 uV) and keeps a 5 s, 4-channel 256 Hz chunk near 75 kB;
`sample_decimals=None` writes full float64 precision instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from collector.core.bandpower import BandPowers, BandSettings
from collector.core.records import Event, Gap, StreamDescription

FORMAT = "openlesson-collector.eeg-chunk"
VERSION = 1
_POWER_DIGITS = 6  # significant digits of band powers in the artifact


def sig(value: float, digits: int = _POWER_DIGITS) -> float | None:
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def ms(value: float) -> float:
    return round(float(value), 3)


def stream_fields(
    description: StreamDescription,
    settings: BandSettings,
    *,
    keys: tuple[str, ...] | list[str],
    sfreq: float,
    nominal_sfreq: float,
    measured_sfreq: float | None,
    nperseg: int,
    noverlap: int,
    no_powers_reason: str | None,
) -> dict[str, Any]:
    """The artifact's `device`, `method` and `bands_hz`: what a chunk says about its stream."""
    d, s = description, settings
    return {
        "device": {
            "name": d.name,
            "model": d.model,
            "source_id": d.source_id,
            "sfreq": sfreq,
            "nominal_sfreq": nominal_sfreq,
            "measured_sfreq": None if measured_sfreq is None else round(measured_sfreq, 6),
            "channels": list(keys),
            "unit": d.unit,
        },
        "method": {
            "psd": "welch",
            "window": "hann",
            "window_s": s.window_s,
            "step_s": s.step_s,
            "segment_s": s.segment_s,
            "nperseg": nperseg or None,
            "noverlap": noverlap if nperseg else None,
            "detrend": s.detrend,
            "scaling": "density",
            "average": "mean",
            **({"not_computed": no_powers_reason} if no_powers_reason else {}),
            "quality_thresholds": {
                "flat_ptp_uv": s.flat_ptp_uv,
                "max_ptp_uv": s.max_ptp_uv,
                "clip_fraction": s.clip_fraction,
                "line_noise_max_share": s.line_noise_max_share,
                "line_freqs_hz": list(s.line_freqs_hz),
                "line_halfwidth_hz": s.line_halfwidth_hz,
            },
        },
        "bands_hz": {name: [lo, hi] for name, lo, hi in s.bands},
    }


def write_artifact(
    identity: dict[str, Any],
    stream: dict[str, Any],
    *,
    first: int,
    data: np.ndarray,
    times: np.ndarray,
    ends: np.ndarray,
    spans_gap: np.ndarray,
    powers: BandPowers,
    channels: Sequence[str],
    bands: Sequence[str],
    sample_decimals: int | None,
    gaps: list[Gap],
    events: list[Event],
    repaired: int = 0,
) -> tuple[dict[str, Any], dict[str, float], Series]:
    """One chunk's artifact, its mean relative power per band ({} when no window has powers), and
    the lists `encode` may write with orjson.

    In the artifact, `times_ms` (n,) and `samples` (n, n_channels) are float64 NumPy arrays, not
    lists: `encode` writes them straight from the arrays (`as_lists` gives the plain form).

    `identity`: capture_id, stream_id, collector_version and chunk_index, in that order;
    `stream`: stream_fields(). `first` is the global index of the chunk's first sample (`data[0]`),
    `ends` the global indices of the last samples of its windows, `spans_gap` which of them span a
    gap (their powers are not in `powers`), `repaired` how many of its samples' timestamps the
    source replaced from the stream's grid.
    """
    # Rounded down, so no sample ever has a negative offset from it (times_ms[0] in [0, 1]);
    # the 1 ns allowance keeps a whole ms computed as x.999999999 on x + 1.
    t0_ms = math.floor(float(times[0]) + 1e-6)

    windows = _windows(first, times, ends, spans_gap, powers, channels, bands)
    band_powers: dict[str, float] = {}
    rel = powers.relative.reshape(-1, len(bands))
    rel = rel[np.isfinite(rel).all(axis=1)]
    if rel.shape[0]:
        band_powers = {b: float(v) for b, v in zip(bands, rel.mean(axis=0), strict=True)}

    # float64 and C-ordered: orjson writes a float32 array as float32 (shorter digits than
    # tolist's floats) and refuses a strided one.
    samples = np.ascontiguousarray(
        data if sample_decimals is None else np.round(data, sample_decimals), np.float64
    )
    times_rel = np.round(times - t0_ms, 3) + 0.0  # + 0.0: no -0.0

    artifact = {
        "format": FORMAT,
        "version": VERSION,
        **identity,
        **stream,
        "t0_ms": t0_ms,
        "times_ms": times_rel,
        "samples": samples,
        "windows": windows,
        "band_powers": {b: sig(v) for b, v in band_powers.items()},
        "events": [_event_json(ev) for ev in sorted(events, key=_event_time)],
        "gaps": [{"start_ms": ms(g.start_ms), "end_ms": ms(g.end_ms)} for g in gaps],
    }
    # Samples of this chunk whose timestamp the source replaced from the stream's grid.
    artifact["method"]["timestamps_repaired"] = int(repaired)
    # The windows go through orjson when their floats are in its plain range (see `encode`).
    series: Series = {}
    q = powers.quality
    arrays = [times, powers.absolute_uv2, powers.relative]
    if q is not None:
        arrays += [q.line_noise_share, q.ptp_uv]
    if _plain_floats(*arrays):
        series["windows"] = windows
    return artifact, band_powers, series


# artifact key -> its list, when orjson writes that list as json does (`_plain_floats`); `encode`
# uses it only while it is still the artifact's list (a list replaced since is written by json).
Series = dict[str, list]


def encode(artifact: dict[str, Any], series: Series | None = None) -> bytes:
    """The artifact as compact UTF-8 JSON (the evidence's `data` before base64): exactly
    `json.dumps(as_lists(artifact), separators=(",", ":"), ensure_ascii=False, allow_nan=False)`.

    `times_ms` and `samples` are NumPy arrays in memory (`write_artifact`); each array is written
    as its nested list, a non-finite value as null (`_array_json`). `series` (from
    `write_artifact`) names the lists orjson may write, so `windows` is written fast at each call
    and flags added to it later count.
    """
    parts = []
    for key, value in artifact.items():
        if isinstance(value, np.ndarray):
            text = _array_json(value)
        elif series is not None and series.get(key) is value:
            text = orjson.dumps(value)
        else:
            parts.append(_dumps({key: value})[1:-1].encode())
            continue
        parts.append(_dumps(key).encode() + b":" + text)
    return b"{" + b",".join(parts) + b"}"


def as_lists(artifact: dict[str, Any]) -> dict[str, Any]:
    """The artifact with its arrays as the lists its JSON holds (a non-finite value as None): the
    plain-Python form `encode` writes, for code and tests that want lists."""
    return {k: _as_list(v) if isinstance(v, np.ndarray) else v for k, v in artifact.items()}


def _as_list(values: np.ndarray) -> list:
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    as_obj = values.astype(object)
    as_obj[~finite] = None
    return as_obj.tolist()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _array_json(values: np.ndarray) -> bytes:
    """`_dumps(_as_list(values)).encode()`, by orjson straight from the float64 array when every
    finite non-zero |value| lies in [1e-4, 1e16) (issue 23: tolist plus an encoder took half the
    CPU of an hour's replay after the clock fit). orjson and json both write a float's shortest
    repr and differ only outside that range ("0.00001" for 1e-05); both write a non-finite value of
    an array as null here (orjson by itself, json through `_as_list`)."""
    a = np.ascontiguousarray(values, np.float64)  # no copy when it is one already
    if _in_plain_range(a, 1e16):
        return orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY)
    return _dumps(_as_list(a)).encode()


def _in_plain_range(a: np.ndarray, upper: float) -> bool:
    """Whether every finite non-zero |value| of `a` lies in [1e-4, upper)."""
    mag = np.abs(a)
    if mag.size and not float(mag.max()) < upper:  # too large, or NaN/inf somewhere: the full test
        with np.errstate(invalid="ignore"):
            return bool((((mag >= 1e-4) & (mag < upper)) | (mag == 0) | ~np.isfinite(mag)).all())
    return not np.any((mag < 1e-4) & (mag != 0))


def _plain_floats(*arrays: np.ndarray) -> bool:
    """Whether every finite non-zero value of `arrays` lies in [1e-4, 1e15): then the floats made
    from them (rounded by `sig` or `ms`, or None) are written by orjson exactly as by json, which
    differ only below 1e-4 (strings, ints, bools and null are written alike; `_array_json`).
    orjson writes an hour's windows in 0.02 s where json takes 0.3 s (issue 23)."""
    return all(_in_plain_range(a, 1e15) for a in arrays)


def _sig_all(values: np.ndarray) -> list[float | None]:
    """[sig(v) for v in values.ravel()], the same floats, computed on the array (issue 23).

    `sig` formats to _POWER_DIGITS significant digits and parses back. Here the value is scaled by
    an exact power of ten and rounded to the integer mantissa m; then m / 10^k (or m * 10^-k), one
    correctly rounded operation on exact operands, is the double nearest to the decimal, which is
    what float() of that text gives. A value whose scaled form lies within 1e-6 of a rounding tie
    (where the scaling's own rounding could tip it), or whose exponent is out of the table's
    range, goes through `sig` itself."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    out = flat.copy()  # zeros (and -0.0) stay as they are, as sig leaves them
    finite = np.isfinite(flat)
    idx = np.flatnonzero(finite & (flat != 0))
    slow = np.zeros(0, dtype=np.int64)
    if idx.size:
        a = np.abs(flat[idx])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            k = (_POWER_DIGITS - 1) - np.floor(np.log10(a)).astype(np.int64)
            up, down = _POW10[np.clip(k, 0, 22)], _POW10[np.clip(-k, 0, 22)]
            scaled = a * up / down  # one of the two factors is 1: one rounding
            m = np.floor(scaled + 0.5)
            tie = np.abs(scaled - np.floor(scaled) - 0.5) <= 1e-6
            low = 10.0 ** (_POWER_DIGITS - 1)
            fast = (np.abs(k) <= 22) & ~tie & (m >= low) & (m <= 10 * low)
            out[idx] = np.copysign(m / up * down, flat[idx])
        slow = idx[~fast]
    result: list[float | None] = out.tolist()
    for i in slow.tolist():
        result[i] = sig(float(flat[i]))
    for i in np.flatnonzero(~finite).tolist():
        result[i] = None
    return result


_POW10 = np.array([10.0**i for i in range(23)])  # exact doubles


def _windows(
    first: int,
    times: np.ndarray,
    ends: np.ndarray,
    spans_gap: np.ndarray,
    powers: BandPowers,
    channels: Sequence[str],
    bands: Sequence[str],
) -> list[dict[str, Any]]:
    """The artifact's `windows`: one dict per window end, in order (see the schema above)."""
    windows: list[dict[str, Any]] = []
    q = powers.quality
    n_ch, n_b = len(channels), len(bands)
    if q is not None:
        absolute = _sig_all(powers.absolute_uv2)  # (window, channel, band) flattened
        relative = _sig_all(powers.relative)
        share = _sig_all(q.line_noise_share)  # (window, channel) flattened
        ptp = [ms(v) if math.isfinite(v) else None for v in q.ptp_uv.reshape(-1).tolist()]
        flags = list(
            zip(
                q.flat.reshape(-1).tolist(),
                q.clipped.reshape(-1).tolist(),
                q.excessive_amplitude.reshape(-1).tolist(),
                q.line_noise.reshape(-1).tolist(),
                q.missing.reshape(-1).tolist(),
                strict=True,
            )
        )
    gap_flags = dict.fromkeys(
        ("flat", "clipped", "excessive_amplitude", "line_noise", "ptp_uv", "line_noise_share")
    )
    j = 0
    for e, gap in zip(ends.tolist(), spans_gap.tolist(), strict=True):
        end_ms = ms(times[e - first])  # window ends always lie in this chunk
        if gap:
            windows.append(
                {
                    "end_ms": end_ms,
                    "absolute": None,
                    "relative": None,
                    "quality": {
                        "gap": True,
                        "ok": False,
                        "channels": {c: {**gap_flags, "missing": True} for c in channels},
                    },
                }
            )
            continue
        assert q is not None  # a window with powers has its quality flags (computed with_quality)
        chan_q = {}
        ok = True
        for c, name in enumerate(channels):
            i = j * n_ch + c
            flat, clipped, excessive, line, missing = flags[i]
            ok = ok and not (flat or clipped or excessive or line or missing)
            chan_q[name] = {
                "flat": flat,
                "clipped": clipped,
                "excessive_amplitude": excessive,
                "line_noise": line,
                "missing": missing,
                "ptp_uv": ptp[i],
                "line_noise_share": share[i],
            }
        base = j * n_ch * n_b
        windows.append(
            {
                "end_ms": end_ms,
                "absolute": {
                    name: dict(zip(bands, absolute[base + c * n_b : base + (c + 1) * n_b], strict=True))
                    for c, name in enumerate(channels)
                },
                "relative": {
                    name: dict(zip(bands, relative[base + c * n_b : base + (c + 1) * n_b], strict=True))
                    for c, name in enumerate(channels)
                },
                "quality": {"gap": False, "ok": ok, "channels": chan_q},
            }
        )
        j += 1
    return windows


def _event_time(event: Event) -> float:
    return event.time_ms


def _event_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"time_ms": ms(event.time_ms), "value": event.value}
    if event.source:
        out["source"] = event.source
    if event.duration_s is not None:
        out["duration_s"] = round(float(event.duration_s), 6)
    return out
