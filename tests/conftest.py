"""Shared fixtures: the Foundry simulator on loopback, over real HTTP.

- ``sim_now``: the simulators' frozen "now" (``SIM_NOW``) as a UTC Timestamp.
- ``workload``: one ``Workload(seed=0)`` for the whole session (generation is lazy and cached).
- ``sim``: a session-wide server with its clock frozen at ``SIM_NOW`` and no faults. Read-only: do not
  change its faults, clock or OAuth clients; compare ``request_count`` before and after instead of resetting.
- ``make_sim``: starts servers of a test's own (any ``SimulatorServer`` keyword, e.g. ``faults=``,
  ``page_token_ttl_s=``), stopped at the end of the test; ``fresh_sim`` is one with the defaults.

Every test gets an empty execution cache of its own: ``EXEC_ANALYTICS_CACHE_DIR`` points at a fresh temporary
directory (subprocesses inherit it), so ``load_executions``'s default cache never reads what another test
wrote and nothing lands in the user's real cache directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from exec_analytics.simulator import SimClock, SimulatorServer, Workload

#: The frozen "now" of the simulator fixtures.
SIM_NOW = "2026-11-20T00:00:00Z"


def pytest_configure(config: pytest.Config) -> None:
    # Before collection, so that even module-level code never sees the user's real cache directory.
    config._exec_analytics_cache = tempfile.mkdtemp(prefix="exec-analytics-test-cache-")  # type: ignore[attr-defined]
    os.environ["EXEC_ANALYTICS_CACHE_DIR"] = config._exec_analytics_cache  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    path = getattr(config, "_exec_analytics_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EXEC_ANALYTICS_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def sim_now() -> pd.Timestamp:
    return pd.Timestamp(SIM_NOW)


@pytest.fixture(scope="session")
def workload() -> Workload:
    return Workload(seed=0)


@pytest.fixture(scope="session")
def sim(workload: Workload) -> Iterator[SimulatorServer]:
    with SimulatorServer(workload, clock=SimClock(now=SIM_NOW)) as srv:
        yield srv


@pytest.fixture
def make_sim(workload: Workload) -> Iterator[Callable[..., SimulatorServer]]:
    started: list[SimulatorServer] = []

    def make(**kwargs: Any) -> SimulatorServer:
        kwargs.setdefault("clock", SimClock(now=SIM_NOW))
        srv = SimulatorServer(workload, **kwargs).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def fresh_sim(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    return make_sim()
