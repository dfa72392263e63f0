"""The API's replies as text: a workspace's blocks as a table (`blocks`, `workspace`) and the
performance report (`report`, `demo`)."""

from __future__ import annotations

from collector.api.models import Block, PerformanceResponse


def format_blocks(blocks: list[Block]) -> str:
    """id, title, status, start flag; one block per line, columns aligned."""
    rows = [("ID", "TITLE", "STATUS", "START")]
    rows += [(b.id, b.title, b.status, "start" if b.is_start else "") for b in blocks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows
    ]
    if not blocks:
        lines.append("(no blocks)")
    return "\n".join(line.rstrip() for line in lines)


def format_report(reply: PerformanceResponse) -> str:
    report, summary = reply.report, reply.evidence_summary
    if report is None:
        return "(the API sent no report)"
    lines = [report.summary, f"Confidence: {report.confidence}"]

    def section(title: str, items: list[str]) -> None:
        lines.extend(["", f"{title}:"] + [f"  - {item}" for item in items] if items else [])

    section("Strengths", report.strengths)
    section("Growth areas", report.growth_areas)
    gaps = report.gap_analysis
    lines.extend(["", f"Gaps: {gaps.summary}"])
    lines.extend(
        f"  - [{g.severity}] {g.title}: {g.evidence} Repair: {g.suggested_repair}" for g in gaps.gaps
    )
    section("Next practice", gaps.next_practice)
    section("Suggestions", report.suggestions)
    lines.extend([
        "",
        f"Evidence: {summary.evidence_artifacts} artifacts, {summary.blocks} blocks, "
        f"{summary.linked_sessions} linked sessions, {summary.ghl_sessions} GHL sessions, "
        f"{summary.plan_files} plan files.",
    ])  # fmt: skip
    return "\n".join(lines)
