"""exec_analytics: Foundry listExecutions into typed pandas DataFrames.

The public API::

    from exec_analytics import FoundryClient, ExecutionCache, load_executions, filters
    from exec_analytics import load_fleet, sync_fleet           # a fleet's history, kept current
    from exec_analytics import analysis, plots, report      # statistics, figures, the weekly report
    from exec_analytics.simulator import SimulatorServer    # the built-in Foundry simulator
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from . import filters
from .cache import ExecutionCache
from .client import FoundryClient
from .errors import (
    ApiError,
    AuthenticationError,
    CacheError,
    EndpointUnavailableError,
    ExecAnalyticsError,
    InvalidFilterError,
    InvalidPageTokenError,
    InvalidRequestError,
    PagingError,
    PagingOrderError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceNotFoundError,
    ResponseTooLargeError,
    SchemaError,
    ServerError,
    TransportError,
)
from .fleet import Fleet, load_fleet
from .loader import load_executions
from .sync import SyncResult, sync_fleet

try:
    __version__ = version("exec_analytics")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CacheError",
    "EndpointUnavailableError",
    "ExecAnalyticsError",
    "ExecutionCache",
    "Fleet",
    "FoundryClient",
    "InvalidFilterError",
    "InvalidPageTokenError",
    "InvalidRequestError",
    "PagingError",
    "PagingOrderError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResourceNotFoundError",
    "ResponseTooLargeError",
    "SchemaError",
    "ServerError",
    "SyncResult",
    "TransportError",
    "__version__",
    "analysis",
    "filters",
    "load_executions",
    "load_fleet",
    "plots",
    "report",
    "simulator",
    "sync_fleet",
]


# Statistics, figures and the report pull in scipy, matplotlib and Jinja2: load them on first use, so that
# `import exec_analytics` stays quick for scripts that only fetch.
_LAZY_MODULES = ("analysis", "plots", "report", "simulator")


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
