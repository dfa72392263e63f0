"""The unit table (collector/core/units.py): every spelling of a voltage to µV, the rest kept."""

from __future__ import annotations

import pytest

from collector.core.units import MICROVOLTS, below_precision, channel_factors, stream_scale, unit_scale


@pytest.mark.parametrize(
    ("declared", "factor"),
    [
        ("V", 1e6), ("volts", 1e6), ("Volt", 1e6),
        ("mV", 1e3), ("millivolts", 1e3),
        ("uV", 1.0), ("µV", 1.0), ("μV", 1.0), ("microvolts", 1.0), ("MicroVolts", 1.0),
        (b"\xb5V".decode("latin-1"), 1.0), (b"\xb5V".decode("utf-8", "replace"), 1.0),
        ("µV".encode().decode("latin-1"), 1.0),
        ("nV", 1e-3), ("nanovolts", 1e-3),
        ("0", 1e6), ("-3", 1e3), ("-6", 1.0), ("-9", 1e-3),  # MNE's power-of-ten multipliers of V
        ("", 1.0), (None, 1.0), ("  ", 1.0),
    ],
)  # fmt: skip
def test_every_spelling_of_a_voltage_converts_to_microvolts(declared, factor):
    scale = unit_scale(declared)
    assert scale.known_voltage and scale.unit == MICROVOLTS
    assert scale.factor == pytest.approx(factor, rel=1e-12)


@pytest.mark.parametrize("declared", ["a.u.", "mmHg", "g", "dps", "degC", "%", "uS"])
def test_a_unit_that_is_not_a_voltage_is_kept_and_flagged(declared):
    scale = unit_scale(declared)
    assert not scale.known_voltage and scale.unit == declared and scale.factor == 1.0


def test_a_stream_takes_its_first_declared_unit_and_names_channels_that_differ():
    scale, others = stream_scale(["", "0", "0", "-6"])
    assert scale.factor == 1e6 and others == ["-6"]
    assert channel_factors(["0", "0", "-6", "a.u."], 5) == [1e6, 1e6, 1.0, 1.0, 1.0]


def test_a_non_zero_signal_below_the_artifacts_precision_is_a_unit_problem():
    assert below_precision(2e-5)  # 20 µV sent as volts and taken as µV: would be 0.000
    assert not below_precision(0.0) and not below_precision(0.002) and not below_precision(float("nan"))
