"""Credentials on the wire: a bearer token, or OAuth2 client-credentials tokens refreshed before they expire."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import requests

from exec_analytics.client.clock import SYSTEM_CLOCK, Clock
from exec_analytics.errors import AuthenticationError

__all__ = ["BearerAuth", "OAuthTokenSource", "check_secret"]

logger = logging.getLogger("exec_analytics.client")

# OAuth tokens issued to this client that are still remembered for redaction: a server may echo an older one.
_REMEMBERED_TOKENS = 8


def _header_safe(value: str) -> bool:
    # Printable latin-1 only: http.client encodes headers as latin-1, and whitespace, DEL or a C0/C1
    # control would split or corrupt the Authorization header.
    return all(32 < ord(c) < 127 or 160 < ord(c) <= 255 for c in value)


def check_secret(value: object, name: str) -> str:
    """Return ``value`` if it can be sent as (part of) an HTTP header, else raise without echoing it.

    Parameters
    ----------
    value : object
        A token, client id or client secret.
    name : str
        The parameter name, for the message.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    TypeError
        If ``value`` is not a string.
    ValueError
        If it is empty or holds whitespace, control or non-latin-1 characters.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value or not _header_safe(value):
        # Never echo the value: it is a secret.
        raise ValueError(f"{name} is empty or contains whitespace, control or non-latin-1 characters")
    return value


class BearerAuth(requests.auth.AuthBase):
    """Set the Authorization header at send time.

    Passing auth explicitly (rather than a header) also stops requests from replacing it with ~/.netrc
    credentials, and requests drops it on a redirect to another host.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class OAuthTokenSource:
    """Client-credentials tokens, fetched lazily, refreshed before expiry, one refresh at a time.

    Parameters
    ----------
    fetch : callable
        Posts the client-credentials form to the token endpoint and returns the parsed JSON answer.
    client_id, client_secret, scope : str
        The grant.
    margin : float
        Refresh this many seconds before expiry (at most half the token's lifetime).
    clock : Clock
        Where expiry is measured.
    on_refresh : callable, optional
        Called after each new token.
    """

    def __init__(
        self,
        fetch: Callable[[dict[str, str]], Any],
        client_id: str,
        client_secret: str,
        scope: str,
        margin: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._fetch_json = fetch
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._margin = margin
        self._clock = clock
        self._on_refresh = on_refresh
        self._lock = threading.Lock()
        self._token: str | None = None
        self._issued: deque[str] = deque(maxlen=_REMEMBERED_TOKENS)
        self._refresh_at = 0.0

    def get(self) -> str:
        """The current token, fetching a new one first when there is none or it is due for refresh."""
        with self._lock:
            if self._token is None or self._clock.monotonic() >= self._refresh_at:
                self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self, used: str) -> None:
        """Forget ``used`` if it is still the current token (other threads may have refreshed already)."""
        with self._lock:
            if self._token == used:
                self._token = None

    @property
    def current(self) -> str | None:
        """The token in use, if any."""
        return self._token

    def secrets(self) -> tuple[str, ...]:
        """The client secret and the last tokens issued: what must never appear in a message."""
        return (self._secret, *self._issued)

    def _refresh(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
            "scope": self.scope,
        }
        started = self._clock.monotonic()
        body = self._fetch_json(form)
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token or not _header_safe(token):
            raise AuthenticationError(
                "OAuth token endpoint answered without a usable access_token",
                status=200,
                error_name="InvalidTokenResponse",
            )
        expires_in = body.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            expires_in = 3600.0  # the usual Foundry lifetime; a 401 still triggers a refresh if wrong
        # Refresh early, but never earlier than half-way: a short-lived token must still be reused.
        margin = min(self._margin, expires_in / 2)
        self._token = token
        self._issued.append(token)
        self._refresh_at = started + expires_in - margin
        if self._on_refresh is not None:
            self._on_refresh()
        logger.debug("OAuth token obtained for client %s, expires in %.0f s", self.client_id, expires_in)
