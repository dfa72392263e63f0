"""Which block a capture goes to: id, exact title, ambiguous titles (pure logic)."""

from __future__ import annotations

import pytest

from collector.api.models import Block
from collector.api.targets import pick_target, resolve_block
from collector.errors import NotFoundError, UsageError
from collector.profiles.profile import load_profile

WS = "a3090000-0000-4000-8000-000000000001"


def _block(i: int, title: str) -> Block:
    return Block(id=f"2f1c0000-0000-4000-8000-00000000000{i}", title=title, created_at="2026-11-23T00:00:00Z")


BLOCKS = [_block(1, "Warm-up"), _block(2, "Scales"), _block(3, "Scales"), _block(4, "Piece")]


def test_block_by_id_and_by_exact_title():
    assert resolve_block(BLOCKS, BLOCKS[3].id.upper(), WS) is BLOCKS[3]
    assert resolve_block(BLOCKS, "Warm-up", WS) is BLOCKS[0]


def test_ambiguous_title_lists_the_matches():
    with pytest.raises(UsageError) as info:
        resolve_block(BLOCKS, "Scales", WS)
    assert BLOCKS[1].id in str(info.value) and BLOCKS[2].id in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value", ["cool-down", "2f1c0000-0000-4000-8000-000000000009"])
def test_unknown_block_is_not_found_with_the_fix(value):
    with pytest.raises(NotFoundError) as info:
        resolve_block(BLOCKS, value, WS)
    assert info.value.exit_code == 4 and f"collector blocks --workspace {WS}" in str(info.value)


def test_target_from_flags_then_profile_then_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("COLLECTOR_WORKSPACE", raising=False)
    monkeypatch.delenv("COLLECTOR_BLOCK", raising=False)
    with pytest.raises(UsageError, match="--workspace"):
        pick_target(None, None, load_profile(None))
    monkeypatch.setenv("COLLECTOR_WORKSPACE", WS)
    monkeypatch.setenv("COLLECTOR_BLOCK", "Piece")
    assert pick_target(None, None, load_profile(None)) == (WS, "Piece")
    path = tmp_path / "p.toml"
    other = "b3090000-0000-4000-8000-000000000002"
    path.write_text(f'[session]\nworkspace = "{other}"\nblock = "Scales"\n')
    assert pick_target(None, None, load_profile(str(path))) == (other, "Scales")
    assert pick_target(WS.upper(), "Warm-up", load_profile(str(path))) == (WS, "Warm-up")
    with pytest.raises(UsageError, match="not a valid id"):
        pick_target("nope", None, load_profile(None))


def test_title_matches_case_insensitively_when_unique():
    assert resolve_block(BLOCKS, "WARM-UP", WS) is BLOCKS[0]
    assert resolve_block(BLOCKS, "  piece ", WS) is BLOCKS[3]
    with pytest.raises(UsageError, match="matches 2 blocks"):
        resolve_block(BLOCKS, "scales", WS)


def test_near_miss_suggests_the_closest_titles():
    with pytest.raises(NotFoundError) as info:
        resolve_block(BLOCKS, "Warmup", WS)
    assert "Did you mean 'Warm-up'?" in str(info.value) and info.value.exit_code == 4
    with pytest.raises(NotFoundError) as info:
        resolve_block(BLOCKS, "Completely different", WS)
    assert "Did you mean" not in str(info.value)
