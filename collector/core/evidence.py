"""One evidence item as it travels from a chunker (or the screen source) through the spool to the uploader.

`EvidenceChunk` is the typed hand-off between stages: the chunker and the screen source build one,
the spool stores it (`request_fields()` as JSON, the artifact bytes beside it) and gives it back
(`from_fields`), and the uploader turns it into the API's `EvidenceCreate` with the base64 data.
Its fields are the API's evidence fields (see `../shared/openlesson-api.md`) except the workspace
(a path parameter) and `data` (the bytes travel separately, so they are never copied into JSON).

The identity of an item is (`capture_id`, `stream_id`, `chunk_index`), carried in `metadata` on the
wire; `capture_id` and `stream_id` are also properties here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from collector.core.records import ScreenFrame

# The API's EvidenceCreate fields other than `data` (collector.api.models.EvidenceCreate).
REQUEST_FIELDS = frozenset(
    {
        "type", "mime_type", "file_name", "block_id", "session_id", "timestamp_ms", "chunk_index",
        "metadata", "tool_name", "tool_action", "band_powers", "device_name", "sample_count",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EvidenceChunk:
    """The fields of one evidence item except its workspace and its bytes.

    Raises ValueError (from `__post_init__`) when the identity is incomplete: `metadata` must hold
    `capture_id` and `stream_id`, `chunk_index` must be an integer >= 0, `type` and `mime_type` set.
    """

    type: str  # "eeg" | "screen" (the API's evidence types)
    mime_type: str
    chunk_index: int
    metadata: Mapping[str, Any] = field(default_factory=dict)  # capture_id, stream_id, ...
    timestamp_ms: int | None = None  # Unix ms of the first sample / the frame
    file_name: str | None = None
    block_id: str | None = None
    session_id: str | None = None
    band_powers: Mapping[str, float] | None = None  # relative power per band, shares of 1
    device_name: str | None = None
    sample_count: int | None = None
    tool_name: str | None = None
    tool_action: str | None = None

    def __post_init__(self) -> None:
        meta = self.metadata or {}
        if not meta.get("capture_id") or not meta.get("stream_id"):
            raise ValueError("evidence metadata must hold capture_id and stream_id (the chunk identity)")
        if (
            isinstance(self.chunk_index, bool)
            or not isinstance(self.chunk_index, int)
            or self.chunk_index < 0
        ):
            raise ValueError(f"chunk_index must be an integer >= 0; {self.chunk_index!r} is invalid")
        if not self.type or not self.mime_type:
            raise ValueError("evidence needs type and mime_type")

    @property
    def capture_id(self) -> str:
        return str(self.metadata["capture_id"])

    @property
    def stream_id(self) -> str:
        return str(self.metadata["stream_id"])

    def for_block(self, block_id: str | None) -> EvidenceChunk:
        """The same item scoped to a block (None keeps it as it is)."""
        return self if block_id is None else replace(self, block_id=block_id)

    def request_fields(self) -> dict[str, Any]:
        """The EvidenceCreate fields that are set (no `data`), as plain JSON-able values."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> EvidenceChunk:
        """Build from EvidenceCreate fields without `data`; ValueError names unknown or missing ones."""
        if "data" in values:
            raise ValueError("pass the artifact bytes as `data=`, not inside `evidence`")
        unknown = set(values) - REQUEST_FIELDS
        if unknown:
            raise ValueError(f"unknown evidence fields {sorted(unknown)}; expected EvidenceCreate fields")
        given = {"type": None, "mime_type": None, "chunk_index": None, **values}
        return cls(**{k: v for k, v in given.items() if v is not None or k in _REQUIRED})


_REQUIRED = ("type", "mime_type", "chunk_index")


_IMAGE_EXTENSIONS = {"image/jpeg": "jpg", "image/webp": "webp", "image/png": "png"}


def screen_evidence(
    frame: ScreenFrame, *, capture_id: str, stream_id: str, chunk_index: int, collector_version: str
) -> EvidenceChunk:
    """The evidence of one sent frame; the pipeline adds the block, the spool keeps the image bytes.

    chunk_index counts SENT frames of this stream from 0, so it stays contiguous. Raises ValueError
    for an image type the API does not take (`frame.mime_type` not JPEG, WebP or PNG).
    """
    ext = _IMAGE_EXTENSIONS.get(frame.mime_type)
    if ext is None:
        raise ValueError(f"screenshots are JPEG, WebP or PNG; {frame.mime_type!r} is not")
    metadata = {
        "capture_id": capture_id,
        "stream_id": stream_id,
        "collector_version": collector_version,
        "monitor": frame.monitor,
        "captured_size": list(frame.captured_size),
        "sent_size": list(frame.sent_size),
        "diff_score": frame.diff_score,
        "skipped_before": frame.skipped_before,
        "paused_periods": [list(p) for p in frame.paused_periods],
    }
    for key, value in frame.extra.items():
        metadata.setdefault(key, value)
    return EvidenceChunk(
        type="screen",
        mime_type=frame.mime_type,
        timestamp_ms=int(frame.time_ms),
        chunk_index=chunk_index,
        file_name=f"screen-{frame.monitor}-{chunk_index:06d}.{ext}",
        metadata=metadata,
    )
