"""Write XDF files (numeric EEG streams and string marker streams) for tests and benchmarks.

    python scripts/make_xdf.py OUT.xdf --hours 1            # 1 h of 4-ch 256 Hz EEG + markers

Follows the XDF 1.0 chunk layout (FileHeader, StreamHeader, Samples, StreamFooter) that
pyxdf.load_xdf reads; the EEG is pink-ish noise plus a 10 Hz alpha rhythm, seeded.
"""

from __future__ import annotations

import argparse
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

FILE_HEADER, STREAM_HEADER, SAMPLES, STREAM_FOOTER = 1, 2, 3, 6


@dataclass
class XdfStream:
    name: str
    type: str
    sfreq: float  # 0 for irregular (markers)
    channels: list[str]
    timestamps: np.ndarray  # seconds, source clock
    values: np.ndarray | list[str]  # (n, n_channels) float32, or a list of strings (one channel)
    source_id: str = ""
    unit: str | list[str] = "microvolts"  # one for every channel, or one per channel
    hostname: str = ""
    channel_types: list[str] | None = None  # per channel; None: the stream's type for each


def _chunk(tag: int, content: bytes) -> bytes:
    length = len(content) + 2
    return b"\x08" + struct.pack("<Q", length) + struct.pack("<H", tag) + content


def _varlen(n: int) -> bytes:
    return b"\x08" + struct.pack("<Q", n)


def _header_xml(s: XdfStream) -> bytes:
    fmt = "string" if isinstance(s.values, list) else "float32"
    units = [s.unit] * len(s.channels) if isinstance(s.unit, str) else s.unit
    types = s.channel_types or [s.type] * len(s.channels)
    channels = "".join(
        f"<channel><label>{escape(c)}</label><unit>{escape(u)}</unit><type>{escape(t)}</type></channel>"
        for c, u, t in zip(s.channels, units, types, strict=True)
    )
    xml = (
        f'<?xml version="1.0"?><info><name>{escape(s.name)}</name><type>{escape(s.type)}</type>'
        f"<channel_count>{len(s.channels)}</channel_count><nominal_srate>{s.sfreq:g}</nominal_srate>"
        f"<channel_format>{fmt}</channel_format><source_id>{escape(s.source_id)}</source_id>"
        f"<hostname>{escape(s.hostname)}</hostname>"
        f"<created_at>0</created_at><desc><channels>{channels}</channels></desc></info>"
    )
    return xml.encode()


def _numeric_samples(stream_id: int, ts: np.ndarray, values: np.ndarray) -> bytes:
    n, ch = values.shape
    rec = np.dtype([("flag", "u1"), ("t", "<f8"), ("v", "<f4", (ch,))])
    arr = np.empty(n, dtype=rec)
    arr["flag"] = 8
    arr["t"] = ts
    arr["v"] = values
    return _chunk(SAMPLES, struct.pack("<I", stream_id) + _varlen(n) + arr.tobytes())


def _string_samples(stream_id: int, ts: np.ndarray, values: list[str]) -> bytes:
    body = bytearray(struct.pack("<I", stream_id) + _varlen(len(values)))
    for t, v in zip(ts, values, strict=True):
        raw = v.encode()
        body += b"\x08" + struct.pack("<d", float(t)) + _varlen(len(raw)) + raw
    return _chunk(SAMPLES, bytes(body))


def write_xdf(
    path: Path, streams: list[XdfStream], *, start: datetime | None = None, samples_per_chunk: int = 4096
) -> None:
    start = start or datetime.now(timezone.utc)
    with open(path, "wb") as f:
        f.write(b"XDF:")
        f.write(
            _chunk(
                FILE_HEADER,
                (
                    f'<?xml version="1.0"?><info><version>1.0</version>'
                    f"<datetime>{start.isoformat()}</datetime></info>"
                ).encode(),
            )
        )
        for sid, s in enumerate(streams, 1):
            f.write(_chunk(STREAM_HEADER, struct.pack("<I", sid) + _header_xml(s)))
        for sid, s in enumerate(streams, 1):
            for i in range(0, len(s.timestamps), samples_per_chunk):
                ts = s.timestamps[i : i + samples_per_chunk]
                if isinstance(s.values, list):
                    f.write(_string_samples(sid, ts, s.values[i : i + samples_per_chunk]))
                else:
                    f.write(_numeric_samples(sid, ts, s.values[i : i + samples_per_chunk]))
        for sid, s in enumerate(streams, 1):
            n = len(s.timestamps)
            first = float(s.timestamps[0]) if n else 0.0
            last = float(s.timestamps[-1]) if n else 0.0
            footer = (
                f'<?xml version="1.0"?><info><first_timestamp>{first!r}</first_timestamp>'
                f"<last_timestamp>{last!r}</last_timestamp><sample_count>{n}</sample_count></info>"
            )
            f.write(_chunk(STREAM_FOOTER, struct.pack("<I", sid) + footer.encode()))


def synthetic_eeg(
    seconds: float,
    sfreq: float = 256.0,
    channels=("TP9", "AF7", "AF8", "TP10"),
    seed: int = 0,
    t0: float = 1000.0,
) -> XdfStream:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sfreq))
    t = np.arange(n) / sfreq
    noise = np.cumsum(rng.normal(0, 1, (n, len(channels))), axis=0)
    noise -= np.cumsum(noise, axis=0) / np.arange(1, n + 1)[:, None]  # keep the random walk bounded
    alpha = 10.0 * np.sin(2 * np.pi * 10.0 * t)[:, None]
    values = (noise * 2.0 + alpha + rng.normal(0, 3, (n, len(channels)))).astype(np.float32)
    return XdfStream("SynthEEG", "EEG", sfreq, list(channels), t0 + t, values, source_id=f"synth-{seed}")


def synthetic_markers(seconds: float, every_s: float = 2.0, t0: float = 1000.0) -> XdfStream:
    ts = t0 + np.arange(0.5, seconds, every_s)
    return XdfStream(
        "SynthMarkers",
        "Markers",
        0.0,
        ["Marker"],
        ts,
        [str(i % 2 + 1) for i in range(len(ts))],
        source_id="synth-markers",
        unit="",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--sfreq", type=float, default=256.0)
    args = ap.parse_args()
    seconds = args.hours * 3600
    write_xdf(args.out, [synthetic_eeg(seconds, args.sfreq), synthetic_markers(seconds)])
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {seconds:g} s)")


if __name__ == "__main__":
    main()
