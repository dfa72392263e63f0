"""`collector doctor`'s checks of this machine: Python, packages, the profile, liblsl and LSL streams,
Bluetooth for a Muse, the display, the screen pause, and whether anything at all can be captured.

The parts of the collector a check exercises are imported inside it, guarded: a broken install
(numpy or pydantic missing, no liblsl) is then a failed check with its fix, not a doctor that
cannot start.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from collector import __version__
from collector.capture.pause import pause_notice
from collector.commands._doctor_checks import FAIL, OK, WARN, Check
from collector.errors import EXIT_NO_SOURCE, EXIT_OK, EXIT_USAGE, CollectorError

REQUIRED_PACKAGES = ("pylsl", "pyxdf", "numpy", "scipy", "mss", "httpx", "pydantic", "pillow")
OPTIONAL_PACKAGES = ("muselsl", "bleak")
DIST_NAME = "openlesson-collector"

DISPLAY_TIMEOUT_S = 3.0
PORTAL_TIMEOUT_S = 5.0  # doctor's bound on the desktop portal's answer (a capture waits longer)

FIX_LIBLSL = (
    "Install liblsl: `conda install -c conda-forge liblsl`, or the package for your system from "
    "https://github.com/sccn/liblsl/releases; or point PYLSL_LIB at an existing liblsl.so/.dylib/.dll."
)
FIX_NO_DISPLAY = (
    "Screenshots are skipped with --screen auto (EEG still works). To capture screens, run inside the "
    "desktop session, or set DISPLAY=:0 and XAUTHORITY=<that session's Xauthority file> "
    "(for the lab service: see scripts/collector@.service)."
)


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
        lister = None
    else:
        lister = list_streams
    if lister is not None:
        streams = [
            (s.name, s.type, s.sfreq, s.channel_count, s.hostname)
            for s in lister(timeout=wait_s, with_labels=False)
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
    """Every screen backend tried once (x11, portal, grim), bounded in time (a dead X server hangs):
    which exist, and which one gave a real (not black, not empty) test frame."""
    screen = getattr(profile, "screen", None)
    wants_screen = getattr(screen, "mode", None) == "on"
    bad_status = FAIL if wants_screen else WARN
    bad_exit = EXIT_NO_SOURCE if wants_screen else EXIT_OK
    fix = FIX_NO_DISPLAY + (' Or set [screen] mode = "auto" in the profile.' if wants_screen else "")
    try:
        from collector.devices.screen.grabber import probe_backends
        from collector.devices.screen.settings import ScreenSettings
    except Exception as exc:
        return Check("display", bad_status, f"not available: the screen source cannot load ({exc})",
                     "Reinstall the collector (it needs mss and pillow).", bad_exit)  # fmt: skip

    wanted = getattr(screen, "backend", "auto") or "auto"
    outcome: dict[str, Any] = {}

    def probe() -> None:
        try:
            settings = ScreenSettings(
                monitor=getattr(screen, "monitor", "primary"), portal_timeout_s=PORTAL_TIMEOUT_S
            )
            outcome["results"] = probe_backends(settings)
        except CollectorError as err:
            outcome["error"] = str(err)
        except Exception as exc:  # reported, not raised
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    quiet = logging.getLogger("collector.devices.screen")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its warnings are for captures
    try:
        t = threading.Thread(target=probe, daemon=True, name="doctor-display-grab")
        t.start()
        t.join(DISPLAY_TIMEOUT_S + PORTAL_TIMEOUT_S)
    finally:
        quiet.setLevel(level)
    where = f"DISPLAY={os.environ['DISPLAY']}" if os.environ.get("DISPLAY") else "this desktop"
    results = outcome.get("results")
    if results is None:
        bound = DISPLAY_TIMEOUT_S + PORTAL_TIMEOUT_S
        reason = outcome.get("error") or f"cannot take a screenshot on {where}: no answer within {bound:g} s"
        return Check("display", bad_status, str(reason), fix, bad_exit)
    words = {"real": "real frame ", "black": "", "failed": "", "absent": "absent: "}
    summary = "; ".join(f"{name} {words[o]}{detail}".replace("  ", " ") for name, o, detail in results)
    usable = [(name, detail) for name, o, detail in results if o == "real" and wanted in ("auto", name)]
    if usable:
        name, size = usable[0]
        return Check(
            "display", OK, f"screenshots work through {name} ({size}) on {where}. Backends: {summary}"
        )
    only = [r for r in results if r[1] != "absent"]
    asked = f" for --screen-backend {wanted}" if wanted != "auto" else ""
    reason = f"no screen backend gives a real frame{asked}: {summary}"
    if not only:
        reason = results[0][2] if len(results) == 1 else summary
    if os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        fix = (
            "Check that the X server runs and that this user may use it (XAUTHORITY=<the session's "
            "Xauthority file>, or `xhost +SI:localuser:USER` in the session). Screenshots are skipped "
            "with --screen auto (EEG still works)."
        )
    elif os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XDG_SESSION_TYPE") == "wayland":
        fix = (
            "On Wayland: install xdg-desktop-portal with this desktop's backend (-gnome, -kde, or -wlr "
            "with -gtk) and run as the desktop user, or grim on wlroots desktops (sway, Hyprland). "
            "Screenshots are skipped with --screen auto (EEG still works)."
        )
    return Check("display", bad_status, reason, fix, bad_exit)


# ---- screen pause ------------------------------------------------------------------------------------


def check_pause() -> Check:
    """A `collector pause` left on removes screenshots from every later session: say so, with since when."""
    try:
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
