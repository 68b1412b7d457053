"""Credentials of the simulated Foundry: signed page tokens and OAuth2 client-credentials grants.

Page tokens (``v1.<base64>``) carry the keyset position (or, with unstable tokens, an offset), the window
resolved on the first page and a hash of the request they belong to; they are HMAC-signed with a key
private to the server and expire after a TTL of real monotonic time. OAuth access tokens are random
strings with a scope set and an expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote

import orjson

__all__ = ["Grant", "InvalidPageToken", "OAuthRegistry", "PageTokenCodec"]

_SIG_BYTES = 16
_MAX_TOKEN_CHARS = 2048


class InvalidPageToken(ValueError):
    """A page token that is malformed, tampered with, expired or bound to another request."""


class PageTokenCodec:
    """Encode and check page tokens for one server.

    Parameters
    ----------
    ttl_s : float
        Seconds of real (monotonic) time a token stays valid.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = float(ttl_s)
        self._key = secrets.token_bytes(32)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIG_BYTES]

    def encode(self, mode: str, binding: bytes, start_ms: int, end_ms: int, position: Any) -> str:
        """A token for the next page.

        Parameters
        ----------
        mode : {"k", "o"}
            Keyset (``position`` = (start ms, trace id high 64 bits, low 64 bits)) or offset (an int).
        binding : bytes
            Hash of the resource and the request fields the token is bound to.
        start_ms, end_ms : int
            The window resolved on the first page.
        """
        if mode == "k":
            c_start, c_hi, c_lo = position
            pos: list[Any] = [int(c_start), f"{c_hi:016x}", f"{c_lo:016x}"]
        else:
            pos = [int(position)]
        payload = orjson.dumps([mode, binding.hex(), time.monotonic(), start_ms, end_ms, pos])
        return "v1." + base64.urlsafe_b64encode(payload + self._sign(payload)).decode().rstrip("=")

    def decode(self, token: Any, binding: bytes) -> tuple[str, int, int, Any]:
        """``(mode, start_ms, end_ms, position)`` of a token issued by :meth:`encode` for ``binding``.

        Raises
        ------
        InvalidPageToken
            With the reason (never shown to API clients, whose error carries no detail).
        """
        if not isinstance(token, str) or not token.startswith("v1.") or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidPageToken("not a v1 token")
        text = token[3:]
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (ValueError, TypeError):
            raise InvalidPageToken("not base64") from None
        payload, sig = raw[:-_SIG_BYTES], raw[-_SIG_BYTES:]
        if len(raw) <= _SIG_BYTES or not hmac.compare_digest(sig, self._sign(payload)):
            raise InvalidPageToken("bad signature (tampered with, or issued by another server)")
        try:
            mode, bound, issued, start_ms, end_ms, pos = orjson.loads(payload)
            if mode == "k":
                position: Any = (int(pos[0]), int(pos[1], 16), int(pos[2], 16))
            elif mode == "o":
                position = int(pos[0])
            else:
                raise ValueError(mode)
        except (ValueError, TypeError, IndexError):
            raise InvalidPageToken("malformed payload") from None
        if bound != binding.hex():
            raise InvalidPageToken("issued for another resource or request body")
        if time.monotonic() - issued > self.ttl_s:
            raise InvalidPageToken("expired")
        return mode, int(start_ms), int(end_ms), position


class Grant(NamedTuple):
    """What an OAuth access token stands for: the client it was issued to (a service user) and its scopes."""

    client_id: str
    scopes: frozenset[str]


class OAuthRegistry:
    """OAuth2 clients and the access tokens issued to them (thread-safe).

    Parameters
    ----------
    ttl_s : float
        Lifetime of access tokens in real seconds.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = float(ttl_s)
        self._clients: dict[str, tuple[str, frozenset[str]]] = {}
        self._tokens: dict[str, tuple[float, Grant]] = {}
        self._lock = threading.Lock()

    def register(self, client_id: str, client_secret: str, scopes: Iterable[str]) -> None:
        """Allow a client; its tokens carry at most ``scopes``."""
        with self._lock:
            self._clients[client_id] = (client_secret, frozenset(scopes))

    def lookup(self, access_token: str) -> Grant | None:
        """The client and scopes of a live access token; None when unknown, revoked or expired."""
        entry = self._tokens.get(access_token)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def revoke_all(self) -> int:
        """Forget every issued token; returns how many were live."""
        with self._lock:
            now = time.monotonic()
            n = sum(1 for exp, _ in self._tokens.values() if exp >= now)
            self._tokens.clear()
        return n

    def grant(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        """Answer a token request (``application/x-www-form-urlencoded``): ``(status, JSON body)``.

        The client authenticates with ``client_id``/``client_secret`` form fields or HTTP Basic. The token
        carries the requested scopes the client is allowed (all of its scopes when none are requested).
        """
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, orjson.dumps({"error": "unsupported_grant_type"})
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return 401, orjson.dumps({"error": "invalid_client"})
            client_id, _, client_secret = decoded.partition(":")
            client_id, client_secret = unquote(client_id), unquote(client_secret)
        registered = self._clients.get(client_id or "")
        if registered is None or not hmac.compare_digest(registered[0].encode(), (client_secret or "").encode()):
            return 401, orjson.dumps({"error": "invalid_client"})
        requested = frozenset((form.get("scope") or "").split())
        granted = registered[1] & requested if requested else registered[1]
        access_token = "sim-oauth-" + secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            # forget expired tokens so a long-running server does not grow without bound
            for t in [t for t, (exp, _) in self._tokens.items() if exp < now]:
                del self._tokens[t]
            self._tokens[access_token] = (now + self.ttl_s, Grant(client_id or "", granted))
        grant = {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": max(1, math.ceil(self.ttl_s)),
            "scope": " ".join(sorted(granted)),
        }
        return 200, orjson.dumps(grant)
