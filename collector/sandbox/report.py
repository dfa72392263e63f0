"""The sandbox's performance answer: deterministic arithmetic over stored evidence, no AI.

Report mode counts evidence per type and averages EEG band powers; chat mode says the same in
markdown. Both are labelled as sandbox output so nobody mistakes them for a real analysis.
"""

from __future__ import annotations

from collections import Counter

LABEL = "Sandbox report (deterministic, not an AI analysis)"


def summarize(rows: list[dict]) -> tuple[Counter, dict[str, float]]:
    """Evidence counts per type, and the mean of each EEG band power over the rows that carry it."""
    counts = Counter(r["type"] for r in rows)
    sums: dict[str, float] = {}
    seen: Counter = Counter()
    for r in rows:
        for band, value in (r.get("band_powers") or {}).items():
            sums[band] = sums.get(band, 0.0) + float(value)
            seen[band] += 1
    means = {band: round(sums[band] / seen[band], 6) for band in sorted(sums)}
    return counts, means


def _confidence(n: int) -> str:
    return "emerging" if n == 0 else "developing" if n < 10 else "clear" if n < 50 else "well-connected"


def _describe(counts: Counter, means: dict[str, float]) -> tuple[str, str]:
    total = sum(counts.values())
    per_type = ", ".join(f"{t} {counts[t]}" for t in sorted(counts)) or "none"
    bands = ", ".join(f"{b} {v:.4g}" for b, v in means.items()) or "no EEG band powers"
    return f"{total} evidence artifacts ({per_type})", f"mean EEG band powers: {bands}"


def build_report(rows: list[dict], n_blocks: int, scope: str) -> dict:
    counts, means = summarize(rows)
    artifacts, bands = _describe(counts, means)
    gaps = []
    if not counts.get("eeg"):
        gaps.append({
            "title": "No EEG evidence",
            "evidence": f"No eeg rows in {scope}.",
            "severity": "high",
            "suggested_repair": "Run `collector run` with an EEG source connected.",
        })  # fmt: skip
    if not counts.get("screen"):
        gaps.append({
            "title": "No screen evidence",
            "evidence": f"No screen rows in {scope}.",
            "severity": "medium",
            "suggested_repair": "Enable screen capture during practice.",
        })  # fmt: skip
    strengths = [f"{t} evidence recorded: {counts[t]} artifacts" for t in sorted(counts)]
    return {
        "summary": f"{LABEL} for {scope}: {artifacts}; {bands}.",
        "strengths": strengths,
        "growth_areas": [g["title"] for g in gaps],
        "gap_analysis": {
            "summary": f"{len(gaps)} gaps found by counting evidence types (a sandbox rule, no assessment).",
            "gaps": gaps,
            "next_practice": ["Practice one block and capture EEG and screen evidence for it."],
        },
        "suggestions": ["Point the collector at the real API to get an actual performance analysis."],
        "confidence": _confidence(sum(counts.values())),
    }


def build_chat_answer(rows: list[dict], prompt: str, scope: str) -> str:
    counts, means = summarize(rows)
    artifacts, bands = _describe(counts, means)
    quoted = " ".join(prompt.split())
    return (
        f"### {LABEL}\n\n"
        f"> {quoted}\n\n"
        f"The sandbox cannot answer questions; here is what it stores for {scope}:\n\n"
        f"- {artifacts}\n"
        f"- {bands}\n"
    )
