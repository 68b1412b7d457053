"""One exception tree for the whole toolkit.

Every error the toolkit raises on purpose derives from :class:`ExecAnalyticsError`, so callers can catch
one class. Errors returned by the Foundry API are :class:`ApiError` subclasses chosen from the HTTP status
and ``errorName``; their message always names the resource and the ``errorInstanceId`` so a support
ticket can quote it. No message ever contains the bearer token (see :func:`redact`), and text the server
chose reaches a message only after :func:`neutralize` has escaped its control characters, so it cannot
drive a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CacheError",
    "EndpointUnavailableError",
    "ExecAnalyticsError",
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
    "TransportError",
    "api_error_from_response",
    "neutralize",
    "redact",
    "safe_text",
]


# C0 and C1 control characters (ESC starts ANSI sequences), DEL, and the bidirectional overrides and isolates
# that reorder what a terminal shows.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same, sparing the newline and tab a message of the toolkit's own may contain.
_UNSAFE_IN_MESSAGE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class ExecAnalyticsError(Exception):
    """Root of every error raised by exec_analytics.

    Its text never holds a control character other than newline and tab (they are written as escapes such
    as ``\\x1b``): messages may quote what a server or a file held, and printing one must be safe.
    """

    def __str__(self) -> str:
        return _UNSAFE_IN_MESSAGE.sub(_escape, super().__str__())


class TransportError(ExecAnalyticsError):
    """The request did not produce a usable HTTP response (connection, timeout, truncated body)."""


class ResponseTooLargeError(TransportError):
    """A response body, once decoded, exceeded the client's ``max_response_bytes``; not retried.

    A listExecutions page is about 50 kB, so a body this large is a misbehaving server or a compression
    bomb: the client stops reading at the limit instead of holding the whole body in memory.
    """


class PagingError(ExecAnalyticsError):
    """The server's paging broke the API's contract so that a complete read cannot be guaranteed.

    Raised, naming the resource and the window, when page tokens repeat, or when pages keep coming without
    bringing anything new (see :data:`exec_analytics.paging.MAX_PAGES_WITHOUT_PROGRESS`).
    """


class PagingOrderError(PagingError):
    """The server's pages are not newest first, and what they left unread cannot be bounded.

    Paging out of order is still exact when a page chain is followed to its end; this is raised only when
    that is impossible, e.g. when the server keeps rejecting the page tokens of such a chain.
    """


class SchemaError(ExecAnalyticsError, ValueError):
    """A response body could not be decoded into the executions table."""


class CacheError(ExecAnalyticsError):
    """The local execution history is unreadable, locked or of an unknown schema version."""


class ApiError(ExecAnalyticsError):
    """An error answered by the Foundry API.

    Attributes
    ----------
    status : int
        HTTP status code.
    error_code : str or None
        Foundry ``errorCode`` (e.g. ``INVALID_ARGUMENT``).
    error_name : str or None
        Foundry ``errorName`` (e.g. ``InvalidExecutionFilter``).
    error_instance_id : str or None
        Foundry ``errorInstanceId``: quote it when asking Palantir support.
    parameters : dict
        Foundry ``parameters`` of the error.
    resource_rid : str or None
        The resource the request was about.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_code: str | None = None,
        error_name: str | None = None,
        error_instance_id: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        resource_rid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.error_name = error_name
        self.error_instance_id = error_instance_id
        self.parameters = dict(parameters or {})
        self.resource_rid = resource_rid


class InvalidRequestError(ApiError, ValueError):
    """400: the server rejected the request's arguments (page size, preview flag, …)."""


class InvalidFilterError(InvalidRequestError):
    """400 ``InvalidExecutionFilter``: the ``where`` filter was rejected by the server."""


class InvalidPageTokenError(InvalidRequestError):
    """400 ``InvalidPageToken``: the token expired or does not match the request body.

    The loader recovers from it by restarting the slice; it only escapes when that keeps failing.
    """


class AuthenticationError(ApiError):
    """401: the token is missing, malformed or expired."""


class PermissionDeniedError(ApiError):
    """403: the token may not list executions of this resource, or lacks an OAuth scope."""


class ResourceNotFoundError(ApiError):
    """404 ``ResourceNotFound``: no resource with that RID is visible."""


class EndpointUnavailableError(ApiError):
    """404 with an empty body: this Foundry stack does not have the listExecutions endpoint."""


class RateLimitedError(ApiError):
    """429 (or 503) that was still throttled when the retry budget ran out, or was marked do-not-retry."""


class ServerError(ApiError):
    """5xx that persisted through every retry."""


# Bearer tokens, OAuth secrets and JWT-looking strings: anything that could be a credential.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(r"(?i)((?:access_token|client_secret|token|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s'\",&}]+"),
    re.compile(r"eyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*"),
)


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with every known secret and credential-shaped substring replaced by ``***``.

    Parameters
    ----------
    text : str
        Any message, URL or header dump.
    *secrets : str or None
        Literal secrets to remove wherever they appear (tokens, client secrets).

    Returns
    -------
    str
        The text with secrets masked.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


