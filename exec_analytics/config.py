"""Settings read from the environment, and the one rule for turning a hostname into a base URL.

The variable names are those of Palantir's own SDK (``FOUNDRY_HOSTNAME``, ``FOUNDRY_TOKEN``,
``FOUNDRY_CLIENT_ID``, ``FOUNDRY_CLIENT_SECRET``) so an environment that already works with it works here.
Nothing in this module touches the network.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from platformdirs.macos import MacOS
from platformdirs.windows import Windows

__all__ = ["Settings", "default_cache_dir", "is_loopback_host", "normalize_base_url"]

_APP = "exec_analytics"


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the directory for the local execution history.

    Order: ``EXEC_ANALYTICS_CACHE_DIR``; else the platform's user cache directory for ``exec_analytics``
    (:mod:`platformdirs`): ``~/Library/Caches/exec_analytics`` on macOS, ``%LOCALAPPDATA%\\exec_analytics\\Cache``
    on Windows, ``$XDG_CACHE_HOME/exec_analytics`` or ``~/.cache/exec_analytics`` elsewhere.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default ``os.environ``).

    Returns
    -------
    pathlib.Path
        An absolute path; it is not created here.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("EXEC_ANALYTICS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    # The platform's class is chosen here, not at import (as platformdirs.user_cache_dir does), so that the
    # rule is the same however the package was imported.
    if sys.platform == "darwin":
        return Path(MacOS(_APP, appauthor=False).user_cache_dir).absolute()
    if sys.platform == "win32":  # pragma: no cover - Windows
        return Path(Windows(_APP, appauthor=False).user_cache_dir).absolute()
    # The XDG rule, read from ``environ`` (platformdirs would read os.environ): relative values are invalid
    # and must be ignored, says the spec.
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / _APP
    return Path.home() / ".cache" / _APP


def _mask(value: str | None) -> str:
    return "None" if value is None else "'***'"


@dataclass(frozen=True)
class Settings:
    """Connection and cache settings, usually from :meth:`from_env`.

    The ``repr`` shows ``'***'`` for the token and the client secret, so a Settings object can be
    printed or logged safely.

    Attributes
    ----------
    hostname : str or None
        Foundry hostname or base URL (``acme.palantirfoundry.com``, ``http://127.0.0.1:8765``).
    token : str or None
        Bearer token (user or service-user token).
    client_id, client_secret : str or None
        OAuth2 client-credentials pair, used when no token is given.
    cache_dir : pathlib.Path
        Where the Parquet history lives (see :func:`default_cache_dir`).
    """

    hostname: str | None = None
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    cache_dir: Path = field(default_factory=default_cache_dir)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``FOUNDRY_HOSTNAME``, ``FOUNDRY_TOKEN``, ``FOUNDRY_CLIENT_ID``, ``FOUNDRY_CLIENT_SECRET``
        and ``EXEC_ANALYTICS_CACHE_DIR`` (see :func:`default_cache_dir`).

        Empty variables count as unset.

        Parameters
        ----------
        environ : mapping, optional
            The environment to read (default ``os.environ``).

        Returns
        -------
        Settings
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            hostname=get("FOUNDRY_HOSTNAME"),
            token=get("FOUNDRY_TOKEN"),
            client_id=get("FOUNDRY_CLIENT_ID"),
            client_secret=get("FOUNDRY_CLIENT_SECRET"),
            cache_dir=default_cache_dir(env),
        )

    def __repr__(self) -> str:
        return (
            f"Settings(hostname={self.hostname!r}, token={_mask(self.token)}, client_id={self.client_id!r}, "
            f"client_secret={_mask(self.client_secret)}, cache_dir={str(self.cache_dir)!r})"
        )

    __str__ = __repr__


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``*.localhost``, 127.0.0.0/8 and ``::1``: hosts where plain http is acceptable."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Path segments after which a pasted URL is a Foundry UI or API location, not a base: dropped.
_UI_SEGMENTS = ("workspace", "api", "multipass")


def normalize_base_url(hostname: str) -> str:
    """Turn a hostname or base URL into ``scheme://host[:port][/prefix]`` without a trailing slash.

    - ``acme.palantirfoundry.com`` → ``https://acme.palantirfoundry.com``;
    - a full URL keeps its scheme, port and path prefix (for a reverse proxy), but a path from the
      Foundry UI or API (``/workspace/…``, ``/api/…``, ``/multipass/…``), a query and a fragment are
      dropped, so a URL pasted from the browser works;
    - plain ``http`` is accepted only for loopback hosts (``localhost``, 127.0.0.0/8, ``::1``): a bearer
      token must never cross a network in clear text.

    Parameters
    ----------
    hostname : str
        Host or URL.

    Returns
    -------
    str
        The base URL, e.g. ``https://acme.palantirfoundry.com`` or ``http://127.0.0.1:8765``.

    Raises
    ------
    TypeError
        If ``hostname`` is not a string.
    ValueError
        If it is empty, has credentials or an unsupported scheme, a bad port, or is plain http to a
        non-loopback host.
    """
    if not isinstance(hostname, str):
        raise TypeError(f"hostname must be a str, got {type(hostname).__name__}")
    text = hostname.strip()
    if not text:
        raise ValueError("hostname is empty; pass hostname= or set FOUNDRY_HOSTNAME")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"hostname {hostname!r}: scheme must be https (or http for loopback), got {scheme!r}")
    if "@" in parts.netloc:
        # Never echo the netloc: it carries credentials.
        raise ValueError("hostname must not contain credentials (user:password@); pass token= instead")
    host = parts.hostname
    if not host:
        raise ValueError(f"hostname {hostname!r} has no host")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ValueError(f"hostname {hostname!r} has an invalid port") from None
    if any(c.isspace() for c in parts.netloc):
        raise ValueError(f"hostname {hostname!r} contains whitespace")
    if scheme == "http" and not is_loopback_host(host):
        raise ValueError(
            f"hostname {hostname!r}: plain http is only allowed for loopback hosts (localhost, 127.0.0.0/8, ::1); "
            "use https"
        )
    segments = [s for s in parts.path.split("/") if s]
    for i, seg in enumerate(segments):
        if seg.lower() in _UI_SEGMENTS:
            segments = segments[:i]
            break
    prefix = "".join("/" + s for s in segments)
    return f"{scheme}://{parts.netloc.lower()}{prefix}"
