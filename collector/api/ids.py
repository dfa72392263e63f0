"""Workspace and block ids: what a UUID looks like. Apart from api/models.py so that the commands
that only check an id (an offline replay, the target pick) need not import pydantic."""

from __future__ import annotations

import re

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value))
