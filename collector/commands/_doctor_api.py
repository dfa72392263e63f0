"""`collector doctor`'s API checks: the API answers, the key is accepted, the workspace and the block
exist. The client is imported inside the check, guarded, as in _doctor_machine.py."""

from __future__ import annotations

import argparse
import uuid

from collector.api.settings import ApiKey, ApiSettings, resolve_api_key, resolve_base_url
from collector.commands._doctor_checks import OK, WARN, Check
from collector.errors import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    ApiError,
    AuthError,
    CollectorError,
    NetworkError,
    NotFoundError,
    ServerError,
    UsageError,
)


def check_api(args: argparse.Namespace, workspace: str | None, block: str | None) -> list[Check]:
    try:
        base_url = resolve_base_url(args.base_url)
    except UsageError as err:
        return [Check.failed("api", str(err), "Fix --base-url or OPENLESSON_BASE_URL.", EXIT_USAGE)]
    try:
        from collector.api.client import OpenLessonClient
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
    write_error: AuthError | None = None  # the key may read but not add evidence
    try:
        with OpenLessonClient(settings) as client:
            try:
                blocks = client.list_blocks(probe_ws)
            finally:
                write_error = _write_refused(client, probe_ws) if key_check is None else None
    except AuthError as err:
        checks.append(Check("api", OK, f"{base_url} answers"))
        checks.append(
            key_check or Check.failed("key", f"key {api_key.prefix} refused: {err}", fix_key, EXIT_AUTH)
        )
        return checks
    except NotFoundError as err:
        checks.append(Check("api", OK, f"{base_url} answers"))
        checks.append(key_check or _key_ok(api_key.prefix, write_error))
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
    checks.append(key_check or _key_ok(api_key.prefix, write_error))
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


def _write_refused(client, workspace_id: str) -> AuthError | None:
    """The key's right to add evidence (`check_write_access`: nothing is stored); the AuthError
    when it has not (no `workspaces:write`), None when it has or the probe says nothing."""
    try:
        client.check_write_access(workspace_id)
    except AuthError as err:
        return err
    except CollectorError:
        return None
    return None


def _key_ok(prefix: str, write_error: AuthError | None) -> Check:
    if write_error is None:
        return Check("key", OK, f"key {prefix} accepted, may add evidence (workspaces:write)")
    return Check.failed(
        "key",
        f"key {prefix} may read but not add evidence: {write_error}",
        "Use a key with the workspaces:write scope (OpenLesson's default scopes include it); "
        "`run` and `replay` refuse this one before capturing (exit 3).",
        EXIT_AUTH,
    )
