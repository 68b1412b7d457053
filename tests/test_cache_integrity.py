"""The history checks itself: damaged files, clock skew, sources, one identity, format migration, structure."""

from __future__ import annotations

import ast
import http.server
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from test_loader import assert_same_rows

from exec_analytics import CacheError, ExecutionCache, FoundryClient, load_executions
from exec_analytics.cache import FORMAT_VERSION, origin
from exec_analytics.cache.manifest import digest
from exec_analytics.cache.storage import LocalStorage
from exec_analytics.simulator import SimulatorServer, Workload

D = pd.Timedelta(days=1)
PACKAGE = Path(__file__).resolve().parents[1] / "exec_analytics"


@pytest.fixture
def clocked(make_sim: Callable[..., SimulatorServer], tmp_path: Path) -> tuple[SimulatorServer, ExecutionCache]:
    srv = make_sim()
    return srv, ExecutionCache(tmp_path / "history", clock=srv.clock.now)


def _client(srv: SimulatorServer, url: str | None = None) -> FoundryClient:
    return FoundryClient(hostname=url or srv.url, token=srv.token, backoff_base=0.005, backoff_cap=0.05)


def _part(cache: ExecutionCache, rid: str, day: pd.Timestamp) -> Path:
    return cache.path / "executions" / f"resource={rid}" / f"date={day:%Y-%m-%d}" / "part-0.parquet"


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------------------
# Damaged partitions
# --------------------------------------------------------------------------------------------------------


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a data page: the footer still parses
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    "deleted": lambda part, other: part.unlink(),
    "replaced": lambda part, other: shutil.copyfile(other, part),  # a valid file, of another day
    "corrupted": lambda part, other: _flip_a_byte(part),
    "truncated": lambda part, other: part.write_bytes(part.read_bytes()[:1000]),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_partition_is_named_offline_and_fetched_again_with_a_client(
    damage: str,
    clocked: tuple[SimulatorServer, ExecutionCache],
    workload: Workload,
    sim_now: pd.Timestamp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    start, end = sim_now - 4 * D, sim_now - D
    truth = workload.ground_truth(rid, start, end, as_of=sim_now)
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
    part = _part(cache, rid, sim_now - 3 * D)
    DAMAGE[damage](part, _part(cache, rid, sim_now - 2 * D))

    # Without a server: an error naming the file, from a read and from a load alike; never fewer rows.
    with pytest.raises(CacheError, match=str(part)):
        cache.read(rid)
    _offline(monkeypatch)
    with pytest.raises(CacheError, match=str(part)):
        load_executions(rid, start, end, cache=cache, progress=False)
    # Days that are intact still read.
    assert_same_rows(cache.read(rid, sim_now - 2 * D, end), truth[truth["start_time"] >= sim_now - 2 * D])

    # With a client: that day, and only that day, is fetched again.
    with _client(srv) as client:
        df = load_executions(rid, start, end, client=client, cache=cache, progress=False)
    day = sim_now - 3 * D
    assert df.attrs["cache"]["fetched"] == [[rid, day.isoformat(), (day + D).isoformat()]]
    assert_same_rows(df, truth)
    assert_same_rows(cache.read(rid), truth)


def test_refresh_repairs_a_damaged_partition(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[1]
    start, end = sim_now - 3 * D, sim_now - D
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
        _flip_a_byte(_part(cache, rid, sim_now - 2 * D))
        df = load_executions(rid, start, end, client=client, cache=cache, refresh=True, progress=False)
    truth = workload.ground_truth(rid, start, end, as_of=sim_now)
    assert_same_rows(df, truth)
    assert_same_rows(cache.read(rid), truth)


def test_a_damaged_day_outside_the_window_is_not_touched(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    with _client(srv) as client:
        load_executions(rid, sim_now - 3 * D, sim_now - D, client=client, cache=cache, progress=False)
        _flip_a_byte(_part(cache, rid, sim_now - 3 * D))
        before = srv.request_count
        df = load_executions(rid, sim_now - 2 * D, sim_now - D, client=client, cache=cache, progress=False)
    assert srv.request_count == before and df.attrs["cache"]["fetched"] == []
    assert_same_rows(df, workload.ground_truth(rid, sim_now - 2 * D, sim_now - D, as_of=sim_now))


# --------------------------------------------------------------------------------------------------------
# Clock skew and sources
# --------------------------------------------------------------------------------------------------------


def test_coverage_fetched_in_the_future_is_provisional_with_a_warning(
    fresh_sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp, tmp_path: Path
) -> None:
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    ahead = ExecutionCache(tmp_path / "h", clock=lambda: sim_now + 3 * D)  # a clock three days fast
    on_time = ExecutionCache(tmp_path / "h", clock=fresh_sim.clock.now)
    with _client(fresh_sim) as client:
        load_executions(rid, start, end, client=client, cache=ahead, progress=False)
        assert on_time.coverage(rid)["settled_until"].isna().all()
        with pytest.warns(RuntimeWarning, match="after the cache's clock says it is now.*fetched again"):
            df = load_executions(rid, start, end, client=client, cache=on_time, progress=False)
        assert df.attrs["cache"]["fetched"] == [[rid, start.isoformat(), end.isoformat()]]
        # Recorded again by a sane clock: settled, and served without a request from now on.
        assert list(on_time.coverage(rid)["fetched_at"]) == [sim_now]
        before = fresh_sim.request_count
        again = load_executions(rid, start, end, client=client, cache=on_time, progress=False)
    assert fresh_sim.request_count == before
    assert_same_rows(again, workload.ground_truth(rid, start, end, as_of=sim_now))


@pytest.mark.parametrize("other", ["host", "port"])
def test_a_settled_window_read_with_a_client_of_another_foundry_fails(
    other: str, clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
    assert cache.coverage(rid)["settled_until"].notna().all()
    # Nothing needs fetching, so a server that does not even listen proves no request is made.
    url = f"http://localhost:{srv.port}" if other == "host" else "http://127.0.0.1:9"
    with _client(srv, url) as client, pytest.raises(CacheError, match=rf"fetched from 127\.0\.0\.1:{srv.port}"):
        load_executions(rid, start, end, client=client, cache=cache, progress=False)


def test_origin_spells_out_host_and_port() -> None:
    assert origin("https://acme.palantirfoundry.com") == "acme.palantirfoundry.com:443"
    assert origin("http://127.0.0.1:8765") == "127.0.0.1:8765"
    assert origin("http://[::1]:8765/prefix") == "[::1]:8765"


# --------------------------------------------------------------------------------------------------------
# One identity, in the loader and in the cache
# --------------------------------------------------------------------------------------------------------

RID = "ri.function-registry.main.function.abc"


def _execution(duration_ms: int) -> dict[str, Any]:
    return {
        "startTime": "2026-11-18T12:00:00.000Z",
        "duration": {"value": duration_ms, "unit": "MILLISECONDS"},
        "status": "SUCCEEDED",
        "resourceRid": RID,
        "resourceVersion": "1.0.0",
        "traceOwningRid": RID,
        "foundryTraceId": "t-1",
    }


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``server.pages`` in order along the token chain, each execution only inside the asked window."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        request = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pages: list[list[dict[str, Any]]] = self.server.pages  # type: ignore[attr-defined]
        token = request.get("pageToken")
        index = int(token[3:]) if token else 0
        lo, hi = pd.Timestamp(request["startTime"]), pd.Timestamp(request["endTime"])
        body: dict[str, Any] = {"data": [e for e in pages[index] if lo <= pd.Timestamp(e["startTime"]) < hi]}
        if index + 1 < len(pages):
            body["nextPageToken"] = f"v1.{index + 1}"
        data = orjson.dumps(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_same_execution_a_millisecond_apart_is_one_row_in_the_loader_and_the_cache(
    scripted: http.server.ThreadingHTTPServer, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    window = ("2026-11-18T00:00Z", "2026-11-19T00:00Z")
    scripted.pages = [[_execution(1000)], [_execution(1001)]]  # type: ignore[attr-defined]
    with FoundryClient(hostname=url, token="t") as client:
        df = load_executions(RID, *window, client=client, cache=False, workers=1, progress=False)
        assert df["duration_s"].tolist() == [1.001]  # the later page's copy
        assert df.attrs["duplicates_dropped"] == 1

        cache = ExecutionCache(tmp_path / "h", clock=lambda: pd.Timestamp("2026-11-25T00:00Z"))
        scripted.pages = [[_execution(1000)]]  # type: ignore[attr-defined]
        first = load_executions(RID, *window, client=client, cache=cache, progress=False)
        scripted.pages = [[_execution(1001)]]  # type: ignore[attr-defined]
        again = load_executions(RID, *window, client=client, cache=cache, refresh=True, progress=False)
    assert first["duration_s"].tolist() == [1.0]
    assert again["duration_s"].tolist() == [1.001]  # the newer answer replaced the stored copy
    assert cache.read(RID)["duration_s"].tolist() == [1.001]


# --------------------------------------------------------------------------------------------------------
# Format migration
# --------------------------------------------------------------------------------------------------------


def _as_format(path: Path, version: int) -> None:
    """Rewrite a cache the way format 1 or 2 left it: manifests inside the data tree, files without
    ``version_key`` (partition format 1); format 1 also had no file records and sources without a port."""
    for manifest in (path / "_meta").rglob("resource=*.json"):
        store = manifest.parent.relative_to(path / "_meta")
        doc = orjson.loads(manifest.read_bytes())
        files = {}
        for day in list(doc["files"]):
            part = path / store / manifest.stem / f"date={day}" / "part-0.parquet"
            table = pq.read_table(part).drop_columns(["version_key"])
            pq.write_table(table.replace_schema_metadata({b"exec_analytics.cache_format": b"1"}), part)
            data = part.read_bytes()
            rows = table.num_rows
            files[day] = [{"rows": rows, "bytes": len(data), "blake2b": digest(data)}]
        doc["files"] = files
        doc["format_version"] = version
        if version == 1:
            del doc["files"]
            doc["source"] = doc["source"].rsplit(":", 1)[0]
        (path / store / manifest.stem / "_coverage.json").write_bytes(orjson.dumps(doc))
        manifest.unlink()
    (path / "_cache.json").write_bytes(orjson.dumps({"format_version": version}))


def test_a_format_1_cache_is_migrated_and_a_file_damaged_before_is_fetched_again(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    start, end = sim_now - 4 * D, sim_now - D
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
    _as_format(cache.path, 1)
    damaged = _part(cache, rid, sim_now - 2 * D)
    damaged.write_bytes(b"not parquet")

    migrated = ExecutionCache(cache.path, clock=srv.clock.now)
    coverage = migrated.coverage(rid)  # any use migrates
    assert orjson.loads((cache.path / "_cache.json").read_bytes())["format_version"] == FORMAT_VERSION
    # The day whose file no longer reads is no longer claimed.
    assert list(zip(coverage["start"], coverage["end"], strict=True)) == [(start, sim_now - 2 * D)]
    with _client(srv) as client:  # the host-only source of format 1 matches this host on any port
        df = load_executions(rid, start, end, client=client, cache=migrated, progress=False)
    assert df.attrs["cache"]["fetched"] == [[rid, (sim_now - 2 * D).isoformat(), (sim_now - D).isoformat()]]
    truth = workload.ground_truth(rid, start, end, as_of=sim_now)
    assert_same_rows(df, truth)
    assert_same_rows(migrated.read(rid), truth)


def test_a_format_2_cache_is_migrated_even_when_the_migration_is_killed_halfway(
    clocked: tuple[SimulatorServer, ExecutionCache],
    workload: Workload,
    sim_now: pd.Timestamp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, cache = clocked
    rids = workload.resource_rids[:3]
    start, end = sim_now - 4 * D, sim_now - D
    with _client(srv) as client:
        expected = load_executions(rids, start, end, client=client, cache=cache, progress=False)
    _as_format(cache.path, 2)
    with pytest.raises(pl.exceptions.PolarsError):  # what format 3 fixes: metadata inside the data tree
        pl.scan_parquet(cache.path / "executions", hive_partitioning=True).collect()

    # The first migration dies after a few writes (as a kill would leave it), the second completes it.
    real_write = LocalStorage.write
    writes: list[str] = []

    def dying_write(self: LocalStorage, key: str, data: bytes) -> None:
        if len(writes) == 7:
            raise KeyboardInterrupt("killed while migrating")
        writes.append(key)
        real_write(self, key, data)

    monkeypatch.setattr(LocalStorage, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        ExecutionCache(cache.path).coverage(rids[0])
    monkeypatch.setattr(LocalStorage, "write", real_write)
    assert any(k.endswith(".parquet") for k in writes) and any(k.startswith("_meta/") for k in writes)
    assert orjson.loads((cache.path / "_cache.json").read_bytes())["format_version"] == 2

    migrated = ExecutionCache(cache.path, clock=srv.clock.now)
    with _client(srv) as client:
        before = srv.request_count
        df = load_executions(rids, start, end, client=client, cache=migrated, progress=False)
    assert srv.request_count == before  # nothing was lost: the whole window is still settled
    assert orjson.loads((cache.path / "_cache.json").read_bytes())["format_version"] == FORMAT_VERSION
    assert_same_rows(df, expected)
    assert not list(cache.path.rglob("_coverage.json"))
    via_polars = pl.scan_parquet(cache.path / "executions", hive_partitioning=True).collect()
    assert via_polars.height == len(expected) and via_polars["version_key"].null_count() == 0


# --------------------------------------------------------------------------------------------------------
# Structure: the loader uses the cache's public surface only; no module reaches into another's privates
# --------------------------------------------------------------------------------------------------------

MINE = [
    PACKAGE / "loader.py",
    PACKAGE / "schema.py",
    PACKAGE / "decode.py",
    PACKAGE / "files.py",
    *sorted((PACKAGE / "cache").glob("*.py")),
]


@pytest.mark.parametrize("path", MINE, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_private_name_of_another_object_or_module_is_used(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name}:{node.lineno} imports private {private} from {node.module}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            assert isinstance(owner, ast.Name) and owner.id in ("self", "cls"), (
                f"{path.name}:{node.lineno} reaches into {ast.unparse(node)}"
            )


def test_the_cache_has_one_public_load_and_no_base_classes() -> None:
    assert ExecutionCache.__bases__ == (object,)
    assert callable(ExecutionCache.load)
    for gone in ("_lock", "_plan", "_check_source", "_commit", "_read_plan"):
        assert not hasattr(ExecutionCache, gone), gone


def test_a_killed_writers_two_states_are_settled_by_the_next_load(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    start, end = sim_now - 3 * D, sim_now - D
    empty = ("2020-01-01T00:00Z", "2020-01-02T00:00Z")
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
        load_executions(rid, *empty, client=client, cache=cache, progress=False)  # covered, no file
    path = cache.path / "_meta" / "executions" / f"resource={rid}.json"
    doc = orjson.loads(path.read_bytes())
    day = f"{sim_now - 2 * D:%Y-%m-%d}"
    kept = doc["files"][day][0]
    # As writers killed between their two manifest writes leave them: the file on disk is one of two states.
    fake = {"rows": 1, "bytes": 10, "blake2b": "0" * 32}
    doc["files"][day] = [fake, kept]
    doc["files"]["2020-01-01"] = [None, fake]
    path.write_bytes(orjson.dumps(doc))
    with _client(srv) as client:
        before = srv.request_count
        df = load_executions(rid, start, end, client=client, cache=cache, progress=False)
        nothing = load_executions(rid, *empty, client=client, cache=cache, progress=False)
    assert srv.request_count == before and nothing.empty
    files = orjson.loads(path.read_bytes())["files"]
    assert files[day] == [kept] and "2020-01-01" not in files
    assert_same_rows(df, workload.ground_truth(rid, start, end, as_of=sim_now))


def test_without_a_client_or_a_hostname_only_what_is_settled_can_be_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch)
    with pytest.raises(CacheError, match=r"does not hold .* settled.*no client.*FOUNDRY_HOSTNAME"):
        load_executions(RID, "2026-11-18T00:00Z", "2026-11-19T00:00Z", cache=tmp_path / "h", progress=False)
