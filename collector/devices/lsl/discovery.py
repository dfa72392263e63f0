"""Finding live LSL streams: what `collector devices` lists, and the resolves the sources make.

`build_predicate` makes liblsl's XPath predicate from a name, type, source_id and host;
`resolve` waits for the streams that match one; `list_streams` describes every visible stream
(with its channel labels, read from each header). Streams are ordered by name, source_id, host
and uid, so "the first match" is the same on every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("collector.devices.lsl")


@dataclass(frozen=True, slots=True)
class LslStreamInfo:
    """One visible LSL stream, for `collector devices`."""

    name: str
    type: str
    source_id: str
    channel_count: int
    sfreq: float
    hostname: str
    channel_format: str
    labels: tuple[str, ...] = ()
    units: tuple[str, ...] = ()


_FORMATS = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16", 6: "int8", 7: "int64"}


def xpath_literal(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    parts = value.split("'")
    return "concat(" + ', "\'", '.join(f"'{p}'" for p in parts) + ")"


def build_predicate(
    *,
    name: str | None = None,
    type: str | None = None,
    source_id: str | None = None,
    hostname: str | None = None,
) -> str:
    """XPath predicate for `resolve_bypred`; empty string matches every stream.

    A `name` ending in "*" matches every name that starts with the rest ("Muse*": muselsl's "Muse",
    OpenMuse's "Muse-EEG (00:55:DA:B0:0B:61)" and "Muse_EEG"), with liblsl's XPath `starts-with`.
    """
    terms = []
    for key, value in (("name", name), ("type", type), ("source_id", source_id), ("hostname", hostname)):
        if key == "name" and value and value.endswith("*") and len(value) > 1:
            terms.append(f"starts-with(name,{xpath_literal(value[:-1])})")
        elif value and key == "type":  # types match case-insensitively: `eeg` (MNE-LSL) is `EEG`
            terms.append(f"{_lower('type')}={xpath_literal(value.lower())}")
        elif value:
            terms.append(f"{key}={xpath_literal(value)}")
    return " and ".join(terms)


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _lower(field: str) -> str:
    """XPath 1.0 (liblsl's pugixml) has no lower-case(): translate() folds ASCII letters."""
    return f"translate({field},'{_UPPER}','{_UPPER.lower()}')"


def type_term(stream_type: str) -> str:
    """The predicate term matching `stream_type` case-insensitively."""
    return build_predicate(type=stream_type)


def resolve(predicate: str, timeout_s: float, *, minimum: int = 1) -> list[Any]:
    import pylsl

    timeout_s = max(0.0, timeout_s)
    if not predicate:
        return list(pylsl.resolve_streams(wait_time=timeout_s))
    return list(pylsl.resolve_bypred(predicate, minimum=minimum, timeout=timeout_s))


def describe_info(info: Any) -> str:
    sid = info.source_id() or "none"
    return f"{info.name()!r} (type {info.type() or 'none'}, source_id {sid}, host {info.hostname()})"


def sort_key(info: Any) -> tuple[str, str, str, str]:
    return (info.name(), info.source_id(), info.hostname(), info.uid())


def list_streams(timeout: float = 1.0, *, with_labels: bool = True) -> list[LslStreamInfo]:
    """Every LSL stream visible within `timeout` seconds (labels read from each header)."""
    import pylsl

    out = []
    for info in sorted(resolve("", timeout), key=sort_key):
        labels: tuple[str, ...] = ()
        units: tuple[str, ...] = ()
        if with_labels:
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=1, recover=False)
                try:
                    full = inlet.info(timeout=min(1.0, max(timeout, 0.2)))
                    labels = tuple(label or "" for label in (full.get_channel_labels() or []))
                    units = tuple(u or "" for u in (full.get_channel_units() or []))
                finally:
                    del inlet
            except Exception:  # a stream that vanished meanwhile: list it without labels
                log.debug("could not read the header of %s", describe_info(info), exc_info=True)
        out.append(
            LslStreamInfo(
                name=info.name(),
                type=info.type(),
                source_id=info.source_id(),
                channel_count=info.channel_count(),
                sfreq=info.nominal_srate(),
                hostname=info.hostname(),
                channel_format=_FORMATS.get(info.channel_format(), str(info.channel_format())),
                labels=labels,
                units=units,
            )
        )
    return out
