"""Which field of an EDF/BDF header is wrong, in plain words, for the error a reader gives.

The header layout is the EDF specification's (Kemp et al. 1992, edfplus.info/specs/edf.html;
BDF is the same with 24-bit samples): a 256-byte fixed part, then 256 bytes per signal, each
field ASCII, left-aligned and padded with spaces.
"""

from __future__ import annotations

from pathlib import Path

# (name, offset, length, kind) of the fixed part's fields that must parse.
_FIXED = (
    ("start date (dd.mm.yy)", 168, 8, "date"),
    ("start time (hh.mm.ss)", 176, 8, "date"),
    ("number of bytes in the header", 184, 8, "int"),
    ("number of data records", 236, 8, "int"),
    ("duration of a data record", 244, 8, "float"),
    ("number of signals", 252, 4, "int"),
)
# (name, field length, kind) of the per-signal fields, in the order the header stores them.
_SIGNAL = (
    ("label", 16, "text"),
    ("transducer type", 80, "text"),
    ("physical dimension", 8, "text"),
    ("physical minimum", 8, "float"),
    ("physical maximum", 8, "float"),
    ("digital minimum", 8, "int"),
    ("digital maximum", 8, "int"),
    ("prefiltering", 80, "text"),
    ("number of samples in each data record", 8, "int"),
    ("reserved", 32, "text"),
)


def _parses(text: str, kind: str) -> bool:
    try:
        if kind == "int":
            int(text)
        elif kind == "float":
            float(text)
        elif kind == "date":
            parts = text.split(".")
            return len(parts) == 3 and all(len(p) == 2 and p.isdigit() for p in parts)
    except ValueError:
        return False
    return True


def header_problem(path: Path) -> tuple[str, bool] | None:
    """(what is wrong, whether the header is cut short) for the first header field that is not
    what the specification says, as "the header's number of data records is 'abcd', not a whole
    number"; None when every field checked parses."""
    head = path.read_bytes()[:256]
    if len(head) < 256:
        return f"the header is {len(head)} bytes long, not the 256 every EDF/BDF header has", True
    what = {"int": "a whole number", "float": "a number", "date": "a date or time like 07.06.24"}
    for name, offset, length, kind in _FIXED:
        text = head[offset : offset + length].decode("ascii", errors="replace").strip()
        if not _parses(text, kind):
            return f"the header's {name} is {text!r}, not {what[kind]}", False
    count = int(head[252:256].decode("ascii").strip())
    if count < 0:
        return f"the header's number of signals is {count}", False
    signals = path.read_bytes()[256 : 256 + 256 * count]
    if len(signals) < 256 * count:
        return f"the header ends before the fields of its {count} signal(s)", True
    offset = 0
    for name, length, kind in _SIGNAL:
        for i in range(count):
            text = signals[offset + i * length : offset + (i + 1) * length].decode("ascii", "replace").strip()
            if kind != "text" and not _parses(text, kind):
                return f"the header's {name} of signal {i + 1} is {text!r}, not {what[kind]}", False
        offset += length * count
    return None
