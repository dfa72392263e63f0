"""A local OpenLesson API v2 server for trying the collector without an account, and for tests.

    from collector.sandbox import SandboxServer
    with SandboxServer(tmp_path, fail_503=0.1, seed=1) as sandbox:
        ...  # sandbox.base_url, sandbox.api_key, sandbox.workspace_id, sandbox.evidence()

`server` holds the app and the fault injection, `serve` the uvicorn thread (SandboxServer); `store`
the SQLite rows and artifact files under the data folder; `report` the deterministic performance
answer.
"""

from collector.sandbox.serve import SandboxServer
from collector.sandbox.server import faults_from_env

__all__ = ["SandboxServer", "faults_from_env"]
