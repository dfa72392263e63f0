"""Profiles: TOML presets validated once into an immutable settings object.

A profile is a built-in name (a file in the `profiles` package, e.g. `muse-2`) or a path to a
TOML file. A file may start from another profile with `extends = "NAME"`; its tables then
override that profile's key by key. Command-line options override the profile; the core never
reads files or the environment itself.

    extends = "muse-2"
    [session]   workspace, block                 (lab machines: no flags needed)
    [device]    name, model, kind (muse|lsl|brainflow), sfreq, channels, aux, unit, address,
                aux_sensors (auto|off|acc,gyro,ppg: the headset's motion and PPG streams),
                board, board_preset, serial_port, mac_address, serial_number (BrainFlow)
    [stream]    name, type, source_id, markers   (LSL selectors; markers = auto|NAME|off;
                a name ending in * matches every name starting with the rest: "Muse*")
    [analysis]  window_s, step_s, segment_s, chunk_s, bands = {alpha = [8, 13], ...}
    [screen]    mode (auto|on|off), interval_s, max_width, format, quality, keepalive_s,
                monitor, redact = [[x, y, w, h], ...], backend (auto|x11|portal|grim)
    [delivery]  rate_per_min, spool_max_bytes, flush_timeout_s, retention_days
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collector.core.bandpower import BandSettings
from collector.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionSection(_Section):
    workspace: str | None = None
    block: str | None = None


class DeviceSection(_Section):
    name: str = "LSL stream"
    model: str = ""
    kind: Literal["lsl", "muse", "brainflow"] = "lsl"
    sfreq: float | None = None
    channels: tuple[str, ...] = ()
    aux: tuple[str, ...] = ()
    unit: str = "microvolts"
    address: str | None = None
    aux_sensors: str = "auto"  # accelerometer, gyroscope, PPG streams: auto | off | "acc,gyro,ppg"
    # BrainFlow (kind = "brainflow"): BoardIds name or id, and BrainFlowInputParams fields.
    board: str | None = None
    board_preset: str | None = None
    serial_port: str | None = None
    mac_address: str | None = None
    serial_number: str | None = None
    board_file: str | None = None  # PLAYBACK_FILE_BOARD: the file (BrainFlowInputParams.file)
    master_board: str | None = None  # PLAYBACK_FILE_BOARD: the board that recorded it
    board_config: tuple[str, ...] = ()  # BoardShim.config_board commands (e.g. "old_timestamps")


class StreamSection(_Section):
    name: str | None = None
    type: str = "EEG"
    source_id: str | None = None
    markers: str = "auto"  # a marker stream to carry as events: auto (same host), a name, or off


DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 44.0),
}


class AnalysisSection(_Section):
    window_s: float = Field(2.0, gt=0)
    step_s: float = Field(0.5, gt=0)
    segment_s: float = Field(1.0, gt=0)
    # One chunk: 0.5 s (a request per half second) to 10 min (under the API's artifact size at
    # Muse rates); outside, 1e308 overflowed the sample count and 0.001 made one item per sample.
    chunk_s: float = Field(5.0, ge=0.5, le=600, allow_inf_nan=False)
    bands: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_BANDS))

    def band_settings(self) -> BandSettings:
        """The core's settings for band powers and quality flags (`collector.core.bandpower`)."""
        bands = tuple((name, lo, hi) for name, (lo, hi) in self.bands.items())
        return BandSettings(window_s=self.window_s, step_s=self.step_s, segment_s=self.segment_s, bands=bands)


class ScreenSection(_Section):
    mode: Literal["auto", "on", "off"] = "auto"
    interval_s: float = Field(5.0, gt=0)
    max_width: int = Field(1920, gt=0)
    format: Literal["jpeg", "webp", "png"] | None = None  # None: the screen source's measured default
    quality: int | None = Field(None, ge=1, le=100)
    keepalive_s: float = Field(60.0, gt=0)
    monitor: int | Literal["all", "primary"] = "primary"
    redact: tuple[tuple[int, int, int, int], ...] = ()
    backend: Literal["auto", "x11", "portal", "grim"] = "auto"  # collector.devices.screen.grabber


