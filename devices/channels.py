"""Which channels of a stream are EEG and which are AUX: shared by the LSL and XDF sources."""

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


def fill_labels(
    labels: Sequence[str | None] | None,
    n_channels: int,
    profile_labels: Sequence[str] = (),
) -> tuple[str, ...]:
    """Stream labels when complete; else the profile's (EEG + AUX) when the count fits; else ch1..N."""
    if labels and len(labels) == n_channels and all(labels):
        return tuple(str(label) for label in labels)
    if profile_labels and len(profile_labels) == n_channels:
        return tuple(profile_labels)
    if labels and len(labels) == n_channels:
        return tuple(str(label) if label else f"ch{i + 1}" for i, label in enumerate(labels))
    return default_labels(n_channels)


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