def neutralize(text: str) -> str:
    """Return ``text`` with control and bidirectional-override characters written as escapes (``\\x1b``).

    Server text (error names, parameters, descriptions, redirect targets) passes through this before it
    reaches a message, so an ANSI sequence cannot recolour, clear or rewrite the user's terminal.

    Parameters
    ----------
    text : str
        Any text received from the network.

    Returns
    -------
    str
        The same text on one line, printable characters unchanged.
    """
    return _UNSAFE_CHARS.sub(_escape, text)


def safe_text(text: str, *secrets: str | None) -> str:
    """:func:`redact` then :func:`neutralize`: the form in which server text may enter a message.

    Parameters
    ----------
    text : str
        Text built from, or containing, what a server sent.
    *secrets : str or None
        Literal secrets to remove (token, client secret, OAuth tokens).

    Returns
    -------
    str
        Text without secrets or control characters.
    """
    return neutralize(redact(text, *secrets))


def _clean_value(value: Any, secrets: tuple[str | None, ...]) -> Any:
    """``value`` with :func:`safe_text` applied to every string inside it (keys of mappings included)."""
    if isinstance(value, str):
        return safe_text(value, *secrets)
    if isinstance(value, Mapping):
        return {safe_text(str(k), *secrets): _clean_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_value(v, secrets) for v in value]
    return value


def _clean_str(value: object, secrets: tuple[str | None, ...]) -> str | None:
    return None if value is None else safe_text(str(value), *secrets)


_BY_NAME: dict[str, type[ApiError]] = {
    "InvalidExecutionFilter": InvalidFilterError,
    "InvalidPageToken": InvalidPageTokenError,
    "InvalidPageSize": InvalidRequestError,
    "ApiFeaturePreviewUsageOnly": InvalidRequestError,
    "ListExecutionsPermissionDenied": PermissionDeniedError,
    "ListExecutionsResourcePermissionDenied": PermissionDeniedError,
    "ApiUsageDenied": PermissionDeniedError,
    "ResourceNotFound": ResourceNotFoundError,
}


# The HTTP status Conjure assigns to each errorCode: used to type an error sent in a 200 body.
_CODE_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "CUSTOM_CLIENT": 400,
    "UNAUTHORIZED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "REQUEST_ENTITY_TOO_LARGE": 413,
    "FAILED_PRECONDITION": 500,
    "INTERNAL": 500,
    "TIMEOUT": 500,
    "CUSTOM_SERVER": 500,
}


def _class_for(status: int, error_name: str | None, has_body: bool) -> type[ApiError]:
    if error_name in _BY_NAME:
        return _BY_NAME[error_name]
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return ResourceNotFoundError if has_body else EndpointUnavailableError
    if status in (429, 503):
        return RateLimitedError
    if status >= 500:
        return ServerError
    if status == 400:
        return InvalidRequestError
    return ApiError


def api_error_from_response(
    status: int,
    body: Mapping[str, Any] | None,
    *,
    resource_rid: str | None = None,
    detail: str | None = None,
    secrets: tuple[str | None, ...] = (),
) -> ApiError:
    """Build the typed exception for an HTTP error response.

    A 200 whose body carries ``errorCode`` or ``errorName`` is an error too: it is typed as the same body
    would be with the status Conjure gives its ``errorCode`` (``PERMISSION_DENIED`` → 403, unknown → 500),
    and keeps ``status=200``.

    Parameters
    ----------
    status : int
        HTTP status code.
    body : mapping or None
        The parsed Foundry error body (``errorCode``, ``errorName``, ``errorInstanceId``, ``parameters``),
        or None when the body was empty or not JSON.
    resource_rid : str, optional
        The resource the request was about; named in the message.
    detail : str, optional
        Extra context for the message (e.g. "after 5 attempts").
    secrets : tuple of str or None
        Literal secrets (token, client secret, OAuth tokens) removed from the message and from every string
        attribute, ``parameters`` included, since a server may echo them.

    Returns
    -------
    ApiError
        An instance of the most specific subclass; its message and attributes hold no secret and no control
        character (see :func:`safe_text`).
    """
    body = body or {}
    error_name = _clean_str(body.get("errorName"), secrets)
    error_code = _clean_str(body.get("errorCode"), secrets)
    instance = _clean_str(body.get("errorInstanceId"), secrets)
    raw_parameters = body.get("parameters") or {}
    if not isinstance(raw_parameters, Mapping):
        raw_parameters = {"value": raw_parameters}
    parameters: dict[str, Any] = _clean_value(raw_parameters, secrets)
    typed_as = _CODE_STATUS.get(error_code or "", 500) if status == 200 else status
    cls = _class_for(typed_as, error_name, bool(body))
    if cls is EndpointUnavailableError:
        what = "the listExecutions endpoint does not exist on this Foundry stack (404 with an empty body)"
    else:
        what = f"{error_name or 'HTTP error'} ({error_code or 'no errorCode'}, HTTP {status})"
        if status == 200:
            what += ": an error sent with a success status"
    parts = [what]
    if resource_rid:
        parts.append(f"resource {resource_rid}")
    if parameters:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(parameters.items()))
        parts.append(f"parameters: {shown}")
    parts.append(f"errorInstanceId {instance or 'none'}")
    if detail:
        parts.append(detail)
    return cls(
        safe_text("; ".join(parts), *secrets),
        status=status,
        error_code=error_code,
        error_name=error_name,
        error_instance_id=instance,
        parameters=parameters,
        resource_rid=resource_rid,
    )
