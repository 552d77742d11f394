"""Property-based fuzzing of the served OpenAPI document (schemathesis): never a 5xx.

Streaming endpoints (watches, followed logs) never end by design: the tests that use them
cover them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.cluster import Cluster
from tests.e2e.test_one_node import project


def test_no_server_errors_under_fuzzing(one_node: Cluster, tmp_path: Path) -> None:
    with one_node.client() as api:  # something to find, so not every request is a 404
        api.deploy(
            "shop",
            project(
                tmp_path,
                "name: shop\nservices:\n  web:\n    image: x\n    command: [sleep, '60']\n",
            ),
        )
    token = (one_node.data / "token").read_text().strip()
    st = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"http://{one_node.addr}/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "60",
            "--exclude-path-regex",
            "watch|logs",
            "--seed",
            "20261125",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout
