"""Where the API key, the base URL and the spool live: environment and flags, read at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collector.api import redaction
from collector.errors import UsageError

DEFAULT_BASE_URL = "https://openlesson.academy"
ENV_API_KEY = "OPENLESSON_API_KEY"
ENV_BASE_URL = "OPENLESSON_BASE_URL"
ENV_SPOOL_DIR = "COLLECTOR_SPOOL_DIR"


class ApiKey:
    """An API key that never shows itself: repr, str and f-strings give the prefix at most."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise UsageError(f"The API key is empty. Set {ENV_API_KEY} or pass --api-key-file PATH.")
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            # A second line or a pasted control character would end up quoted in HTTP errors.
            raise UsageError(
                "The API key contains spaces, line breaks or control characters; the key file (or "
                f"{ENV_API_KEY}) must hold the key alone, on one line."
            )
        self._value = value
        redaction.register(value, self.prefix)  # masked in every log record from now on

    def reveal(self) -> str:
        """The secret itself, for the Authorization header only."""
        return self._value

    @property
    def prefix(self) -> str:
        head = self._value.split("_", 1)[0] + "_" if "_" in self._value[:5] else ""
        return f"{head}…"

    def __repr__(self) -> str:
        return f"ApiKey({self.prefix})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # never pickled into a file by accident
        raise TypeError("ApiKey cannot be pickled")


def resolve_api_key(api_key_file: str | None = None, env: Mapping[str, str] | None = None) -> ApiKey:
    environ = os.environ if env is None else env
    if api_key_file:
        try:
            text = Path(api_key_file).expanduser().read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"The API key file {api_key_file} is not UTF-8 text. It must hold the key alone."
            ) from None
        except OSError as exc:
            raise UsageError(
                f"Cannot read the API key file {api_key_file} ({exc.strerror or exc}). "
                "Check the path and its permissions."
            ) from None
        return ApiKey(text)
    value = environ.get(ENV_API_KEY, "")
    if not value.strip():
        raise UsageError(
            f"No API key: set {ENV_API_KEY} or pass --api-key-file PATH "
            "(try `collector sandbox` for a local key)."
        )
    return ApiKey(value)


def resolve_base_url(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    environ = os.environ if env is None else env
    url = (flag or environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"The base URL {url!r} must start with http:// or https://.")
    return url


@dataclass(frozen=True, slots=True)
class ApiSettings:
    base_url: str
    api_key: ApiKey
    timeout_s: float = 30.0
