"""Wire models of the OpenLesson Agentic API v2, field by field from ../shared/openlesson-api.md.

Shared by the client (requests it sends, responses it parses) and the sandbox server (requests it
validates, responses it builds), so both sides enforce the same contract.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector.api.ids import is_uuid

MAX_DECODED_BYTES = 10 * 1024 * 1024  # 10 MB per upload / per workspace file (decoded)
MAX_WORKSPACE_FILES = 5

EvidenceType = Literal["tool", "screen", "screenshot", "video", "eeg"]

EVIDENCE_MIME_TYPES: dict[str, frozenset[str]] = {
    "tool": frozenset({"application/json", "text/plain", "text/markdown"}),
    "screen": frozenset({"image/png", "image/jpeg", "image/webp"}),
    "screenshot": frozenset({"image/png", "image/jpeg", "image/webp"}),
    "video": frozenset({"video/mp4", "video/webm", "video/quicktime"}),
    "eeg": frozenset({"application/json", "text/plain"}),
}

WORKSPACE_FILE_MIME_TYPES = frozenset(
    {"application/pdf", "text/plain", "text/markdown", "image/jpeg", "image/png", "image/webp"}
)

FILE_EXTENSION_MIME: dict[str, str] = {
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}


def decoded_size(data_b64: str) -> int:
    """Decoded byte count of a base64 string without decoding it."""
    n = len(data_b64)
    if n == 0:
        return 0
    return n * 3 // 4 - data_b64[-2:].count("=")


def check_base64(data_b64: str) -> str:
    try:
        base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("data must be base64") from exc
    return data_b64


class _Wire(BaseModel):
    # Responses may grow fields; requests are built by us and validated strictly by the sandbox.
    model_config = ConfigDict(extra="ignore")


# ---- requests ---------------------------------------------------------------------------------


class WorkspaceFile(_Wire):
    name: str = Field(min_length=1)
    mime_type: str
    data: str

    @field_validator("mime_type")
    @classmethod
    def _mime(cls, v: str) -> str:
        if v not in WORKSPACE_FILE_MIME_TYPES:
            raise ValueError(f"mime_type {v!r} is not one of {sorted(WORKSPACE_FILE_MIME_TYPES)}")
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        if decoded_size(v) > MAX_DECODED_BYTES:
            raise ValueError("file is larger than 10 MB decoded")
        return check_base64(v)


class WorkspaceCreate(_Wire):
    initial_prompt: str = Field(min_length=1)
    files: list[WorkspaceFile] | None = Field(default=None, max_length=MAX_WORKSPACE_FILES)


class EvidenceCreate(_Wire):
    """Body of POST /workspaces/{id}/evidence. `data` is base64 of at most 10 MB decoded."""

    type: EvidenceType
    mime_type: str
    data: str
    file_name: str | None = None
    block_id: str | None = None
    session_id: str | None = None
    timestamp_ms: int | None = None
    chunk_index: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    tool_name: str | None = None
    tool_action: str | None = None
    band_powers: dict[str, float] | None = None
    device_name: str | None = None
    sample_count: int | None = Field(default=None, ge=0)

    @field_validator("block_id", "session_id")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        if v is not None and not is_uuid(v):
            raise ValueError(f"{v!r} is not a UUID")
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        size = decoded_size(v)
        if size > MAX_DECODED_BYTES:
            raise ValueError(f"data is {size} bytes decoded; the limit is {MAX_DECODED_BYTES} (10 MB)")
        return check_base64(v)

    @model_validator(mode="after")
    def _mime_matches_type(self) -> EvidenceCreate:
        allowed = EVIDENCE_MIME_TYPES[self.type]
        if self.mime_type not in allowed:
            raise ValueError(
                f"mime_type {self.mime_type!r} does not match type {self.type!r} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        return self


class ConversationTurn(_Wire):
    role: Literal["user", "assistant"]
    content: str


class PerformanceRequest(_Wire):
    prompt: str | None = None
    block_id: str | None = None
    conversation_history: list[ConversationTurn] | None = Field(default=None, max_length=12)
    file_ids: list[str] | None = None


# ---- responses --------------------------------------------------------------------------------


class Workspace(_Wire):
    id: str
    title: str
    root_topic: str | None = None
    status: str = "active"
    notes: str | None = None
    created_at: str
    updated_at: str


class Block(_Wire):
    id: str
    title: str
    description: str | None = None
    is_start: bool = False
    next_node_ids: list[str] = Field(default_factory=list)
    status: Literal["available", "in_progress", "completed"] = "available"
    created_at: str


class FileInfo(_Wire):
    id: str
    file_name: str
    file_size: int
    mime_type: str
    created_at: str


class WorkspaceCreated(_Wire):
    workspace: Workspace
    blocks: list[Block]
    files: list[FileInfo] = Field(default_factory=list)


class BlockList(_Wire):
    blocks: list[Block]


class Evidence(_Wire):
    id: str
    workspace_id: str
    block_id: str | None = None
    session_id: str | None = None
    type: str
    file_name: str
    mime_type: str
    file_size: int
    xai_file_id: str | None = None
    timestamp_ms: int | None = None
    chunk_index: int = 0
    metadata: dict[str, Any] | None = None
    tool_name: str | None = None
    tool_action: str | None = None
    device_name: str | None = None
    sample_count: int | None = None
    created_at: str


class EvidenceCreated(_Wire):
    evidence: Evidence


class Gap(_Wire):
    title: str
    evidence: str
    severity: Literal["low", "medium", "high"]
    suggested_repair: str


class GapAnalysis(_Wire):
    summary: str
    gaps: list[Gap] = Field(default_factory=list)
    next_practice: list[str] = Field(default_factory=list)


class Report(_Wire):
    summary: str
    strengths: list[str] = Field(default_factory=list)
    growth_areas: list[str] = Field(default_factory=list)
    gap_analysis: GapAnalysis
    suggestions: list[str] = Field(default_factory=list)
    confidence: Literal["emerging", "developing", "clear", "well-connected"]


class EvidenceSummary(_Wire):
    blocks: int = 0
    ghl_sessions: int = 0
    evidence_artifacts: int = 0
    linked_sessions: int = 0
    plan_files: int = 0


class PerformanceResponse(_Wire):
    mode: Literal["report", "chat"]
    report: Report | None = None
    response: str | None = None
    evidence_summary: EvidenceSummary
    file_ids: list[str] = Field(default_factory=list)


class ErrorInfo(_Wire):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(_Wire):
    error: ErrorInfo
