"""Does the test suite notice when the code is wrong? Apply deliberate faults, run the tests, report.

    python scripts/check_faults.py            # every fault: caught / MISSED, and which tests caught it
    python scripts/check_faults.py --list     # the faults and the tests that should catch each
    python scripts/check_faults.py --only pause-ignored --only key-logged

Each fault is a small source edit (the ones issue 14's review made by hand: the key logged, `--screen
on` without a display not fatal, replay paced 10x too fast, `collector pause` ignored, the profile's
spool bound not reaching the spool, the 120/min cap removed, screen metadata hard-coded). For each:
the edit is applied (it must match the code exactly once, else the script stops: the code moved and
the fault must be updated), the tests named for it run, and the file is restored byte for byte in a
`finally`, whatever happens (Ctrl-C included). First the same tests run once without any fault: a
test that already fails would "catch" everything and prove nothing.

It edits the files of the tree it runs in: do not run tests in that tree at the same time.
Exit 0 when every fault was caught, 1 when one was missed, 2 when the code moved or the baseline fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Edit:
    path: str  # relative to the repository
    old: str  # must occur exactly once
    new: str


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids that must fail with the fault in place
    expect: str  # a regex the failure output must match: caught for the right reason, not a crash


RUN = "collector/commands/run.py"
CAPTURE = "collector/commands/_capture.py"  # the capture plumbing run, replay and demo share
SOURCES = "collector/commands/_sources.py"  # the sources they (and fit) open
KEY_TEST = (
    "tests/e2e/test_capture_promises.py::test_key_never_in_the_output_of_run_replay_and_upload_at_verbose"
)
SPEED_TESTS = (
    "tests/unit/test_xdf_source.py::test_speed_paces_reads_against_the_wall_clock",
    "tests/e2e/test_capture_promises.py::test_replay_at_speed_1_is_paced_in_real_time_and_anchored_now",
    "tests/e2e/test_capture_promises.py::test_replay_at_speed_n_takes_duration_over_n_and_keeps_an_iso_anchor",
)
PAUSE_E2E = "tests/e2e/test_capture_promises.py::test_pause_on_a_real_run_stops_screenshots_while_eeg_goes_on"

FAULTS: tuple[Fault, ...] = (
    Fault(
        "key-logged",
        "`collector run` writes the full API key to its log output",
        (
            Edit(
                RUN,
                "    settings, workspace_id, block_id = check_target(args, profile)\n",
                "    settings, workspace_id, block_id = check_target(args, profile)\n"
                '    output.log("key", message=f"using key {settings.api_key.reveal()}")  # FAULT\n',
            ),
        ),
        (KEY_TEST,),
        r"is in run's output",
    ),
    Fault(
        "key-logged-unmasked",
        "`collector run` logs the key through `logging` and keys are no longer registered for masking",
        (
            Edit(
                "collector/api/settings.py",
                "        redaction.register(value, self.prefix)",
                "        pass  # FAULT: redaction.register(value, self.prefix)",
            ),
            Edit(
                RUN,
                "    settings, workspace_id, block_id = check_target(args, profile)\n",
                "    settings, workspace_id, block_id = check_target(args, profile)\n"
                '    log.info("using key %s", settings.api_key.reveal())  # FAULT\n',
            ),
        ),
        (KEY_TEST,),
        r"is in run's output",
    ),
    Fault(
        "screen-on-not-fatal",
        "`--screen on` without a display continues EEG-only instead of exiting 5",
        (Edit(SOURCES, '        if mode == "on":\n', "        if False:  # FAULT\n"),),
        ("tests/e2e/test_run_e2e.py::test_screen_on_without_a_display_exits_5_even_with_a_live_eeg_stream",),
        "assert 0 == 5",
    ),
    Fault(
        "replay-10x-source",
        "the XDF source paces a replay 10x faster than --speed",
        (
            Edit(
                "collector/devices/recordings/source.py",
                "elapsed_rel = (self._clock() - self._wall_start) * self.speed\n",
                "elapsed_rel = (self._clock() - self._wall_start) * self.speed * 10  # FAULT\n",
            ),
        ),
        SPEED_TESTS,
        "assert 769 == 77",
    ),
    Fault(
        "replay-10x-command",
        "`collector replay` hands the source 10x its --speed",
        (
            Edit(
                "collector/commands/replay.py",
                "        speed=args.speed,\n",
                "        speed=args.speed * 10 if args.speed else None,  # FAULT\n",
            ),
        ),
        SPEED_TESTS[1:],
        r"assert \d+ <= \(\(|assert 10\.0 <= ",
    ),
    Fault(
        "pause-ignored",
        "`collector run` ignores `collector pause` (the screen source gets no pause control)",
        (
            Edit(
                CAPTURE,
                "        screen_source = open_screen(profile, output, pause_control)\n",
                "        screen_source = open_screen(profile, output, None)  # FAULT\n",
            ),
        ),
        (PAUSE_E2E,),
        "inside a pause",
    ),
    Fault(
        "spool-bound-ignored",
        "the profile's spool_max_bytes does not reach the spool (the 2 GB default is used)",
        (
            Edit(
                CAPTURE,
                "open_spool(spool_root, max_bytes=profile.delivery.spool_max_bytes)",
                "open_spool(spool_root)  # FAULT",
            ),
        ),
        (
            "tests/e2e/test_capture_promises.py::test_profile_spool_bound_reaches_the_spool_and_refused_chunks_are_counted",
        ),
        "not the profile's 300,000-byte bound",
    ),
    Fault(
        "rate-cap-removed",
        "a profile may set rate_per_min above the key's 120 requests/min",
        (
            Edit(
                "collector/profiles/profile.py",
                "rate_per_min: float = Field(100.0, gt=0, le=120)",
                "rate_per_min: float = Field(100.0, gt=0)  # FAULT",
            ),
        ),
        ("tests/e2e/test_capture_promises.py::test_profile_rate_per_min_is_capped_at_the_keys_120",),
        "assert 0 == 2",
    ),
    Fault(
        "backlog-not-first",
        "what earlier captures left waits behind the new capture's items on the next start",
        (
            Edit(
                "collector/delivery/uploader.py",
                "        self._backlog_up_to = self.spool.max_pending_id()\n",
                "        self._backlog_up_to = 0  # FAULT\n",
            ),
        ),
        ("tests/e2e/test_delivery_promises.py::test_earlier_captures_are_delivered_first_on_the_next_start",),
        r"earlier captures' items were not delivered first",
    ),
    Fault(
        "retry-after-ignored",
        "after a 429 the uploader comes back on its own schedule, not after the server's Retry-After",
        (
            Edit(
                "collector/delivery/uploader.py",
                "self._consecutive_429, retry_after_s(err), self.limiter.rate_per_min,",
                "self._consecutive_429, None, self.limiter.rate_per_min,  # FAULT: Retry-After ignored",
            ),
        ),
        (
            "tests/e2e/test_delivery_promises.py::test_a_429_holds_the_whole_queue_for_its_retry_after_seen_at_the_sandbox",
        ),
        r"during a \d+(\.\d+)? s Retry-After",
    ),
    Fault(
        "ctrl-c-no-flush",
        "a single Ctrl-C stops delivery at once instead of flushing for --flush-timeout",
        (
            Edit(
                "collector/capture/session.py",
                "timeout = 0.0 if stop_now else",
                "timeout = 0.0 if True else",
            ),
        ),
        ("tests/e2e/test_capture_promises.py::test_a_single_ctrl_c_stops_flushes_everything_and_exits_0",),
        r"assert 6 == 0",
    ),
    Fault(
        "rejection-message-lost",
        "an item the server rejects is kept as failed without the server's message",
        (
            Edit(
                "collector/delivery/uploader.py",
                "                    self._fail(item, str(err), err)  # validation_error",
                '                    self._fail(item, "rejected", err)  # FAULT: validation_error',
            ),
        ),
        (
            "tests/e2e/test_delivery_promises.py::"
            "test_server_validation_error_is_kept_as_failed_with_its_message_then_retry_failed",
        ),
        r"is rejected by this sandbox\" in 'rejected'|in 'rejected'",
    ),
    Fault(
        "screen-metadata-hard-coded",
        "screen evidence metadata says skipped_before 0 and paused_periods [] whatever happened",
        (
            Edit(
                "collector/core/evidence.py",
                '"skipped_before": frame.skipped_before,',
                '"skipped_before": 0,  # FAULT',
            ),
            Edit(
                "collector/core/evidence.py",
                '"paused_periods": [list(p) for p in frame.paused_periods],',
                '"paused_periods": [],  # FAULT',
            ),
        ),
        (
            "tests/e2e/test_screen.py::test_screen_evidence_metadata_carries_the_frames_skips_and_pauses",
            PAUSE_E2E,
        ),
        "assert 0 == 3",
    ),
    # issue 24, part A
    Fault(
        "live-period-frozen",
        "the live time repair keeps its first period (the declared rate) instead of following the stamps",
        (
            Edit(
                "collector/core/time_repair.py",
                "        return seg.slope if seg.slope > 0 else self._model.p\n",
                "        return self._model.p  # FAULT: frozen at its first estimate\n",
            ),
        ),
        (
            "tests/unit/test_time_repair_model.py::"
            "test_live_period_follows_the_streams_recent_stamps_not_its_first_estimate",
            "tests/e2e/test_lsl_field_cases.py::"
            "test_live_gap_threshold_follows_the_streams_real_rate_not_the_declared_one",
        ),
        r"gaps reported for one 43 ms hole|Obtained: 0\.015625",
    ),
    Fault(
        "last-sample-not-missing",
        "a window's missing samples leave out its last sample (a NaN there is not flagged `missing`)",
        (
            Edit(
                "collector/core/bandpower.py",
                "missing = ((counts[:, ends + 1] - counts[:, starts]) > 0).T\n",
                "missing = ((counts[:, ends] - counts[:, starts]) > 0).T  # FAULT: last sample left out\n",
            ),
        ),
        (
            "tests/unit/test_bandpower.py::test_a_window_whose_only_missing_sample_is_its_last_or_first_is_missing",
            "tests/unit/test_eeg_chunk.py::test_a_window_whose_only_missing_sample_is_its_last_is_missing_without_powers",
        ),
        r"NaN at (sample )?\d+",
    ),
    Fault(
        "gap-forgotten-at-chunk-boundary",
        "a gap before a chunk boundary no longer flags the next chunk's windows that span it",
        (
            Edit(
                "collector/core/chunk.py",
                "for b, g in self._breaks if b > self._chunk_start - w]\n",
                "for b, g in self._breaks if b >= self._chunk_start]  # FAULT: forgotten at the boundary\n",
            ),
        ),
        (
            "tests/unit/test_eeg_chunk.py::"
            "test_a_gap_just_before_a_chunk_boundary_flags_the_next_chunks_windows_over_it",
        ),
        r"window ending at sample \d+ \(chunk 1\)",
    ),
    Fault(
        "marker-correction-ignored",
        "live marker stamps are mapped without the marker stream's own LSL time correction",
        (
            Edit(
                "collector/devices/lsl/markers.py",
                "mapper.to_unix_ms(np.asarray(stamps, dtype=np.float64), correction_s)\n",
                "mapper.to_unix_ms(np.asarray(stamps, dtype=np.float64), 0.0)  # FAULT: correction ignored\n",
            ),
        ),
        (
            "tests/e2e/test_lsl_markers.py::test_a_remote_marker_streams_own_clock_correction_places_its_markers",
        ),
        r"s from the Unix time they were sent",
    ),
    Fault(
        "paired-markers-dropped",
        "`collector export` CSV keeps only the last of two markers on one sample",
        (
            Edit(
                "collector/review/export.py",
                '        column[i] = value if column[i] == "0" else f"{column[i]}|{value}"\n',
                "        column[i] = value  # FAULT: a second marker on the sample replaces the first\n",
            ),
        ),
        (
            "tests/e2e/test_review_export.py::test_two_markers_on_one_sample_are_both_exported_joined_with_a_bar",
        ),
        r"a marker was dropped",
    ),
    Fault(
        "edf-units-partly-ignored",
        "EDF/BDF signals in V or nV are read as if in µV (only mV is converted)",
        (
            Edit(
                "collector/devices/recordings/edf.py",
                "scale = unit_scale(unit)  # one table for every source (collector.core.units)\n",
                'scale = unit_scale(unit if unit in ("mV", "uV") else "")  # FAULT: V and nV read as µV\n',
            ),
        ),
        ("tests/e2e/test_replay_formats.py::test_edf_and_bdf_physical_units_become_microvolts",),
        r"\bn?V not read as µV",
    ),
    # issue 24, part B
    Fault(
        "loss-count-replaced",
        "a stream's refused-chunk count is replaced by the last refusal's instead of summed",
        (
            Edit(
                "collector/delivery/spool/losses.py",
                "DO UPDATE SET count = count + 1,",
                "DO UPDATE SET count = excluded.count,",
            ),
        ),
        (
            "tests/e2e/test_loss_counts.py::test_a_stream_that_loses_chunks_again_and_again_shows_the_sum_everywhere",
        ),
        r"DATA LOST: 1 chunk\(s\) of eeg:",
    ),
    Fault(
        "backoff-not-growing",
        "the retry back-off of an item stays at its first step however often it failed",
        (
            Edit(
                "collector/delivery/failures.py",
                "delay_s = full_jitter(attempt, base_s, cap_s, rng)",
                "delay_s = full_jitter(0, base_s, cap_s, rng)  # FAULT",
            ),
        ),
        (
            "tests/unit/test_retry_policy.py::test_retry_back_off_doubles_with_each_failed_attempt_up_to_its_cap",
            "tests/e2e/test_delivery_retries.py::test_each_failed_attempt_of_an_item_doubles_its_back_off_up_to_the_cap",
        ),
        r"not doubling up to",
    ),
    Fault(
        "505-retried",
        "the API's HTTP 505 is retried for ever instead of failing the item for good (501 still final)",
        (
            Edit(
                "collector/errors.py",
                "permanent = self.status in PERMANENT_5XX",
                "permanent = self.status == 501  # FAULT",
            ),
        ),
        (
            "tests/unit/test_retry_policy.py::"
            "test_the_apis_json_error_fails_an_item_for_good_exactly_for_the_documented_statuses",
            "tests/e2e/test_delivery_retries.py::test_a_documented_final_answer_keeps_the_item_as_failed_without_a_retry",
        ),
        r"HTTP 505 is documented as final|json505: the item is delivered",
    ),
    Fault(
        "429-run-not-reset",
        "a 201 does not end a run of 429s: the next 429 holds the queue as if the run went on",
        (
            Edit(
                "collector/delivery/uploader.py",
                "            self._delivered += 1\n            self._consecutive_429 = 0\n",
                "            self._delivered += 1\n",
            ),
        ),
        ("tests/e2e/test_delivery_retries.py::test_after_a_201_the_next_429_holds_like_the_first_of_a_run",),
        r"the hold after a 201 is",
    ),
    Fault(
        "summary-mean-by-minute",
        "the session summary's band_powers are the mean of the minutes' means, not of the windows",
        (
            Edit("collector/core/summary.py", "total_sums[b] += s\n", "total_sums[b] += s / n  # FAULT\n"),
            Edit(
                "collector/core/summary.py",
                "total_powered += sum(m.powered.values())\n",
                "total_powered += 1  # FAULT\n",
            ),
        ),
        ("tests/e2e/test_summary_means.py::test_summary_means_weigh_every_window_the_same_not_every_minute",),
        r"over minutes it would be",
    ),
    Fault(
        "exit-6-over-7",
        "`run`/`replay` exit 6 (items pending) when chunks were also lost, instead of 7",
        (
            Edit(
                "collector/capture/session.py",
                "    if losses:\n        return SessionResult(EXIT_DATA_LOST, pending, summary)\n",
                "    if pending and not offline:  # FAULT: 6 before 7\n"
                "        return SessionResult(EXIT_PENDING, pending, summary)\n"
                "    if losses:\n        return SessionResult(EXIT_DATA_LOST, pending, summary)\n",
            ),
        ),
        ("tests/e2e/test_exit_codes.py::test_replay_that_lost_chunks_and_left_items_pending_exits_7_not_6",),
        r"exit 6 with chunks lost and items pending",
    ),
)


class CodeMoved(Exception):
    pass


def apply(edits: tuple[Edit, ...]) -> dict[Path, bytes]:
    """Apply the edits; returns the original bytes of every file touched (for restore)."""
    originals: dict[Path, bytes] = {}
    texts: dict[Path, str] = {}
    for edit in edits:
        path = REPO / edit.path
        if path not in texts:
            originals[path] = path.read_bytes()
            texts[path] = originals[path].decode("utf-8")
        count = texts[path].count(edit.old)
        if count != 1:
            raise CodeMoved(f"{edit.path}: expected the code to change exactly once, found it {count} times: "
                            f"{edit.old.strip()!r}")  # fmt: skip
        texts[path] = texts[path].replace(edit.old, edit.new)
    try:
        for path, text in texts.items():
            path.write_text(text, encoding="utf-8")
    except BaseException:
        restore(originals)
        raise
    return originals


def restore(originals: dict[Path, bytes]) -> None:
    for path, data in originals.items():
        path.write_bytes(data)
        assert path.read_bytes() == data, f"could not restore {path}"


def run_tests(tests: tuple[str, ...], timeout_s: float) -> tuple[int, list[str], str]:
    """(pytest's exit code, the node ids that failed or errored, pytest's output)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, [], out
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.MULTILINE)
    return proc.returncode, failed, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list the faults and their tests, run nothing")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this fault (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run (default 600)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without faults")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each failing test's first E line")
    args = parser.parse_args(argv)

    faults = [f for f in FAULTS if not args.only or f.name in args.only]
    unknown = set(args.only or ()) - {f.name for f in FAULTS}
    if unknown:
        parser.error(f"unknown fault(s) {sorted(unknown)}; see --list")
    if args.list:
        for f in faults:
            print(f"{f.name}: {f.what}")
            for t in f.tests:
                print(f"    {t}")
        return 0

    for f in faults:  # every edit must still match before anything runs
        try:
            restore(apply(f.edits))
        except CodeMoved as exc:
            print(f"check_faults: fault {f.name!r} no longer applies ({exc}). Update it.", file=sys.stderr)
            return 2

    if not args.no_baseline:
        tests = tuple(dict.fromkeys(t for f in faults for t in f.tests))
        started = time.monotonic()
        code, failed, tail = run_tests(tests, args.timeout)
        print(f"baseline (no fault): pytest exit {code} in {time.monotonic() - started:.0f} s")
        if code != 0:
            print(tail[-3000:], file=sys.stderr)
            print("check_faults: the tests fail without any fault; fix them first.", file=sys.stderr)
            return 2

    missed = []
    for f in faults:
        started = time.monotonic()
        originals = apply(f.edits)
        try:
            code, failed, tail = run_tests(f.tests, args.timeout)
        finally:
            restore(originals)
        took = time.monotonic() - started
        right_reason = re.search(f.expect, tail) is not None
        if code == 1 and failed and right_reason:
            print(f"caught  {f.name} ({took:.0f} s): {f.what}")
            for t in failed:
                print(f"        by {t}")
            if args.verbose:
                for line in re.findall(r"^E  +(.+)$", tail, flags=re.MULTILINE)[:6]:
                    print(f"           {line[:150]}")
        else:
            missed.append(f.name)
            why = f"pytest exit {code}" + (", failed for another reason" if code == 1 and failed else "")
            print(f"MISSED  {f.name} ({took:.0f} s, {why}; expected /{f.expect}/): {f.what}")
            if code not in (0, 1):
                print(tail[-3000:], file=sys.stderr)
    print(
        f"\n{len(faults) - len(missed)} of {len(faults)} faults caught"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