class DeliverySection(_Section):
    rate_per_min: float = Field(100.0, gt=0, le=120)
    spool_max_bytes: int = Field(2_000_000_000, gt=0)
    flush_timeout_s: float = Field(30.0, ge=0)
    # Local record of delivered captures, 0 keeps nothing; strict: `true` is not a day, `inf` not a term.
    retention_days: float = Field(30.0, ge=0, allow_inf_nan=False, strict=True)


class Profile(_Section):
    name: str = "default"
    session: SessionSection = SessionSection()
    device: DeviceSection = DeviceSection()
    stream: StreamSection = StreamSection()
    analysis: AnalysisSection = AnalysisSection()
    screen: ScreenSection = ScreenSection()
    delivery: DeliverySection = DeliverySection()

    def with_overrides(self, flags: dict[str, str] | None = None, **sections: dict[str, Any]) -> Profile:
        """A copy with `section={key: value}` overrides; None values are ignored (flag not given).

        `flags` names the command-line option of each `section.key` (e.g. "analysis.chunk_s":
        "--chunk-seconds"): a bad value given there is reported against the option, not the profile.
        Raises UsageError for an invalid value.
        """
        data = self.model_dump()
        given: dict[str, str] = {}
        for section, values in sections.items():
            data[section].update({k: v for k, v in values.items() if v is not None})
            given.update({f"{section}.{k}": (flags or {}).get(f"{section}.{k}", "") for k, v in values.items()
                          if v is not None})  # fmt: skip
        return _validate(data, f"profile {self.name} with command-line options", given)


def builtin_profiles() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("collector.profiles").iterdir() if p.name.endswith(".toml")
    )


def _read_toml(name_or_path: str) -> tuple[dict[str, Any], str]:
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"Profile {path} is not UTF-8 text. Save it as UTF-8.") from None
        except OSError as exc:
            raise UsageError(f"Cannot read profile {path} ({exc.strerror or exc}). Check the path.") from None
        label = str(path)
    else:
        res = resources.files("collector.profiles") / f"{name_or_path}.toml"
        if not res.is_file():
            raise UsageError(
                f"Unknown profile {name_or_path!r}. Built-in profiles: {', '.join(builtin_profiles())}; "
                "or pass a path to a .toml file."
            )
        text = res.read_text(encoding="utf-8")
        label = name_or_path
    try:
        return tomllib.loads(text), label
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"Profile {label} is not valid TOML ({exc}). Fix the file.") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "bands":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(data: dict[str, Any], label: str, flags: dict[str, str] | None = None) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # A union's error names its member (screen.monitor.int): the option is the field's.
        option = next(
            (o for k, o in (flags or {}).items() if o and (where == k or where.startswith(k + "."))), None
        )
        if option:  # the bad value came from the command line: name the option
            value = first["input"]
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            raise UsageError(f"{option} {shown} is invalid: {first['msg']}. Fix the option.") from None
        raise UsageError(f"Invalid setting {where} in {label}: {first['msg']}. Fix the profile.") from None


def load_profile(name_or_path: str | None) -> Profile:
    """The built-in defaults, or a profile by name or path (following `extends`)."""
    if not name_or_path:
        return Profile()
    data: dict[str, Any] = {}
    seen: list[str] = []
    current: str | None = name_or_path
    label = name_or_path
    while current:
        if current in seen:
            raise UsageError(f"Profile {name_or_path} extends itself in a loop ({' -> '.join(seen)}).")
        seen.append(current)
        layer, layer_label = _read_toml(current)
        if current == name_or_path:
            label = layer_label
        current = layer.pop("extends", None)
        data = _merge(layer, data)
    data.setdefault("name", Path(name_or_path).stem)
    return _validate(data, f"profile {label}")
