"""`collector doctor`: can this machine capture and deliver? One line per check, with the fix.

Checks, in the order printed:

    python      Python 3.10+                          packages   installed versions
    liblsl      the LSL library loads                 lsl        LSL streams visible (short resolve)
    bluetooth   an adapter for a Muse (no scan)       display    a 1x1 screenshot works
    pause       screen capture is not left paused (`collector pause`)
    spool       the spool folder is writable, free disk space, items waiting
    api         the API answers                        key        the key is accepted
    workspace   --workspace exists                     block      --block exists (id or title)
    sources     at least one of: an LSL EEG stream, a Muse adapter, a display

Exit 0 when every check is ok or a warning; otherwise the exit code of the most serious failure:
3 (key), 4 (workspace or block), 5 (nothing to capture), 2 (bad settings), 1 (anything else).
Slow checks (LSL resolve, screenshot, API) run side by side, each with its own time bound, so a
doctor run stays under ~10 s even with no network. The key is never printed, its prefix at most.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from collector import __version__
from collector.commands._common import add_api_options, add_spool_option, spool_dir
from collector.errors import (
    EXIT_AUTH,
    EXIT_FAILURE,
    EXIT_NO_SOURCE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CollectorError,
    UsageError,
)

OK, WARN, FAIL = "ok", "warn", "fail"
# The first in this list wins when several checks fail: fix the configuration before the hardware.
SEVERITY = (EXIT_AUTH, EXIT_NOT_FOUND, EXIT_NO_SOURCE, EXIT_USAGE, EXIT_FAILURE)

REQUIRED_PACKAGES = ("pylsl", "pyxdf", "numpy", "scipy", "mss", "httpx", "pydantic", "pillow")
OPTIONAL_PACKAGES = ("muselsl", "bleak")
DIST_NAME = "openlesson-collector"

LSL_WAIT_S = 1.5
DISPLAY_TIMEOUT_S = 3.0
API_TIMEOUT_S = 5.0  # per request; doctor's default instead of the usual 30 s
SLOW_CHECK_LIMIT_S = 9.0
SPOOL_FAIL_FREE_BYTES = 100 * 1024**2  # below this a capture fills the disk within minutes of screens
SPOOL_WARN_FREE_BYTES = 1024**3

FIX_LIBLSL = (
    "Install liblsl: `conda install -c conda-forge liblsl`, or the package for your system from "
    "https://github.com/sccn/liblsl/releases; or point PYLSL_LIB at an existing liblsl.so/.dylib/.dll."
)
FIX_NO_DISPLAY = (
    "Screenshots are skipped with --screen auto (EEG still works). To capture screens, run inside the "
    "desktop session, or set DISPLAY=:0 and XAUTHORITY=<that session's Xauthority file> "
    "(for the lab service: see scripts/collector@.service)."
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""
    exit_code: int = EXIT_OK  # for a fail: the exit code it stands for

    @classmethod
    def failed(cls, name: str, detail: str, fix: str = "", exit_code: int = EXIT_FAILURE) -> Check:
        return cls(name, FAIL, detail, fix, exit_code)


# ---- command ----------------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check this machine: packages, liblsl, streams, Bluetooth, display, spool, API key",
        description=(
            "Check the environment and print each check as ok/warn/fail with the fix. "
            "Exit 0 when nothing failed (warnings don't fail); otherwise 3 (key), 4 (workspace or "
            "block not found), 5 (no data source at all), 2 (bad settings) or 1. "
            f"API requests time out after {API_TIMEOUT_S:g} s unless --timeout is given."
        ),
    )
    p.add_argument(
        "--workspace", "-w", metavar="ID", help="also check this workspace exists (or $COLLECTOR_WORKSPACE)"
    )
    p.add_argument(
        "--block",
        "-b",
        metavar="ID|TITLE",
        help="also check this block exists, by id or title (or $COLLECTOR_BLOCK)",
    )
    p.add_argument(
        "--profile", metavar="NAME|PATH", help="check this profile loads; use its [session] target"
    )
    p.add_argument(
        "--lsl-wait",
        type=float,
        default=LSL_WAIT_S,
        metavar="S",
        help=f"seconds to look for LSL streams (default {LSL_WAIT_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    add_spool_option(p)
    add_api_options(p)
    for action in p._actions:  # doctor must stay fast offline: its own default and help
        if action.dest == "timeout":
            action.help = f"seconds per request (default {API_TIMEOUT_S:g} here)"
    p.set_defaults(func=run, timeout=API_TIMEOUT_S)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.lsl_wait <= 10:
        raise UsageError(f"--lsl-wait must be between 0 and 10 seconds; {args.lsl_wait:g} is invalid.")
    profile_check, profile = check_profile(args.profile)
    workspace, block = _target(args, profile)

    checks: list[Check] = [check_python(), check_packages()]
    if profile_check:
        checks.append(profile_check)
    slow = _run_side_by_side(
        {
            "lsl": lambda: check_lsl(args.lsl_wait),
            "bluetooth": lambda: [check_bluetooth(profile)],
            "display": lambda: [check_display(profile)],
            "spool": lambda: [check_spool(args)],
            "api": lambda: check_api(args, workspace, block),
        },
        limit_s=SLOW_CHECK_LIMIT_S,
    )
    for group in ("lsl", "bluetooth", "display", "spool", "api"):
        checks.extend(slow[group])
        if group == "display":
            checks.append(check_pause())
    checks.append(check_sources(checks))

    exit_code = overall_exit_code(checks)
    if args.json:
        print(
            json.dumps(
                {"version": __version__, "exit_code": exit_code, "checks": [asdict(c) for c in checks]},
                indent=2,
            )
        )
    else:
        print(render_text(checks, exit_code))
    return exit_code


def overall_exit_code(checks: list[Check]) -> int:
    failed = {c.exit_code or EXIT_FAILURE for c in checks if c.status == FAIL}
    for code in SEVERITY:
        if code in failed:
            return code
    return EXIT_FAILURE if failed else EXIT_OK


def render_text(checks: list[Check], exit_code: int) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"collector doctor (openlesson-collector {__version__})"]
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    verdict = "ready" if exit_code == EXIT_OK else f"not ready (exit {exit_code})"
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failed: {verdict}.")
    return "\n".join(lines)


def _target(args: argparse.Namespace, profile) -> tuple[str | None, str | None]:
    """--workspace/--block, else the profile's [session], else $COLLECTOR_WORKSPACE/$COLLECTOR_BLOCK."""
    from collector.commands._common import require_uuid

    session = getattr(profile, "session", None)
    workspace = (
        args.workspace or getattr(session, "workspace", None) or os.environ.get("COLLECTOR_WORKSPACE") or None
    )
    block = args.block or getattr(session, "block", None) or os.environ.get("COLLECTOR_BLOCK") or None
    if block and not workspace:
        raise UsageError("--block needs --workspace ID (a block is looked up inside its workspace).")
    return (require_uuid(workspace, "Workspace") if workspace else None), block


