"""`shoal deploy --wait`: follow the changed services until the deploy is decided.

Progress goes to stderr, one line per service whenever its picture changes (updated/total,
healthy, and each failing task with its last error and log lines); the verdict is the exit code
(0 converged, 1 failed — paused or rolled back, 3 timeout) and, with `--output json`, a report
on stdout for CI systems.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

CONVERGED, FAILED, TIMEOUT = 0, 1, 3
_DONE = {"converged"}
_FAILED = {"failed", "rolled_back"}
LOG_LINES = 2


def _versions(change: dict[str, Any]) -> tuple[int | None, int]:
    after = int(change["version"])
    if change["action"] == "create":
        return None, after
    if change["action"] == "update":
        return after - 1, after
    return after, after


class _Logs:
    """The last log lines of failing tasks, fetched once per task."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.seen: dict[str, list[str]] = {}

    def of(self, task_id: str) -> list[str]:
        if task_id not in self.seen:
            try:
                lines = [str(line["text"]) for line in self.api.logs(task_id, tail=LOG_LINES)]
            except Exception:
                lines = []
            self.seen[task_id] = lines
        return self.seen[task_id]


def _line(row: dict[str, Any], logs: _Logs) -> str:
    state = row["state"].replace("_", " ")
    text = (
        f"{row['name']}: {state}, {row['updated']}/{row['desired']} updated, "
        f"{row['ready']}/{row['desired']} ready"
    )
    if row.get("stale"):
        text += f", {row['stale']} old"
    if row.get("message"):
        text += f" — {row['message']}"
    for failing in row.get("failing", []):
        text += f"\n    {failing['name']} {failing['state']}: {failing['error'] or '?'}"
        for log in logs.of(failing["task"]):
            text += f"\n      | {log}"
    return text


def wait_for_deploy(
    api: Any, stack: str, plan: dict[str, Any], timeout: float, output: str, started: float
) -> int:
    changes = {s["name"]: s for s in plan["services"] if s["action"] not in ("unchanged", "remove")}
    deadline = time.monotonic() + timeout
    logs = _Logs(api)
    shown: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    verdict = CONVERGED
    while changes:
        status = api.stack_status(stack)
        rows = {r["name"]: r for r in status["services"] if r["name"] in changes}
        for name, row in sorted(rows.items()):
            line = _line(row, logs)
            if shown.get(name) != line:  # stderr: with --output json too (stdout is the report)
                click.echo(f"[{time.strftime('%H:%M:%S')}] {line}", err=True)
                shown[name] = line
        states = {r["state"] for r in rows.values()}
        if rows and states <= _DONE | _FAILED:
            verdict = FAILED if states & _FAILED else CONVERGED
            break
        if time.monotonic() > deadline:
            verdict = TIMEOUT
            break
        time.sleep(0.25)
    if output == "json":
        click.echo(json.dumps(_report(stack, changes, rows, verdict, started), indent=2))
    for name, row in sorted(rows.items()):
        if row["state"] in _FAILED:
            click.echo(f"error: {stack}/{name}: {row['message']}", err=True)
    if verdict == CONVERGED:
        click.echo(f"stack {stack}: every service converged", err=True)
    elif verdict == TIMEOUT:
        waiting = sorted(n for n, r in rows.items() if r["state"] not in _DONE | _FAILED)
        click.echo(
            f"error: stack {stack}: not converged after {timeout:.0f}s "
            f"(still waiting for {', '.join(waiting)})",
            err=True,
        )
    return verdict


def _report(
    stack: str,
    changes: dict[str, dict[str, Any]],
    rows: dict[str, dict[str, Any]],
    verdict: int,
    started: float,
) -> dict[str, Any]:
    services = []
    for name, change in sorted(changes.items()):
        row = rows.get(name, {})
        before, after = _versions(change)
        update = row.get("update") or {}
        services.append(
            {
                "name": name,
                "action": change["action"],
                "version_before": before,
                "version_after": row.get("version", after),
                "state": row.get("state", "unknown"),
                "ready": row.get("ready", 0),
                "desired": row.get("desired", 0),
                "message": row.get("message", ""),
                "failing_tasks": row.get("failing", []),
                "update": update or None,
                "rollback_reason": update.get("message")
                if update.get("state", "").startswith("rollback")
                else None,
            }
        )
    return {
        "stack": stack,
        "result": {CONVERGED: "converged", FAILED: "failed", TIMEOUT: "timeout"}[verdict],
        "exit_code": verdict,
        "duration_s": round(time.time() - started, 2),
        "services": services,
    }
