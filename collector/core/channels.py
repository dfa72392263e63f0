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
    # Channels the stream declares as another kind than EEG (MNE-LSL's eog, stim, ...): (label,
    # type), left out of the EEG; `stim_index` are the columns among them that carry trigger codes.
    typed_out: tuple[tuple[str, str], ...] = ()
    stim_index: tuple[int, ...] = ()


# Channel types (MNE's names, as MNE-LSL's PlayerLSL declares them) that are not EEG. Left out of a
# stream's EEG when another channel of it is declared `eeg`; the stim ones carry trigger codes.
NOT_EEG_TYPES = frozenset(
    {"eog", "ecg", "emg", "resp", "misc", "bio", "gsr", "temperature", "syst", "mag", "grad",
     "ref_meg", "chpi", "exci", "ias", "fnirs_cw_amplitude", "hbo", "hbr", "eyegaze", "pupil",
     "stim", "trigger", "markers"}
)  # fmt: skip
STIM_TYPES = frozenset({"stim", "trigger", "markers"})


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
    types: Sequence[str | None] = (),
) -> ChannelSplit:
    """AUX channels are those named in `aux`, or with "AUX" in their label, unless `eeg` names them.

    When `eeg` (a profile's EEG labels) is given, channels not in it are AUX too, as long as at
    least one stream label is in it (otherwise the profile does not describe this stream).
    `types`: the channel types the stream declares; when one channel is `eeg` (any case), those
    declared as another kind (`NOT_EEG_TYPES`: eog, stim, ...) are left out of the EEG
    (`typed_out`), unless `eeg` names them.
    """
    eeg_set = set(eeg or ())
    aux_set = set(aux)
    use_eeg_list = bool(eeg_set & set(labels))
    kinds = [str(t or "").strip().lower() for t in types]
    by_type = "eeg" in kinds
    eeg_index: list[int] = []
    aux_labels: list[str] = []
    typed_out: list[tuple[str, str]] = []
    stim_index: list[int] = []
    for i, label in enumerate(labels):
        kind = kinds[i] if i < len(kinds) else ""
        if label in eeg_set:
            is_aux = False
        elif label in aux_set or is_aux_label(label):
            is_aux = True
        elif by_type and kind in NOT_EEG_TYPES:
            typed_out.append((label, kind))
            if kind in STIM_TYPES:
                stim_index.append(i)
            continue
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
        typed_out=tuple(typed_out),
        stim_index=tuple(stim_index),
    )


def typed_out_message(stream: str, split: ChannelSplit) -> str:
    """One line naming the channels left out of a stream's EEG by their declared type."""
    listed = ", ".join(f"{label} ({kind})" for label, kind in split.typed_out)
    stim = [label for label, kind in split.typed_out if kind in STIM_TYPES]
    return (
        f"stream {stream!r} declares channels of other kinds than EEG: {listed}; left out of the EEG "
        "(its band powers and quality)"
        + (f", and the trigger codes of {', '.join(stim)} delivered as events" if stim else "")
        + ". To keep one as EEG, name the EEG channels (a profile's channels, or --stream LABEL,LABEL "
        "in a replay)."
    )
