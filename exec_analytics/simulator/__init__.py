"""A Foundry-compatible fake listExecutions server and a realistic synthetic workload.

The embedded default for the CLI, tests, notebooks and benchmarks::

    from exec_analytics.simulator import Workload, SimulatorServer, SimClock, FaultConfig, DEFAULT_TOKEN

    wl = Workload(seed=0)
    with SimulatorServer(wl, clock=SimClock("2026-11-28T00:00Z")) as srv:
        ...  # srv.url, srv.token, wl.resource_rids, wl.ground_truth(rid, start, end)

With ``limits="user"`` (5,000 requests a minute, 30 in flight) or ``limits="service"`` the server answers 429
past the documented rate limits and counts every request (``srv.limit_stats(srv.token)``).

The truth behind the data (callers, version rollouts, the regressed and the confounded version) is on
``Workload.resources`` (see :class:`ResourceProfile`).
"""

from .clock import SimClock
from .faults import FAULT_KINDS, FaultConfig
from .limits import LIMIT_KINDS, LimitStats, RateLimiter, RateLimits
from .profiles import (
    CALLER_KINDS,
    FAILURE_REASONS,
    CallerProfile,
    Incident,
    ResourceProfile,
    VersionSpec,
)
from .server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TOKEN,
    NO_PERMISSION_TOKEN,
    OAUTH_TOKEN_PATH,
    OBSERVABILITY_SCOPE,
    SimulatorServer,
    serve,
)
from .spec import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .workload import EXECUTION_COLUMNS, GROUND_TRUTH_COLUMNS, UNITS, Workload

__all__ = [
    "CALLER_KINDS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TOKEN",
    "EXECUTION_COLUMNS",
    "FAILURE_REASONS",
    "FAULT_KINDS",
    "GROUND_TRUTH_COLUMNS",
    "LIMIT_KINDS",
    "MAX_PAGE_SIZE",
    "NO_PERMISSION_TOKEN",
    "OAUTH_TOKEN_PATH",
    "OBSERVABILITY_SCOPE",
    "UNITS",
    "CallerProfile",
    "FaultConfig",
    "Incident",
    "LimitStats",
    "RateLimiter",
    "RateLimits",
    "ResourceProfile",
    "SimClock",
    "SimulatorServer",
    "VersionSpec",
    "Workload",
    "serve",
]
