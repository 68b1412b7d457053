"""exec_analytics: Foundry listExecutions into typed pandas DataFrames.

The public API::

    from exec_analytics import FoundryClient, ExecutionCache, load_executions, filters
"""

from importlib.metadata import PackageNotFoundError, version

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
    PermissionDeniedError,
    RateLimitedError,
    ResourceNotFoundError,
    SchemaError,
    ServerError,
    TransportError,
)
from .loader import load_executions

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
    "FoundryClient",
    "InvalidFilterError",
    "InvalidPageTokenError",
    "InvalidRequestError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResourceNotFoundError",
    "SchemaError",
    "ServerError",
    "TransportError",
    "__version__",
    "filters",
    "load_executions",
]
