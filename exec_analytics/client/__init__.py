"""The only package that speaks HTTP (and the only one that imports requests).

Modules, one concern each:

- :mod:`.foundry`: :class:`FoundryClient`, the facade (arguments, the retry loop, pages);
- :mod:`.transport`: one attempt, bounded in time and decoded size, over a pool of sessions;
- :mod:`.retry`: the retry decision, a pure function, and ``Retry-After`` parsing;
- :mod:`.throttle`: :class:`ThrottleGate`, the pause shared by every thread;
- :mod:`.auth`: bearer tokens and OAuth2 client credentials;
- :mod:`.responses`: :class:`Page` and the typed error of an answer;
- :mod:`.clock`: the injectable clock.
"""

from exec_analytics.client.clock import SYSTEM_CLOCK, Clock, SystemClock
from exec_analytics.client.foundry import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_POOL_SIZE,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRY_BUDGET,
    MAX_PAGE_SIZE,
    OAUTH_SCOPE,
    USER_AGENT,
    FoundryClient,
)
from exec_analytics.client.responses import Page
from exec_analytics.client.retry import parse_retry_after
from exec_analytics.client.throttle import ThrottleGate
from exec_analytics.client.transport import new_session

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETRY_BUDGET",
    "MAX_PAGE_SIZE",
    "OAUTH_SCOPE",
    "SYSTEM_CLOCK",
    "USER_AGENT",
    "Clock",
    "FoundryClient",
    "Page",
    "SystemClock",
    "ThrottleGate",
    "new_session",
    "parse_retry_after",
]
