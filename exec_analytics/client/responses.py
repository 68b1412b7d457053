"""What an answer means: a listExecutions page, or the typed error for an answer that is not one."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from exec_analytics.errors import (
    ApiError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitedError,
    SchemaError,
    ServerError,
    api_error_from_response,
    safe_text,
)

__all__ = ["THROTTLE_STATUSES", "Page", "carries_error", "error_for", "make_page", "parse_json"]

#: Statuses that mean "slow down".
THROTTLE_STATUSES = frozenset({429, 503})
# Server text echoed into a message is cut to this many characters.
_SNIPPET = 200


@dataclass(frozen=True)
class Page:
    """One page of listExecutions, as received.

    Attributes
    ----------
    body : bytes
        The complete JSON body, checked to parse, on one line (JSON allows a raw newline only as
        whitespace, so newlines are replaced by spaces): pages joined by ``b"\\n"`` are valid NDJSON.
    next_page_token : str or None
        ``nextPageToken``; None on the last page.
    n_executions : int
        Number of executions in ``data`` (0 when ``data`` is missing).
    oldest_start : pandas.Timestamp or None
        ``startTime`` (UTC) of the last execution on the page, which is the oldest when results come newest
        first, as documented; None for an empty page.
    newest_start : pandas.Timestamp or None
        ``startTime`` (UTC) of the first execution on the page; None for an empty page.
    ordered : bool
        Whether the page's start times never increase from one execution to the next (the documented
        "newest first"). Paging relies on the order to bound what is still unread, so it checks this.
    """

    body: bytes
    next_page_token: str | None
    n_executions: int
    oldest_start: pd.Timestamp | None
    newest_start: pd.Timestamp | None = None
    ordered: bool = True

    def __repr__(self) -> str:
        # The body can be ~50 kB: show its size, not its content.
        return (
            f"Page(n_executions={self.n_executions}, oldest_start={self.oldest_start!r}, "
            f"next_page_token={'…' if self.next_page_token else None}, body=<{len(self.body)} bytes>)"
        )


def parse_json(content: bytes) -> tuple[bool, Any]:
    """``(True, value)`` if ``content`` is a JSON document, else ``(False, None)``."""
    if not content:
        return False, None
    try:
        return True, orjson.loads(content)
    except orjson.JSONDecodeError:
        return False, None


def carries_error(parsed: Any) -> bool:
    """Whether a 200 body is a Foundry error (it has ``errorCode`` or ``errorName``) rather than a page."""
    return isinstance(parsed, Mapping) and ("errorCode" in parsed or "errorName" in parsed)


def error_for(
    status: int,
    headers: Mapping[str, str],
    parsed: Any,
    *,
    resource_rid: str | None,
    detail: str | None,
    secrets: tuple[str | None, ...],
    oauth_client_id: str | None = None,
) -> ApiError:
    """The typed exception for an answer that is not a usable page (or token).

    Parameters
    ----------
    status : int
        HTTP status (200 for an error body sent with a success status).
    headers : mapping
        Response headers (``Location`` of a redirect is named).
    parsed : object
        The parsed JSON body, or None.
    resource_rid : str or None
        The resource asked about; None for the OAuth token endpoint.
    detail : str or None
        Context for the message (attempts made, the retry hint).
    secrets : tuple
        Literal secrets removed from everything built from the answer.
    oauth_client_id : str, optional
        Set for an answer of the token endpoint, whose errors are OAuth bodies, not Foundry ones.

    Returns
    -------
    ApiError
    """
    body = parsed if isinstance(parsed, dict) else None
    if 300 <= status < 400:
        location = headers.get("Location", "")
        detail = f"redirected to {safe_text(location, *secrets)[:_SNIPPET]!r}; check the hostname"
    if resource_rid is None and oauth_client_id is not None and 400 <= status < 500 and status != 429:
        # OAuth errors are {"error": ..., "error_description": ...}, not Foundry error bodies.
        body = body or {}
        error = str(body.get("error") or body.get("errorName") or "HTTP error")
        msg = f"OAuth token request for client {oauth_client_id!r} failed: {error} (HTTP {status})"
        if body.get("error_description"):
            msg += f": {str(body['error_description'])[:_SNIPPET]}"
        cls: type[ApiError] = PermissionDeniedError if status == 403 else AuthenticationError
        clean = api_error_from_response(status, body, secrets=secrets)
        return cls(
            safe_text(msg, *secrets),
            status=status,
            error_code=clean.error_code,
            error_name=clean.error_name or safe_text(error, *secrets),
            error_instance_id=clean.error_instance_id,
        )
    err = api_error_from_response(status, body, resource_rid=resource_rid, detail=detail, secrets=secrets)
    # A 429 with an unexpected errorName is still a rate limit, and a 5xx still a server error.
    if status in THROTTLE_STATUSES and not isinstance(err, RateLimitedError):
        err = _retype(err, RateLimitedError)
    elif status >= 500 and status not in THROTTLE_STATUSES and not isinstance(err, ServerError):
        err = _retype(err, ServerError)
    return err


def _retype(err: ApiError, cls: type[ApiError]) -> ApiError:
    return cls(
        str(err),
        status=err.status,
        error_code=err.error_code,
        error_name=err.error_name,
        error_instance_id=err.error_instance_id,
        parameters=err.parameters,
        resource_rid=err.resource_rid,
    )


def make_page(parsed: Mapping[str, Any], content: bytes, resource_rid: str, page_size: int) -> Page:
    """Turn a parsed listExecutions answer into a :class:`Page`.

    ``{}`` is an empty last page (Conjure omits empty lists and absent tokens). An empty ``nextPageToken``
    ends the paging too, but on a full page (``page_size`` executions) more may remain, so that warns.

    Parameters
    ----------
    parsed : mapping
        The JSON object.
    content : bytes
        The raw body.
    resource_rid : str
        For messages.
    page_size : int
        The page size asked for.

    Returns
    -------
    Page

    Raises
    ------
    SchemaError
        When ``data`` is not a list, ``nextPageToken`` not a string, or the last execution has no valid
        ``startTime``.
    """
    data = parsed.get("data")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise SchemaError(f"listExecutions of resource {resource_rid}: 'data' is {type(data).__name__}, not a list")
    token = parsed.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise SchemaError(f"listExecutions of resource {resource_rid}: 'nextPageToken' is not a string")
    if token == "" and len(data) >= page_size:
        warnings.warn(
            f"listExecutions of resource {resource_rid} sent an empty nextPageToken on a full page of "
            f"{len(data)} executions: treated as the last page, but more executions may remain",
            RuntimeWarning,
            stacklevel=3,
        )
    oldest: pd.Timestamp | None = None
    newest: pd.Timestamp | None = None
    ordered = True
    if data:
        # One vectorised parse of the page's start times (at most 100): the order check and the newest start.
        # Unparseable values are left to the decoder, which names them; here they only skip the check.
        starts = pd.to_datetime(
            pd.Series([d.get("startTime") if isinstance(d, dict) else None for d in data], dtype=object),
            format="ISO8601",
            utc=True,
            errors="coerce",
        )
        valid = starts.dropna()
        if len(valid):
            newest = valid.iloc[0]
            ordered = bool(valid.is_monotonic_decreasing)
        last = data[-1]
        raw = last.get("startTime") if isinstance(last, dict) else None
        try:
            if not isinstance(raw, str):
                raise ValueError
            oldest = pd.Timestamp(raw)
            if oldest is pd.NaT or oldest.tzinfo is None:
                raise ValueError
            oldest = oldest.tz_convert("UTC")
        except (TypeError, ValueError):
            shown = safe_text(repr(raw)[:60])
            raise SchemaError(
                f"listExecutions of resource {resource_rid}: last execution has no valid startTime ({shown})"
            ) from None
    if b"\n" in content or b"\r" in content:
        # Only whitespace may hold raw newlines in JSON, so this keeps the document identical.
        content = content.replace(b"\r", b" ").replace(b"\n", b" ")
    return Page(
        body=content,
        next_page_token=token or None,
        n_executions=len(data),
        oldest_start=oldest,
        newest_start=newest,
        ordered=ordered,
    )
