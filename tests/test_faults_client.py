"""Fault matrix of the client against a misbehaving server of the tests' own (``adversarial.py``).

Every scenario ends in exact data or a typed error, within a bound the client enforces itself: its retry
budget (asserted through the error and the number of requests the server saw, never an upper bound on wall
time; the pytest timeout is only a guard), its ``max_response_bytes`` (asserted on memory allocated), or at
once. Covered: bounded time (trickled headers and bodies), bounded memory (gzip bomb, oversize bodies),
what a 200 may say (an error body, ``{}``, an empty page token), and secrets (echoed tokens, ANSI escapes,
proxies, tokens that cannot be headers).
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from adversarial import AdversarialServer, FakeClock, Reply, Request, scripted

from exec_analytics import cli
from exec_analytics.client import FoundryClient
from exec_analytics.errors import (
    ApiError,
    AuthenticationError,
    CacheError,
    InvalidRequestError,
    PermissionDeniedError,
    ResourceNotFoundError,
    ResponseTooLargeError,
    SchemaError,
    ServerError,
    TransportError,
)

RID = "ri.function-registry.main.function.3d68f9a7-deb4-492f-a52b-fc67425d22f6"
START, END = "2026-11-19T22:00:00Z", "2026-11-19T23:00:00Z"
TOKEN = "tok-SECRET-4e1b77c2d9"
OAUTH_SECRET = "csecret-SECRET-0a9f3b"
OAUTH_TOKEN = "oauth-SECRET-c3d5e7f9a1"
QUICK = {"backoff_base": 0.0, "backoff_cap": 0.0, "max_attempts": 3}

pytestmark = pytest.mark.timeout(60)


def _execution(i: int) -> dict[str, Any]:
    return {
        "startTime": f"2026-11-19T22:{(3599 - i) // 60:02d}:{(3599 - i) % 60:02d}.000Z",  # newest first
        "duration": {"value": 120 + i, "unit": "MILLISECONDS"},
        "status": "SUCCEEDED",
        "resourceRid": RID,
        "resourceVersion": "1.0.0",
        "traceOwningRid": "ri.object-sentinel.main.monitor.1",
        "foundryTraceId": f"trace-{i:04d}",
    }


def _page_doc(n: int, token: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"data": [_execution(i) for i in range(n)]}
    if token is not None:
        doc["nextPageToken"] = token
    return doc


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[AdversarialServer] = []

    def start(*replies: Reply) -> AdversarialServer:
        servers.append(AdversarialServer(scripted(*replies)).start())
        return servers[-1]

    yield start
    for srv in servers:
        srv.stop()


def _client(srv: AdversarialServer, **kwargs: Any) -> FoundryClient:
    kwargs.setdefault("token", TOKEN)
    return FoundryClient(srv.url, **{**QUICK, **kwargs})


def _fetch(client: FoundryClient, **kwargs: Any) -> Any:
    with client:
        return client.list_executions_page(RID, start=START, end=END, **kwargs)


# --------------------------------------------------------------------------- 9.2 bounded time


def test_trickled_body_ends_within_the_retry_budget(serve: Any) -> None:
    # 2 kB at one byte every 10 ms would take 20 s; each byte resets a per-read timeout of 30 s.
    body = orjson.dumps(_page_doc(10))
    srv = serve(Reply(body=[body[i : i + 1] for i in range(len(body))], chunk_delay=0.01))
    with pytest.raises(TransportError) as info:
        _fetch(_client(srv, retry_budget=0.3, read_timeout=30.0, max_attempts=5))
    assert not isinstance(info.value, ResponseTooLargeError)
    assert "deadline passed while reading the body" in str(info.value)
    assert "gave up (retry_budget) after 1 attempt" in str(info.value)
    assert len(srv.requests) == 1  # the budget was spent in one attempt: no retry could start


def test_trickled_headers_end_within_the_retry_budget(serve: Any) -> None:
    srv = serve(Reply.json(_page_doc(1), trickle_headers=True, chunk_delay=0.01))
    with pytest.raises(TransportError) as info:
        _fetch(_client(srv, retry_budget=0.3, read_timeout=30.0))
    assert "before the response headers ended" in str(info.value)
    assert len(srv.requests) == 1


def test_stalled_body_is_cut_at_the_deadline(serve: Any) -> None:
    # Headers at once, then the body slowly (deadline between chunks) or never (the socket is shut down).
    body = orjson.dumps(_page_doc(2))
    slow = serve(Reply(body=[body[:5], body[5:10], body[10:]], chunk_delay=0.12))
    stalled = serve(Reply(body=[body], chunk_delay=30.0, framing="chunked"))
    for server in (slow, stalled):
        with pytest.raises(TransportError) as info:
            _fetch(_client(server, retry_budget=0.3, read_timeout=30.0))
        assert "deadline passed while reading the body" in str(info.value)
        assert len(server.requests) == 1


def test_each_attempt_is_bounded_then_retried(serve: Any) -> None:
    # read_timeout bounds an attempt as a whole: the trickle is cut, and the retry gets the page.
    body = orjson.dumps(_page_doc(3))
    trickle = Reply(body=[body[i : i + 1] for i in range(len(body))], chunk_delay=0.01)
    srv = serve(trickle, Reply(body=body))
    with _client(srv, read_timeout=0.2, retry_budget=30.0) as client:
        page = client.list_executions_page(RID, start=START, end=END)
        assert client.stats["retries"] == 1 and client.stats["transport_errors"] == 1
    assert page.body == body and page.n_executions == 3
    assert len(srv.requests) == 2


def test_budget_counts_backoff_on_the_clients_clock(serve: Any) -> None:
    clock = FakeClock()
    srv = serve(Reply(status=503))
    with pytest.raises(ApiError) as info:
        _fetch(_client(srv, clock=clock, retry_budget=5.0, max_attempts=100, backoff_base=1.0, backoff_cap=4.0))
    assert clock.monotonic() <= 5.0  # every wait ended inside the budget
    assert "gave up (retry_budget)" in str(info.value) and len(srv.requests) == len(clock.sleeps) + 1


# --------------------------------------------------------------------------- 9.3 bounded memory


def _gzip_bomb(gib: int = 1) -> bytes:
    """About 1 MB of gzip inflating to ``gib`` GiB of zeros: one fully flushed deflate block, repeated."""
    block = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + segment * (1024 * gib) + end + struct.pack("<II", crc, (gib << 30) & 0xFFFFFFFF)


def test_gzip_bomb_fails_fast_without_inflating(serve: Any) -> None:
    bomb = _gzip_bomb()
    assert len(bomb) < 1.1e6
    srv = serve(Reply(headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, body=bomb))
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError) as info:
            _fetch(_client(srv))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "max_response_bytes=8388608" in str(info.value)
    assert peak < 64 << 20  # the 8 MiB cap plus buffers, not the 1 GiB the body inflates to
    assert len(srv.requests) == 1  # not retried: a second answer would be as large


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_oversize_body_is_refused(serve: Any, framing: str) -> None:
    body = orjson.dumps(_page_doc(100))
    srv = serve(Reply(body=[body], framing=framing))
    with pytest.raises(ResponseTooLargeError) as info:
        _fetch(_client(srv, max_response_bytes=len(body) - 1))
    assert isinstance(info.value, TransportError) and RID in str(info.value)
    assert len(srv.requests) == 1
    # The same answer within the limit is the exact page.
    page = _fetch(_client(srv, max_response_bytes=len(body)))
    assert page.body == body and page.n_executions == 100


def test_compressed_pages_decode_exactly(serve: Any) -> None:
    body = orjson.dumps(_page_doc(20, token="v1.next"))
    halves = gzip.compress(body[:500]) + gzip.compress(body[500:])  # a two-member gzip body
    chunks = [halves[i : i + 7] for i in range(0, len(halves), 7)]
    srv = serve(
        Reply(body=body, gzip=True),
        Reply(headers={"Content-Encoding": "gzip"}, body=chunks, framing="chunked"),
        Reply(headers={"Content-Encoding": "deflate"}, body=zlib.compress(body)),
    )
    with _client(srv) as client:
        pages = [client.list_executions_page(RID, start=START, end=END) for _ in range(3)]
    assert [p.body for p in pages] == [body] * 3
    assert [p.next_page_token for p in pages] == ["v1.next"] * 3
    assert srv.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


def test_truncated_gzip_is_retried(serve: Any) -> None:
    body = orjson.dumps(_page_doc(5))
    packed = gzip.compress(body)
    srv = serve(
        Reply(headers={"Content-Encoding": "gzip"}, body=packed[: len(packed) // 2], framing="close"),
        Reply(body=body, gzip=True),
    )
    with _client(srv) as client:
        assert client.list_executions_page(RID, start=START, end=END).body == body
        assert client.stats["retries"] == 1


# --------------------------------------------------------------------------- 9.4 what a 200 may say


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"errorCode": "PERMISSION_DENIED", "errorName": "ListExecutionsPermissionDenied"}, PermissionDeniedError),
        ({"errorCode": "NOT_FOUND", "errorName": "ResourceNotFound"}, ResourceNotFoundError),
        ({"errorCode": "INVALID_ARGUMENT", "errorName": "SomethingNew"}, InvalidRequestError),
        ({"errorCode": "INTERNAL"}, ServerError),
        ({"errorName": "Mystery"}, ServerError),
    ],
)
def test_error_body_with_200_is_an_api_error(serve: Any, error: dict[str, str], cls: type) -> None:
    srv = serve(Reply.json({**error, "errorInstanceId": "inst-1", "parameters": {"resourceRid": RID}}))
    with pytest.raises(cls) as info:
        _fetch(_client(srv))
    err = info.value
    assert err.status == 200 and err.error_instance_id == "inst-1" and err.resource_rid == RID
    assert err.error_name == error.get("errorName") and err.error_code == error.get("errorCode")
    assert "success status" in str(err)
    assert len(srv.requests) == 1


def test_empty_object_is_an_empty_last_page(serve: Any) -> None:
    srv = serve(Reply.json({}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = _fetch(_client(srv))
    assert (page.n_executions, page.next_page_token, page.oldest_start, page.body) == (0, None, None, b"{}")


def test_empty_token_on_a_full_page_warns(serve: Any) -> None:
    srv = serve(Reply.json(_page_doc(5, token="")))
    with pytest.warns(RuntimeWarning, match=f"resource {RID}.*full page of 5") as record:
        page = _fetch(_client(srv), page_size=5)
    assert len(record) == 1 and record[0].filename == __file__  # points at the caller
    assert page.next_page_token is None and page.n_executions == 5


def test_empty_token_on_a_short_page_is_the_end(serve: Any) -> None:
    srv = serve(Reply.json(_page_doc(4, token="")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = _fetch(_client(srv), page_size=5)
    assert page.next_page_token is None and page.n_executions == 4


# --------------------------------------------------------------------------- 9.8 secrets and terminals


def _echoing(status: int = 403) -> Reply:
    return Reply.json(
        {
            "errorCode": "PERMISSION_DENIED",
            "errorName": "ListExecutionsPermissionDenied",
            "errorInstanceId": "inst-2",
            "parameters": {
                "resourceRid": RID,
                "token": TOKEN,
                "nested": {"header": f"Bearer {TOKEN}"},
                "note": "\x1b[2J\x1b[1;31mrun rm -rf",
            },
        },
        status=status,
    )


def test_token_echoed_in_parameters_is_redacted(serve: Any) -> None:
    srv = serve(_echoing())
    with pytest.raises(PermissionDeniedError) as info:
        _fetch(_client(srv))
    err = info.value
    for text in (str(err), repr(err), repr(err.parameters), str(err.args)):
        assert TOKEN not in text
    assert err.parameters == {
        "resourceRid": RID,
        "token": "***",
        "nested": {"header": "Bearer ***"},
        "note": "\\x1b[2J\\x1b[1;31mrun rm -rf",
    }
    assert srv.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent, and then echoed


def test_cli_stderr_never_shows_the_echoed_token(
    serve: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = serve(_echoing())
    monkeypatch.setenv("FOUNDRY_HOSTNAME", srv.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", TOKEN)
    code = cli.main(["fetch", RID, "--start", START, "--end", END, "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "ListExecutionsPermissionDenied" in err
    assert TOKEN not in err and len(srv.requests) >= 1
    assert "\x1b" not in err and "\\x1b[2J" in err  # the terminal gets the escape written out, not obeyed


def test_oauth_token_echoed_is_redacted(serve: Any) -> None:
    def handle(request: Request) -> Reply:
        if request.path.endswith("/oauth2/token"):
            return Reply.json({"access_token": OAUTH_TOKEN, "expires_in": 3600})
        return Reply.json(
            {"errorCode": "INTERNAL", "errorName": "Internal", "parameters": {"echo": OAUTH_TOKEN, "s": OAUTH_SECRET}},
            status=500,
        )

    with AdversarialServer(handle) as srv:
        client = FoundryClient(srv.url, client_id="cid", client_secret=OAUTH_SECRET, **QUICK)
        with pytest.raises(ServerError) as info:
            _fetch(client)
        sent = srv.requests
    assert sent[1].headers["Authorization"] == f"Bearer {OAUTH_TOKEN}"
    for text in (str(info.value), repr(info.value.parameters)):
        assert OAUTH_TOKEN not in text and OAUTH_SECRET not in text


def test_control_characters_from_the_server_are_neutralised(serve: Any) -> None:
    evil = "\x1b[2J\x1b[31mEvil\x1b]0;pwned\x07\u202e"
    srv = serve(
        Reply.json({"errorCode": "INVALID_ARGUMENT", "errorName": evil, "parameters": {evil: evil}}, status=400),
        Reply(status=302, headers={"Location": f"https://login.example.com/{evil}"}),
        Reply.json({"error": evil, "error_description": evil}, status=401),
    )
    with pytest.raises(InvalidRequestError) as bad:
        _fetch(_client(srv))
    with pytest.raises(ApiError) as moved:
        _fetch(_client(srv))
    with pytest.raises(AuthenticationError) as oauth:
        _fetch(FoundryClient(srv.url, client_id="cid", client_secret=OAUTH_SECRET, **QUICK))
    for err in (bad.value, moved.value, oauth.value):
        text = str(err)
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in text), text
        assert "\\x1b[2J" in text
    assert bad.value.error_name == "\\x1b[2J\\x1b[31mEvil\\x1b]0;pwned\\x07\\u202e"
    assert all("\x1b" not in k + v for k, v in bad.value.parameters.items())


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_loopback_requests_never_go_through_a_proxy(serve: Any, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    import requests

    origin = serve(Reply.json(_page_doc(2)))
    proxy = serve(Reply(status=502))
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, proxy.url)
    # The environment is live: a plain requests call does go through the proxy, token and all.
    requests.post(origin.url + "/probe", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert len(proxy.requests) == 1 and proxy.requests[0].path.startswith(origin.url)
    page = _fetch(_client(origin))
    assert page.n_executions == 2
    assert len(proxy.requests) == 1  # the client's request went straight to the loopback server
    assert origin.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "bad",
    [TOKEN + "\n", TOKEN + "\r\nX-Evil: 1", "tok\x00en", "tok\x7fen", "tok\x85en", "tok en", "tök€n", "\t"],
)
def test_token_that_cannot_be_a_header_is_rejected_at_construction(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        FoundryClient("acme.palantirfoundry.com", token=bad)
    assert bad not in str(info.value) and TOKEN not in str(info.value) and "token" in str(info.value)
    with pytest.raises(ValueError):
        FoundryClient("acme.palantirfoundry.com", client_id="cid", client_secret=bad)


def test_latin1_token_is_accepted_and_sent(serve: Any) -> None:
    srv = serve(Reply.json(_page_doc(1)))
    assert _fetch(_client(srv, token="tök-ën")).n_executions == 1
    assert srv.requests[0].headers["Authorization"] == "Bearer tök-ën"


def test_oauth_token_that_cannot_be_a_header_is_an_authentication_error(serve: Any) -> None:
    srv = serve(Reply.json({"access_token": "abc\r\nX-Evil: 1", "expires_in": 3600}))
    with pytest.raises(AuthenticationError) as info:
        _fetch(FoundryClient(srv.url, client_id="cid", client_secret=OAUTH_SECRET, **QUICK))
    assert "X-Evil" not in str(info.value) and len(srv.requests) == 1  # never sent on


def test_every_toolkit_error_prints_safely() -> None:
    # Errors other modules build may quote a server's or a file's text (a field name, a path).
    for cls in (SchemaError, CacheError, TransportError):
        text = str(cls("field 'a\x1b]0;title\x07\u202eb' is bad\nsecond line\ttab"))
        assert text == "field 'a\\x1b]0;title\\x07\\u202eb' is bad\nsecond line\ttab"
