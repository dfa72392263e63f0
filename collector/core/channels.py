"""Channel labels and keys: which channels of a stream are EEG and which are AUX, and the distinct
key each column of `samples` goes by. Shared by the LSL and XDF sources and the chunker.

Key rule (`distinct_keys`): a channel's key is its label; an empty or missing label becomes
`ch<N>` (N = its 1-based column); a label seen before in the stream gets `#<k>` appended for its
k-th occurrence (`EEG`, `EEG#2`, `EEG#3`, ...), skipping keys that another column has or is
labelled with, so no two columns ever share a key and keys follow the column order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelSplit:
    eeg_index: tuple[int, ...]  # column indices of the EEG channels, in stream order
    eeg_labels: tuple[str, ...]
    aux_labels: tuple[str, ...]


def default_labels(n_channels: int) -> tuple[str, ...]:
    return tuple(f"ch{i + 1}" for i in range(n_channels))


def distinct_keys(labels: Sequence[str | None]) -> tuple[str, ...]:
    """One distinct key per column, in column order (see the module docstring for the rule)."""
    keys: list[str] = []
    taken: set[str] = set()
    seen: dict[str, int] = {}
    explicit = {str(label).strip() for label in labels if label and str(label).strip()}
    for i, label in enumerate(labels):
        base = str(label).strip() if label and str(label).strip() else f"ch{i + 1}"
        seen[base] = seen.get(base, 0) + 1
        key = base
        if key in taken or (not (label and str(label).strip()) and key in explicit):
            k = max(2, seen[base])
            while f"{base}#{k}" in taken or f"{base}#{k}" in explicit:
                k += 1
            key = f"{base}#{k}"
        keys.append(key)
        taken.add(key)
    return tuple(keys)


def fill_labels(
    labels: Sequence[str | None] | None,
    n_channels: int,
    profile_labels: Sequence[str] = (),
) -> tuple[str, ...]:
    """Distinct keys for the stream's channels: its labels when complete; else the profile's
    (EEG + AUX) when the count fits; else its labels with the missing ones as ch<N>."""
    given = [str(label).strip() if label else "" for label in (labels or ())][:n_channels]
    if given and len(given) == n_channels and all(given):
        return distinct_keys(given)
    if profile_labels and len(profile_labels) == n_channels:
        return distinct_keys(profile_labels)
    return distinct_keys(given + [""] * (n_channels - len(given)))


def is_aux_label(label: str) -> bool:
    return "AUX" in label.upper()


def split_channels(
    labels: Sequence[str],
    *,
    eeg: Sequence[str] | None = None,
    aux: Sequence[str] = (),
) -> ChannelSplit:
    """AUX channels are those named in `aux`, or with "AUX" in their label, unless `eeg` names them.

    When `eeg` (a profile's EEG labels) is given, channels not in it are AUX too, as long as at
    least one stream label is in it (otherwise the profile does not describe this stream).
    """
    eeg_set = set(eeg or ())
    aux_set = set(aux)
    use_eeg_list = bool(eeg_set & set(labels))
    eeg_index: list[int] = []
    aux_labels: list[str] = []
    for i, label in enumerate(labels):
        if label in eeg_set:
            is_aux = False
        elif label in aux_set or is_aux_label(label):
            is_aux = True
        else:
            is_aux = use_eeg_list
        if is_aux:
            aux_labels.append(label)
        else:
            eeg_index.append(i)
    return ChannelSplit(
        eeg_index=tuple(eeg_index),
        eeg_labels=tuple(labels[i] for i in eeg_index),
        aux_labels=tuple(aux_labels),
    )
