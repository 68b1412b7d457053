"""Shared fixtures: the Foundry simulator on loopback, over real HTTP.

- ``sim_now``: the simulators' frozen "now" (``SIM_NOW``) as a UTC Timestamp.
- ``workload``: one ``Workload(seed=0)`` for the whole session (generation is lazy and cached).
- ``sim``: a session-wide server with its clock frozen at ``SIM_NOW`` and no faults. Read-only: do not
  change its faults, clock or OAuth clients; compare ``request_count`` before and after instead of resetting.
- ``make_sim``: starts servers of a test's own (any ``SimulatorServer`` keyword, e.g. ``faults=``,
  ``page_token_ttl_s=``), stopped at the end of the test; ``fresh_sim`` is one with the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from exec_analytics.simulator import SimClock, SimulatorServer, Workload

#: The frozen "now" of the simulator fixtures.
SIM_NOW = "2026-11-20T00:00:00Z"


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