def _run_side_by_side(jobs: dict[str, Callable[[], list[Check]]], limit_s: float) -> dict[str, list[Check]]:
    """Run each job in a daemon thread; one that hangs (a dead X server, a black-holed network)
    becomes a failed check instead of holding the doctor or the interpreter's exit."""
    results: dict[str, list[Check]] = {}

    def runner(name: str, job: Callable[[], list[Check]]) -> None:
        try:
            results[name] = job()
        except Exception as exc:  # a bug in one check must not hide the others
            results[name] = [
                Check.failed(
                    name,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "Run again with --verbose and report it.",
                )
            ]

    threads = [
        threading.Thread(target=runner, args=item, daemon=True, name=f"doctor-{item[0]}")
        for item in jobs.items()
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for name in jobs:
        if name not in results:
            results[name] = [
                Check.failed(
                    name, f"no answer within {limit_s:g} s", "Something hangs here; run again with --verbose."
                )
            ]
    return results


# ---- Python, packages, profile -------------------------------------------------------------------


def check_python() -> Check:
    v = sys.version_info
    detail = f"Python {platform.python_version()} at {sys.executable}"
    if v < (3, 10):
        return Check.failed(
            "python", detail, "Install Python 3.10 or newer and reinstall the collector in it."
        )
    return Check("python", OK, detail)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_packages() -> Check:
    own = _version(DIST_NAME)
    parts = [f"collector {own}" if own else f"collector {__version__} (source tree, not installed)"]
    missing = []
    for dist in REQUIRED_PACKAGES:
        v = _version(dist)
        parts.append(f"{dist} {v}" if v else f"{dist} MISSING")
        if not v:
            missing.append(dist)
    for dist in OPTIONAL_PACKAGES:
        v = _version(dist)
        parts.append(f"{dist} {v}" if v else f"{dist} (not installed)")
    detail = ", ".join(parts)
    if missing:
        return Check.failed(
            "packages",
            detail,
            f"Reinstall the collector (`pip install {DIST_NAME}`) or `pip install {' '.join(missing)}`.",
        )
    return Check("packages", OK, detail)


def check_profile(name_or_path: str | None):
    """(Check or None, Profile or None). A profile that doesn't load is bad settings (exit 2)."""
    if not name_or_path:
        return None, None
    try:
        from collector.profiles.profile import load_profile
    except ImportError as exc:
        return Check.failed(
            "profile", f"not available: the profile loader cannot load ({exc})", "Reinstall the collector."
        ), None
    try:
        profile = load_profile(name_or_path)
    except CollectorError as err:
        return Check.failed(
            "profile",
            str(err),
            "Fix the profile, or pick another with --profile.",
            getattr(err, "exit_code", EXIT_USAGE),
        ), None
    session = profile.session
    target = f"; target workspace {session.workspace or '-'} block {session.block or '-'}"
    return Check(
        "profile", OK, f"{profile.name}: device {profile.device.kind}, screen {profile.screen.mode}{target}"
    ), profile


# ---- LSL -------------------------------------------------------------------------------------------


def check_lsl(wait_s: float) -> list[Check]:
    try:
        import pylsl
    except Exception as exc:  # pylsl raises RuntimeError at import when liblsl cannot be found
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [
            Check.failed("liblsl", f"liblsl does not load: {reason}", FIX_LIBLSL),
            Check("lsl", WARN, "not checked: liblsl does not load", "Fix liblsl first."),
        ]
    try:
        v = int(pylsl.library_version())
        liblsl = Check(
            "liblsl",
            OK,
            f"liblsl {v // 100}.{v % 100} loads (pylsl {pylsl.__version__})"
            if hasattr(pylsl, "__version__")
            else f"liblsl {v // 100}.{v % 100} loads",
        )
    except Exception as exc:
        return [
            Check.failed("liblsl", f"liblsl does not load: {exc}", FIX_LIBLSL),
            Check("lsl", WARN, "not checked: liblsl does not load", "Fix liblsl first."),
        ]
    return [liblsl, _lsl_streams(pylsl, wait_s)]


def _lsl_streams(pylsl, wait_s: float) -> Check:
    try:
        from collector.devices.lsl.discovery import list_streams  # the lister `collector devices` uses
    except ImportError:
        list_streams = None
    if list_streams is not None:
        streams = [
            (s.name, s.type, s.sfreq, s.channel_count, s.hostname)
            for s in list_streams(timeout=wait_s, with_labels=False)
        ]
    else:
        streams = [
            (s.name(), s.type(), s.nominal_srate(), s.channel_count(), s.hostname())
            for s in pylsl.resolve_streams(wait_time=wait_s)
        ]
    if not streams:
        return Check(
            "lsl",
            WARN,
            f"no LSL stream visible within {wait_s:g} s",
            "Turn the headset on and start its LSL stream (`muselsl stream`, BlueMuse, "
            "Mind Monitor, or the vendor app) on this machine or network; then "
            "`collector devices` lists it. Not needed for a Muse over Bluetooth or screens only.",
        )
    listed = "; ".join(
        f"{name} ({typ or 'no type'}, {rate:g} Hz, {n} ch, on {host})"
        for name, typ, rate, n, host in streams[:5]
    )
    more = f" and {len(streams) - 5} more" if len(streams) > 5 else ""
    eeg = [s for s in streams if s[1].lower() == "eeg"]
    if not eeg:
        return Check(
            "lsl",
            WARN,
            f"{len(streams)} stream(s), none of type EEG: {listed}{more}",
            "Pick the stream with `collector run --stream-name NAME` (and --stream-type).",
        )
    return Check("lsl", OK, f"{len(eeg)} EEG stream(s) of {len(streams)}: {listed}{more}")


# ---- Bluetooth (Muse) -------------------------------------------------------------------------------


def bluetooth_adapters(sysfs: Path = Path("/sys/class/bluetooth")) -> tuple[list[str], list[str]]:
    """(adapters, blocked adapters' rfkill names) on Linux, from sysfs; never scans."""
    try:
        adapters = sorted(p.name for p in sysfs.iterdir() if ":" not in p.name)
    except OSError:
        return [], []
    blocked = []
    for rfkill in Path("/sys/class/rfkill").glob("rfkill*"):
        try:
            if (rfkill / "type").read_text().strip() != "bluetooth":
                continue
            if (rfkill / "soft").read_text().strip() == "1" or (rfkill / "hard").read_text().strip() == "1":
                blocked.append(rfkill.name)
        except OSError:
            continue
    return adapters, blocked


def check_bluetooth(profile=None) -> Check:
    # A Muse listing scans for ~10 s: out of place here. This only checks what a scan would need.
    wants_muse = getattr(getattr(profile, "device", None), "kind", None) == "muse"
    status_missing = FAIL if wants_muse else WARN
    exit_missing = EXIT_NO_SOURCE if wants_muse else EXIT_OK
    lsl_alt = (
        "Without Bluetooth here, stream the Muse over LSL from another machine or app and use --device lsl."
    )
    has_muselsl = find_spec("muselsl") is not None
    has_bleak = find_spec("bleak") is not None
    if not has_muselsl:
        return Check(
            "bluetooth",
            status_missing,
            "muselsl is not installed: no direct Muse connection",
            f"`pip install muselsl`. {lsl_alt}",
            exit_missing,
        )
    if sys.platform.startswith("linux"):
        adapters, blocked = bluetooth_adapters()
        if not adapters:
            return Check(
                "bluetooth",
                status_missing,
                "no Bluetooth adapter (/sys/class/bluetooth is empty or absent)",
                f"Plug in a Bluetooth LE adapter and start bluetoothd. {lsl_alt}",
                exit_missing,
            )
        if blocked:
            return Check(
                "bluetooth",
                status_missing,
                f"adapter {', '.join(adapters)} is blocked by rfkill",
                "`rfkill unblock bluetooth`, then `bluetoothctl power on`.",
                exit_missing,
            )
        return Check(
            "bluetooth",
            OK,
            f"adapter {', '.join(adapters)}; muselsl and "
            f"{'bleak' if has_bleak else 'pygatt'} present (not scanned: `collector devices` lists headsets)",
        )
    if has_bleak:
        return Check(
            "bluetooth",
            OK,
            "bleak present (adapter not verified on this system without a scan; "
            "`collector devices` lists headsets)",
        )
    return Check(
        "bluetooth",
        status_missing,
        "bleak is not installed: no Bluetooth LE access",
        f"`pip install bleak`. {lsl_alt}",
        exit_missing,
    )


# ---- display -----------------------------------------------------------------------------------------


def check_display(profile=None) -> Check:
    """A 1x1 grab through the screen source's own open(), bounded in time (a dead X server hangs)."""
    screen = getattr(profile, "screen", None)
    wants_screen = getattr(screen, "mode", None) == "on"
    bad_status = FAIL if wants_screen else WARN
    bad_exit = EXIT_NO_SOURCE if wants_screen else EXIT_OK
    fix = FIX_NO_DISPLAY + (' Or set [screen] mode = "auto" in the profile.' if wants_screen else "")
    try:
        from collector.devices.screen.settings import ScreenSettings
        from collector.devices.screen.source import ScreenSource
    except Exception as exc:
        return Check("display", bad_status, f"not available: the screen source cannot load ({exc})",
                     "Reinstall the collector (it needs mss and pillow).", bad_exit)  # fmt: skip

    outcome: dict[str, object] = {}

    def probe() -> None:
        try:
            source = ScreenSource(ScreenSettings(monitor=getattr(screen, "monitor", "primary")))
            try:
                source.open()  # raises NoSourceError with the reason: no DISPLAY, Wayland, X refused
                region = getattr(source, "_region", None) or {}
                outcome["ok"] = (source.monitor, region.get("width"), region.get("height"))
            finally:
                source.close()
        except CollectorError as err:
            outcome["error"] = str(err)
        except Exception as exc:  # a missing libX11 and the like: reported, not raised
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    quiet = logging.getLogger("collector.devices.screen")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # its "screen: monitor ..." info line is for captures
    try:
        t = threading.Thread(target=probe, daemon=True, name="doctor-display-grab")
        t.start()
        t.join(DISPLAY_TIMEOUT_S)
    finally:
        quiet.setLevel(level)
    where = f"DISPLAY={os.environ['DISPLAY']}" if os.environ.get("DISPLAY") else "this desktop"
    if "ok" in outcome:
        monitor, w, h = outcome["ok"]  # type: ignore[misc]
        size = f" ({w}x{h})" if w and h else ""
        return Check("display", OK, f"screenshots work on {where}, monitor {monitor}{size}")
    reason = (
        outcome.get("error")
        or f"cannot take a screenshot on {where}: no answer within {DISPLAY_TIMEOUT_S:g} s"
    )
    if os.environ.get("DISPLAY"):
        fix = (
            "Check that the X server runs and that this user may use it (XAUTHORITY=<the session's "
            "Xauthority file>, or `xhost +SI:localuser:USER` in the session). Screenshots are skipped "
            "with --screen auto (EEG still works)."
        )
    return Check("display", bad_status, str(reason), fix, bad_exit)


# ---- spool -----------------------------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_spool(args: argparse.Namespace) -> Check:
    try:
        root = spool_dir(args)
    except Exception as exc:
        return Check.failed(
            "spool", f"cannot tell where the spool is: {exc}", "Pass --spool DIR or set COLLECTOR_SPOOL_DIR."
        )
    fix_perm = (
        f"Pass --spool DIR (or set COLLECTOR_SPOOL_DIR) to a folder this user can write, "
        f"or give it to this user: `sudo chown -R {_user()} {root}`."
    )
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        fd, probe = tempfile.mkstemp(prefix=".doctor-probe-", dir=root)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        usage = shutil.disk_usage(root)
    except (FileExistsError, NotADirectoryError):
        return Check.failed(
            "spool",
            f"cannot use {root}: a file is in the way (not a folder)",
            "Pass --spool DIR (or set COLLECTOR_SPOOL_DIR) to a folder, or move that file away.",
        )
    except OSError as exc:  # the fix depends on why: a full disk is not a permission problem
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = f"Free disk space on the disk holding {root}, or move the spool with --spool DIR."
        elif exc.errno == errno.EROFS:
            fix = f"{root} is on a read-only file system: pass --spool DIR (or set COLLECTOR_SPOOL_DIR)."
        else:
            fix = fix_perm
        return Check.failed("spool", f"cannot write to {root} ({exc.strerror or exc})", fix)

    notes = []
    mode = root.stat().st_mode & 0o777
    if mode & 0o077:
        notes.append(f"folder mode {mode:o} lets other users read evidence")
    pending, unreadable = _spool_backlog(root)
    if unreadable is not None:  # the folder is writable, but the spool in it is not usable
        from collector.delivery.spool import damaged_advice
        from collector.errors import SpoolDamagedError, SpoolFullError

        if isinstance(unreadable, SpoolFullError):
            fix = f"Free disk space on the disk holding {root}, or move the spool with --spool DIR."
        elif isinstance(unreadable, SpoolDamagedError):
            fix = damaged_advice(root)
        else:
            fix = fix_perm
        why = str(unreadable).rstrip(".")
        if isinstance(unreadable, SpoolDamagedError):  # the cause only: the fix says what to do
            why = why.split(". Move the spool aside")[0]
        return Check.failed("spool", f"{root} is writable but its database cannot be opened ({why})", fix)
    detail = f"{root} writable, {_human(usage.free)} free" + (f"; {pending}" if pending else "")
    if usage.free < SPOOL_FAIL_FREE_BYTES:
        return Check.failed(
            "spool",
            detail + f" (under {_human(SPOOL_FAIL_FREE_BYTES)})",
            "Free disk space, or move the spool with --spool DIR / COLLECTOR_SPOOL_DIR.",
        )
    if usage.free < SPOOL_WARN_FREE_BYTES:
        notes.append(f"under {_human(SPOOL_WARN_FREE_BYTES)} free: screenshots may fill it within hours")
    if notes:
        return Check(
            "spool",
            WARN,
            detail + "; " + "; ".join(notes),
            f"`chmod 700 {root}`" if mode & 0o077 else "Free disk space or move the spool.",
        )
    return Check("spool", OK, detail)


def _spool_backlog(root: Path) -> tuple[str, Exception | None]:
    """('N items waiting', None) for an existing spool, or ('', the error) when it cannot be opened.

    Never creates one."""
    if not (root / "spool.db").exists():
        return "", None
    owner = root.stat().st_uid
    if hasattr(os, "geteuid") and owner != os.geteuid():
        # Opening it would leave SQLite side files owned by us (root, typically) in a service's spool.
        who = _user_name(owner)
        return f"owned by {who}: backlog not read (`collector status` as that user tells it)", None
    try:
        from collector.delivery.opening import open_spool

        with open_spool(root) as spool:
            pending, failed, reason = spool.pending_count(), spool.failed_count(), spool.pause_reason()
    except Exception as exc:
        return "", exc
    parts = []
    if pending:
        parts.append(f"{pending} item(s) waiting (`collector upload` sends them)")
    if failed:
        parts.append(f"{failed} rejected item(s)")
    if reason:
        parts.append(reason if reason.lower().startswith("delivery paused") else f"delivery paused: {reason}")
    return "; ".join(parts), None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "$USER"


# ---- API ---------------------------------------------------------------------------------------------


def check_api(args: argparse.Namespace, workspace: str | None, block: str | None) -> list[Check]:
    from collector.api.settings import ApiKey, ApiSettings, resolve_api_key, resolve_base_url

    try:
        base_url = resolve_base_url(args.base_url)
    except UsageError as err:
        return [Check.failed("api", str(err), "Fix --base-url or OPENLESSON_BASE_URL.", EXIT_USAGE)]
    try:
        from collector.api.client import OpenLessonClient
        from collector.errors import ApiError, AuthError, NetworkError, NotFoundError, ServerError
    except ImportError as exc:
        return [
            Check.failed(
                "api", f"not available: the API client cannot load ({exc})", "Reinstall the collector."
            )
        ]

    key_check: Check | None = None
    try:
        api_key = resolve_api_key(args.api_key_file)
    except UsageError as err:
        key_check = Check.failed(
            "key",
            str(err),
            "Put the key in OPENLESSON_API_KEY or a 0600 file for "
            "--api-key-file (a lab service reads /etc/openlesson-collector/NAME.key).",
            EXIT_AUTH,
        )
        api_key = ApiKey("sk_doctor_no_key")  # still probes reachability: a 401 proves the server answers
    settings = ApiSettings(base_url=base_url, api_key=api_key, timeout_s=args.timeout)
    probe_ws = workspace or str(uuid.uuid4())
    fix_key = (
        "Check OPENLESSON_API_KEY (or --api-key-file): it must be an active sk_/gsk_ key for this "
        f"base URL ({base_url}); create a new one in OpenLesson if it was revoked or expired."
    )

    checks: list[Check] = []
    try:
        with OpenLessonClient(settings) as client:
            blocks = client.list_blocks(probe_ws)
    except AuthError as err:
        checks.append(Check("api", OK, f"{base_url} answers"))
        checks.append(
            key_check or Check.failed("key", f"key {api_key.prefix} refused: {err}", fix_key, EXIT_AUTH)
        )
        return checks
    except NotFoundError as err:
        checks.append(Check("api", OK, f"{base_url} answers"))
        checks.append(key_check or Check("key", OK, f"key {api_key.prefix} accepted"))
        if workspace:
            checks.append(
                Check.failed(
                    "workspace",
                    str(err),
                    "Check the id, and that this key's organization can see the workspace.",
                    EXIT_NOT_FOUND,
                )
            )
        return checks
    except NetworkError as err:
        checks.append(
            Check.failed(
                "api",
                f"{base_url} is not reachable: {err}",
                "Check the proxy and firewall too. Captures still spool and are delivered "
                "once the API answers.",
            )
        )
        checks.append(key_check or Check("key", WARN, "not checked: the API is not reachable", ""))
        return checks
    except ServerError as err:
        checks.append(
            Check.failed(
                "api",
                f"{base_url} answered with an error: {err}",
                "Try again later; check --base-url if it is a proxy's page.",
            )
        )
        checks.append(key_check or Check("key", WARN, "not checked: the API answered with an error", ""))
        return checks
    except ApiError as err:  # rate limited, validation: the server answers and knows the key
        checks.append(
            Check("api", WARN, f"{base_url} answers, with an error: {err}", "Try again in a minute.")
        )
        checks.append(key_check or Check("key", WARN, f"key {api_key.prefix} not confirmed: {err.code}", ""))
        return checks

    checks.append(Check("api", OK, f"{base_url} answers"))
    checks.append(key_check or Check("key", OK, f"key {api_key.prefix} accepted"))
    if key_check:  # the no-key probe was accepted?! only a sandbox or a proxy does that
        return checks
    if workspace:
        checks.append(Check("workspace", OK, f"{workspace} has {len(blocks)} block(s)"))
        if block:
            checks.append(_check_block(blocks, block, workspace))
    return checks


def _check_block(blocks, value: str, workspace: str) -> Check:
    try:
        from collector.api.targets import resolve_block
    except ImportError as exc:
        return Check.failed(
            "block", f"not available: the block lookup cannot load ({exc})", "Reinstall the collector."
        )
    try:
        found = resolve_block(blocks, value, workspace)
    except CollectorError as err:
        fix = (
            f"Run `collector blocks --workspace {workspace}` and pass a block id or title."
            if err.exit_code == EXIT_NOT_FOUND
            else "Pass --block with one id."
        )
        return Check.failed("block", str(err), fix, err.exit_code)
    return Check("block", OK, f"{found.id} {found.title!r} ({found.status})")


def check_pause() -> Check:
    """A `collector pause` left on removes screenshots from every later session: say so, with since when."""
    try:
        from collector.capture.pause import pause_notice

        notice = pause_notice()
    except CollectorError as err:
        return Check("pause", WARN, f"cannot read the pause state: {err}", "Check XDG_RUNTIME_DIR.")
    if notice:
        return Check("pause", WARN, notice, "Run `collector resume` before the session.")
    return Check("pause", OK, "screen capture is not paused")


# ---- sources ------------------------------------------------------------------------------------------


def check_sources(checks: list[Check]) -> Check:
    by_name = {c.name: c for c in checks}

    def ok(name: str) -> bool:
        return name in by_name and by_name[name].status == OK

    available = [
        label
        for name, label in (
            ("lsl", "an LSL EEG stream"),
            ("bluetooth", "a Muse over Bluetooth"),
            ("display", "screenshots"),
        )
        if ok(name)
    ]
    if not available:
        return Check.failed(
            "sources",
            "nothing to capture: no LSL EEG stream, no Bluetooth for a Muse, no display",
            "Start the headset's LSL stream, or connect a Bluetooth adapter for a Muse, or run where a "
            "display exists (see the lsl, bluetooth and display lines above).",
            EXIT_NO_SOURCE,
        )
    return Check("sources", OK, "can capture " + ", ".join(available))
