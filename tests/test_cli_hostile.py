"""``exec-analytics report`` over real HTTP from a server of our own whose executions carry hostile text.

The simulator's versions, callers and reasons are tame; this server answers ``listExecutions`` with the same
executions but with mathtext, markup, NUL and bidirectional controls in every free-text field.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from exec_analytics.cli import main
from exec_analytics.simulator import Workload

HOSTILE = '$\\frac{$<script>alert("x")</script>\x00\u202e\u2066'
TOKEN = "hostile-server-token-0042"
PERIOD = ["--start", "2026-11-10T00:00Z", "--end", "2026-11-12T00:00Z"]


def _executions(wl: Workload) -> tuple[str, list[dict[str, Any]]]:
    """The simulator's executions of one resource, newest first, with hostile versions, callers and reasons."""
    rid = wl.resources[2].rid
    g = wl.ground_truth(rid, "2026-11-08T00:00Z", "2026-11-12T00:00Z").sort_values("start_time", ascending=False)
    # Half of the last day runs a new version beside the old one, so the report compares them.
    late = (g["start_time"] >= pd.Timestamp("2026-11-11T00:00Z")).to_numpy() & (np.arange(len(g)) % 2 == 0)
    out = []
    for i, r in enumerate(g.itertuples(index=False)):
        e: dict[str, Any] = {
            "startTime": r.start_time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "duration": {"unit": r.duration_unit, "value": int(r.duration_value)},
            "status": r.status,
            "resourceRid": rid,
            "resourceVersion": f"9.9.9{HOSTILE}" if late[i] else r.resource_version,
            "traceOwningRid": r.trace_owning_rid,
            "foundryTraceId": r.foundry_trace_id,
        }
        if r.failure_reason is not None:
            e["failureReason"] = f"{r.failure_reason}{HOSTILE}"
        if r.caller_rid is not None:
            e["callerRid"] = f"{r.caller_rid}{HOSTILE}"
        out.append(e)
    return rid, out


class _Handler(BaseHTTPRequestHandler):
    executions: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"errorCode": "UNAUTHORIZED", "errorName": "MissingCredentials", "parameters": {}})
            return
        start, end = pd.Timestamp(body["startTime"]), pd.Timestamp(body["endTime"])
        rows = [e for e in self.executions if start <= pd.Timestamp(e["startTime"]) < end]
        offset = int(body.get("pageToken", "v1.0").removeprefix("v1."))
        size = min(int(body.get("pageSize", 100)), 100)
        page: dict[str, Any] = {"data": rows[offset : offset + size]}
        if offset + size < len(rows):
            page["nextPageToken"] = f"v1.{offset + size}"
        self._send(200, page)

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[tuple[str, str]]:
    rid, executions = _executions(Workload(seed=0))
    handler = type("Handler", (_Handler,), {"executions": executions})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rid
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("out_name", ["r.md", "r.html"])
def test_report_on_hostile_data_exits_0(
    out_name: str,
    hostile_server: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, rid = hostile_server
    monkeypatch.setenv("FOUNDRY_HOSTNAME", url)
    monkeypatch.setenv("FOUNDRY_TOKEN", TOKEN)
    out = tmp_path / out_name
    code = main(["report", rid, *PERIOD, "--out", str(out), "--no-progress", "--no-cache"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = out.read_text(encoding="utf-8")
    assert "9.9.9" in text and "frac{$" in text  # the new version is reported, its dollar signs as text
    assert not {"\x00", "\u202e", "\u2066"} & set(text + captured.out)
    assert "<script" not in text and TOKEN not in text + captured.out + captured.err
