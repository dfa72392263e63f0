"""Profiles: built-in names, files, `extends`, overrides and clear errors."""

from __future__ import annotations

import pytest

from collector.errors import UsageError
from collector.profiles.profile import builtin_profiles, load_profile


def test_defaults_without_a_profile():
    p = load_profile(None)
    assert p.analysis.window_s == 2.0 and p.analysis.step_s == 0.5 and p.analysis.chunk_s == 5.0
    assert p.analysis.bands["gamma"] == (30.0, 44.0)
    assert p.screen.mode == "auto" and p.screen.interval_s == 5.0
    assert p.delivery.rate_per_min == 100


def test_every_builtin_profile_loads():
    names = builtin_profiles()
    assert {"muse-2016", "muse-2", "muse-s", "muse-s-athena", "lsl-generic"} <= set(names)
    assert {"muselsl", "openmuse", "brainflow-cyton", "brainflow-muse-s-athena"} <= set(names)
    for name in names:
        p = load_profile(name)
        assert p.device.kind in ("lsl", "muse", "brainflow")
        if p.device.kind == "brainflow":  # the board is one the installed BrainFlow knows
            from collector.devices.brainflow.boards import resolve_board

            assert resolve_board(p.device.board)[0] == p.device.board


def test_muse_profiles_name_eeg_and_aux_channels():
    p = load_profile("muse-2")
    assert p.device.kind == "muse"
    assert set(p.device.channels) >= {"TP9", "AF7", "AF8", "TP10"}
    assert not set(p.device.channels) & set(p.device.aux)


def test_file_extends_builtin_and_overrides(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(
        'extends = "muse-2"\n'
        '[session]\nworkspace = "a3090000-0000-4000-8000-000000000001"\n'
        "[screen]\ninterval_s = 10\nredact = [[0, 0, 100, 50]]\n"
        "[analysis]\nbands = { alpha = [8, 12] }\n"
    )
    p = load_profile(str(path))
    assert p.device.kind == "muse"  # from the parent
    assert p.screen.interval_s == 10 and p.screen.redact == ((0, 0, 100, 50),)
    assert p.analysis.bands == {"alpha": (8.0, 12.0)}  # bands replace, not merge
    assert p.session.workspace.startswith("a309")
    q = p.with_overrides(screen={"interval_s": 2.5, "mode": None})
    assert q.screen.interval_s == 2.5 and q.screen.mode == p.screen.mode


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[screen]\ninterval_s = -1\n", "screen.interval_s"),
        ("[screen]\nbogus = 1\n", "screen.bogus"),
        ("not toml = = 1", "not valid TOML"),
        ('extends = "no-such-profile"\n', "Unknown profile"),
    ],
)
def test_bad_profiles_give_one_line_errors(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_profile(str(path))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_builtins():
    with pytest.raises(UsageError, match="muse-2"):
        load_profile("nope")


def test_extends_loop_is_reported(tmp_path):
    (tmp_path / "a.toml").write_text(f'extends = "{tmp_path / "b.toml"}"\n')
    (tmp_path / "b.toml").write_text(f'extends = "{tmp_path / "a.toml"}"\n')
    with pytest.raises(UsageError, match="loop"):
        load_profile(str(tmp_path / "a.toml"))
