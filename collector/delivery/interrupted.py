"""Finishing captures whose process never did: killed (SIGKILL), crashed, or cut off by a power loss.

A capture writes its end time, its counts and its session summary only when it stops normally
(`Capture.stop`). When its process is gone without that, the spool still holds every item it
spooled, and the spool's index remembers each delivered one (start, sample count) even once its
bytes are purged. So whenever a command opens a spool (`collector upload`, `run`, `sessions`, ...,
all through `collector.delivery.opening.open_spool`), `finish_interrupted` finishes such captures
from what is there:

- end time: when its last item was spooled; data span, samples, EEG chunks and screenshots from
  the spool's index; markers and gaps from the chunks still readable here;
- `counts["interrupted"] = True`, so `collector sessions` and the review page say "interrupted";
- its session summary, built from the same chunks and screenshots with `SummaryBuilder`, spooled
  for delivery like any other item, but only when every EEG chunk is still readable here (a
  summary of part of the capture would be wrong) and none was spooled before the kill.

A capture is taken to be running while the process that began it is alive (its pid is in the
`captures` row), so a capture still running in another process is left alone.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from collector import __version__
from collector.core.summary import STREAM_ID as SUMMARY_STREAM_ID
from collector.core.summary import SummaryBuilder
from collector.delivery.spool import Spool

log = logging.getLogger("collector.delivery.local_record")


def process_alive(pid: int | None) -> bool:
    """True when a process with this pid exists (ours included); False for None."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def capture_state(row: dict[str, Any]) -> str:
    """running | interrupted | finished, for a row of `LocalRecord.captures()`."""
    if row.get("ended_ms") is None:
        return "running" if process_alive(row.get("pid")) else "interrupted"
    return "interrupted" if (row.get("counts") or {}).get("interrupted") else "finished"


def finish_interrupted(spool: Spool) -> list[str]:
    """Finish every capture whose process is gone without finishing it; returns their ids."""
    done = []
    for row in spool.record.captures():
        if row.get("ended_ms") is not None or process_alive(row.get("pid")):
            continue
        try:
            _finish(spool, row)
        except Exception as exc:  # a convenience: never stops the spool from opening
            log.warning("capture %s was interrupted and could not be finished: %s", row["capture_id"], exc)
            continue
        done.append(row["capture_id"])
    return done


def _finish(spool: Spool, row: dict[str, Any]) -> None:
    capture_id = row["capture_id"]
    spooled = spool.record.spooled_counts(capture_id)
    builder = SummaryBuilder(capture_id=capture_id, kind=row["kind"], collector_version=__version__)
    has_summary = any(r.stream_id == SUMMARY_STREAM_ID for r in spool.record.item_rows(capture_id))
    for art in spool.record.artifacts(capture_id):
        if art.damaged or art.stream_id == SUMMARY_STREAM_ID:
            continue
        if art.type == "eeg":
            try:
                builder.add_chunk(json.loads(art.data))
            except (ValueError, KeyError, TypeError):
                continue
        elif art.type == "screen" and art.timestamp_ms is not None:
            builder.add_screenshot(art.timestamp_ms, 0, art.metadata.get("paused_periods") or ())
    complete = builder.eeg_chunks == spooled["eeg_chunks"] and builder.screenshots == spooled["screenshots"]
    if complete and not has_summary and not builder.empty and row.get("workspace_id"):
        evidence, data = builder.evidence(row.get("device"))
        spool.add(
            workspace_id=row["workspace_id"], evidence=evidence.for_block(row.get("block_id")), data=data
        )
    first = builder.first_ms if builder.first_ms is not None else spooled["first_ms"]
    last = builder.last_ms if builder.last_ms is not None else None
    counts = {
        "samples": spooled["samples"],
        "eeg_chunks": spooled["eeg_chunks"],
        "screenshots": spooled["screenshots"],
        "markers": len(builder.markers),
        "gaps": len(builder.gaps),
        "data_start_ms": None if first is None else int(first),
        "data_end_ms": None if last is None else int(last),
        "interrupted": True,
        "complete_counts": complete,  # markers and gaps counted from every chunk
    }
    ended = spooled["last_spooled_ms"] or row["started_ms"]  # every `captures()` row has both
    spool.record.end_capture(capture_id, int(ended), counts)
    log.warning(
        "capture %s was interrupted (its process is gone); finished from the %d item(s) it had spooled%s",
        capture_id, spooled["eeg_chunks"] + spooled["screenshots"],
        ", its session summary spooled" if complete and not has_summary and not builder.empty else "",
    )  # fmt: skip
