"""Where a cache's bytes live: a local directory or an S3 bucket, behind one small interface.

The cache needs five things of a store: read a whole object, replace a whole object atomically (a reader sees
the old bytes or the new, never a mix), delete, list, and keep two writers of one resource apart. A local
directory gives them with a temporary file renamed into place and an OS file lock (:mod:`filelock`: the
kernel releases it when a process dies). S3 gives the first four natively (a PUT is atomic and, since 2020,
strongly consistent) and has no lock, so a writer holds a *lease*: an object created with ``If-None-Match: *``
(at most one creator wins), naming its holder and an expiry, renewed by a heartbeat with ``If-Match`` on its
ETag and deleted with ``If-Match`` too, so a writer can only ever remove or extend its own lease. See
``docs/history-storage.md`` for why this and not a table format.

Keys are ``/``-separated paths relative to the store's root, e.g.
``executions/resource=ri.x/date=2026-11-01/part-0.parquet``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import filelock
import orjson

from ..errors import CacheError
from ..files import fsync_dir, remove_stale_tmp, write_atomic

log = logging.getLogger("exec_analytics.cache")

#: How long an S3 lease lasts without renewal. A holder renews it three times per period from a heartbeat thread
#: (and once more before it writes), so this only bounds how long a writer killed on another host blocks the
#: resource (on the same host a dead holder is noticed at once).
DEFAULT_LEASE_S = 120.0
#: Where a local cache writes its temporary files, outside the data trees.
TMP = "_tmp"


class Storage(ABC):
    """The operations the cache needs of where it lives; keys are relative ``/``-separated paths."""

    @abstractmethod
    def url(self, key: str = "") -> str:
        """How a key is named in messages (a path, or an ``s3://`` URL)."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The whole object, or None when there is none."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create or replace an object atomically and durably."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (a missing one is fine)."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys of every object under ``prefix`` (a folder key, no trailing ``/``), recursively, sorted."""

    @abstractmethod
    def lock(self, key: str, timeout: float, what: str) -> contextlib.AbstractContextManager[None]:
        """Hold the writer lock ``key`` (waits up to ``timeout`` seconds, then raises ``CacheError``)."""

    def tidy(self, folder: str) -> None:  # noqa: B027 - only a local directory has leftovers to tidy
        """Remove what killed writers left in ``folder`` (only under the lock of its resource)."""

    def check_lock(self, key: str) -> None:  # noqa: B027 - an OS lock cannot be lost while held
        """Raise ``CacheError`` when the lock ``key`` this writer holds was lost (e.g. a lease expired)."""


def open_storage(location: str | os.PathLike[str], options: dict[str, Any] | None = None) -> Storage:
    """The storage of a cache location: a local directory, or an ``s3://bucket/prefix`` URL.

    Parameters
    ----------
    location : str or os.PathLike
        A directory, or ``s3://bucket[/prefix]``.
    options : dict, optional
        For S3: keyword arguments of ``boto3.client("s3", ...)`` (e.g. ``endpoint_url``), and ``lease_s``.
        Credentials and the endpoint otherwise come from the usual AWS environment (``AWS_ENDPOINT_URL``...).

    Returns
    -------
    Storage
    """
    text = os.fspath(location)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme == "s3":
        return S3Storage(text, **(options or {}))
    if scheme:
        raise CacheError(
            f"cache location {text!r}: {scheme}:// is not supported; the history lives in a local directory or "
            "on S3 (s3://bucket/prefix), whose conditional writes keep concurrent writers apart"
        )
    return LocalStorage(Path(text).expanduser().absolute())


class LocalStorage(Storage):
    """A local directory: atomic renames, fsync, and OS file locks."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        created = [d for d in path.parents if not d.exists() and self.root in d.parents]
        # Temporary files go to a mirror of the key's folder under _tmp/ (same filesystem: the rename stays
        # atomic), never into the data tree, which engines scan whole.
        write_atomic(path, lambda tmp: tmp.write_bytes(data), tmp_dir=self._tmp_dir(key))
        for d in created:  # new date= (and resource=) folders must be durable too
            fsync_dir(d.parent)

    def delete(self, key: str) -> None:
        path = self.root / key
        path.unlink(missing_ok=True)
        # A day's folder goes with its file, so a listing of folders never shows an empty day.
        with contextlib.suppress(OSError):
            path.parent.rmdir()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def _tmp_dir(self, key: str) -> Path:
        return self.root / TMP / key.rpartition("/")[0]

    def tidy(self, folder: str) -> None:
        remove_stale_tmp(self.root / TMP / folder)
        remove_stale_tmp(self.root / folder)  # where format 2 wrote them, inside the data tree

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float, what: str) -> Iterator[None]:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        holder = path.with_name(path.name + ".json")
        lock = filelock.FileLock(path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.warning("waiting for the cache lock on %s, held by %s", what, _holder_text(holder.read_bytes))
            try:
                lock.acquire(timeout=timeout, poll_interval=0.05)
            except filelock.Timeout:
                raise CacheError(
                    f"the cache is locked for {what} by another process ({_holder_text(holder.read_bytes)}); "
                    f"waited {timeout:.0f} s. Wait for it to finish, raise lock_timeout, or use another cache "
                    f"directory. Lock file: {path}"
                ) from None
        try:
            with contextlib.suppress(OSError):
                holder.write_bytes(_holder_note())
            yield
        finally:
            lock.release()


def _holder_note() -> bytes:
    return orjson.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": _now_ms()})


def _holder_text(read: Callable[[], bytes | None]) -> str:
    try:
        raw = read()
        doc = orjson.loads(raw) if raw else {}
        return f"pid {doc['pid']} on {doc['host']}"
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return "unknown holder"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class S3Storage(Storage):
    """An S3 bucket and prefix, through ``boto3`` (the one client here that sends conditional PUTs).

    Parameters
    ----------
    url : str
        ``s3://bucket[/prefix]``.
    lease_s : float
        Seconds a writer's lease lasts without renewal (default :data:`DEFAULT_LEASE_S`).
    **client_kwargs
        Passed to ``boto3.client("s3", ...)``.
    """

    def __init__(self, url: str, *, lease_s: float = DEFAULT_LEASE_S, **client_kwargs: Any) -> None:
        try:
            import boto3
            import botocore.exceptions
        except ImportError:  # pragma: no cover - depends on the installation
            raise CacheError("an s3:// cache needs boto3: pip install 'exec_analytics[s3]'") from None
        parts = urlsplit(url)
        if not parts.netloc:
            raise CacheError(f"cache location {url!r}: no bucket (expected s3://bucket/prefix)")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.lease_s = float(lease_s)
        self._client = boto3.client("s3", **client_kwargs)
        self._errors = botocore.exceptions.ClientError
        self._failures = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
        #: ETag of each lease this storage holds, by key (renewed by a heartbeat thread, hence the lock).
        self._leases: dict[str, str] = {}
        self._leases_lock = threading.Lock()
        #: Stops the heartbeat that renews every held lease; None while no lease is held.
        self._beating: threading.Event | None = None

    @property
    def client(self) -> Any:
        """The ``boto3`` S3 client (its ``meta.events`` let a benchmark count requests)."""
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}".rstrip("/")

    def _code(self, exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    @contextlib.contextmanager
    def _request(self, what: str, key: str) -> Iterator[None]:
        """S3 and network failures as :class:`CacheError` naming the object (botocore's text has no secret)."""
        try:
            yield
        except self._failures as exc:
            raise CacheError(f"cannot {what} {self.url(key)} ({type(exc).__name__}: {exc})") from None

    def read(self, key: str) -> bytes | None:
        return self._get(key)[0]

    def _get(self, key: str) -> tuple[bytes | None, str | None]:
        with self._request("read", key):
            try:
                got = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self._errors as exc:
                if self._code(exc) in ("NoSuchKey", "404"):
                    return None, None
                raise
            return bytes(got["Body"].read()), str(got["ETag"])

    def write(self, key: str, data: bytes) -> None:
        with self._request("write", key):
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def delete(self, key: str) -> None:
        with self._request("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        folder = self._key(prefix).strip("/")
        full = f"{folder}/" if folder else ""  # the whole bucket when neither has a prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        with self._request("list", prefix):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys += [obj["Key"][cut:] for obj in page.get("Contents", [])]
        return sorted(keys)

    # --- the writer's lease -------------------------------------------------------------------------------

    def _lease_doc(self) -> bytes:
        note = orjson.loads(_holder_note())
        note["expires"] = _now_ms() + int(self.lease_s * 1000)
        note["nonce"] = secrets.token_hex(8)  # two leases of one holder never share an ETag
        return orjson.dumps(note)

    def _put_if(self, key: str, data: bytes, **condition: str) -> str | None:
        """PUT under a condition; the new ETag, or None when the condition failed (someone else won)."""
        with self._request("write", key):
            try:
                out = self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
            except self._errors as exc:
                if self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    return None
                raise
            return str(out["ETag"])

    def _try_lease(self, key: str) -> bool:
        etag = self._put_if(key, self._lease_doc(), IfNoneMatch="*")
        if etag is None:
            raw, current = self._get(key)
            if raw is None or current is None:
                return False  # released meanwhile: try again
            if not self._stale(raw):
                return False
            # Take over a lease whose holder is gone, only if nobody else did first (If-Match on its ETag).
            etag = self._put_if(key, self._lease_doc(), IfMatch=current)
            if etag is None:
                return False
            log.warning("took over the expired lease %s (%s)", self.url(key), _holder_text(lambda: raw))
        with self._leases_lock:
            self._leases[key] = etag
            if self._beating is None:  # one thread renews every lease this storage holds
                self._beating = threading.Event()
                threading.Thread(
                    target=self._heartbeat, args=(self._beating,), name="lease heartbeat", daemon=True
                ).start()
        return True

    def _stale(self, raw: bytes) -> bool:
        try:
            doc = orjson.loads(raw)
            if doc["host"] == socket.gethostname() and not _pid_alive(int(doc["pid"])):
                return True  # its holder died on this machine: no need to wait for the expiry
            return bool(int(doc["expires"]) < _now_ms())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return True  # not a lease this package wrote whole: S3 PUTs are atomic, so nobody holds it

    def _renew(self, key: str) -> bool:
        """Extend a held lease (``If-Match`` on its ETag); False when it is no longer ours."""
        with self._leases_lock:
            etag = self._leases.get(key)
            renewed = None if etag is None else self._put_if(key, self._lease_doc(), IfMatch=etag)
            if renewed is None:
                self._leases.pop(key, None)
                return False
            self._leases[key] = renewed
            return True

    def _heartbeat(self, stop: threading.Event) -> None:
        # Every lease is renewed three times per lease period, so a fetch of any length keeps it; a network
        # failure is retried at the next beat, and check_lock() decides before anything is written.
        while not stop.wait(self.lease_s / 3):
            with self._leases_lock:
                keys = list(self._leases)
            for key in keys:
                try:
                    self._renew(key)
                except CacheError as exc:
                    log.warning("could not renew the lease %s (%s); retrying", self.url(key), exc)

    def check_lock(self, key: str) -> None:
        if not self._renew(key):
            raise CacheError(
                f"the writer's lease {self.url(key)} expired and was taken over by another writer; nothing more "
                "was written. Load again"
            )

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float, what: str) -> Iterator[None]:
        began = time.monotonic()
        warned = False
        while not self._try_lease(key):
            waited = time.monotonic() - began
            if waited >= timeout:
                raise CacheError(
                    f"the cache is locked for {what} by another writer ({_holder_text(lambda: self.read(key))}); "
                    f"waited {waited:.0f} s. Wait for it to finish, raise lock_timeout, or use another cache "
                    f"location. Lease: {self.url(key)}"
                )
            if not warned:
                log.warning("waiting for the cache lock on %s, held by %s", what, _holder_text(lambda: self.read(key)))
                warned = True
            time.sleep(min(0.05 + 0.1 * waited, 0.5))
        try:
            yield
        finally:
            with self._leases_lock:
                etag = self._leases.pop(key, None)
                if not self._leases and self._beating is not None:
                    self._beating.set()
                    self._beating = None
            if etag is not None:
                with contextlib.suppress(self._errors):
                    self._client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=etag)
