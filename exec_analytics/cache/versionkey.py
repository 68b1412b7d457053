"""``version_key``: a text column whose byte order is the semantic order of ``resource_version``.

Every partition file carries it beside ``resource_version``, so that an engine that knows nothing of this
package orders versions correctly with a plain ``ORDER BY version_key`` (``ORDER BY resource_version`` gives
``2.10.0, 2.11.0, 2.9.0``). It is derived from each version string alone, so a new version never changes the
key of an old one and never rewrites the history.

The key, for a semantic version ``MAJOR.MINOR.PATCH[-PRE][+BUILD]`` (an optional leading ``v``)::

    "0" N(MAJOR) "." N(MINOR) "." N(PATCH) ("~" | "-" PRE-IDS) " " <the version string>

where ``N(n)`` is the number of digits (two digits) then the digits, so numbers compare numerically; a release
(``~``, above every identifier character) follows its pre-releases; each pre-release identifier is ``0``
``N(n)`` when numeric and ``1`` and its text when not, each followed by ``!`` (below every identifier
character, so fewer identifiers sort first), as semver.org's rule 11 orders them. Versions of equal precedence
(build metadata differs) are then ordered by their text. Any other string gets ``"1" <string>``: after every
semantic version, by its text. Null stays null.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

_SEMVER = re.compile(
    r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def _number(digits: str) -> str:
    text = str(int(digits))
    return f"{len(text):02d}{text}"


def version_key(version: str) -> str:
    """The sort key of one version string (see the module docstring).

    Parameters
    ----------
    version : str
        Any version string.

    Returns
    -------
    str
        Text whose byte order is the version order.
    """
    match = _SEMVER.match(version)
    if match is None:
        return "1" + version
    pre = match["pre"]
    if pre is None:
        tail = "~"
    else:
        tail = "-" + "".join(("0" + _number(p) if p.isdigit() else "1" + p) + "!" for p in pre.split("."))
    return f"0{_number(match['major'])}.{_number(match['minor'])}.{_number(match['patch'])}{tail} {version}"


def version_keys(versions: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``version_key`` of a column of version strings, computed once per distinct version.

    Parameters
    ----------
    versions : pyarrow.Array or pyarrow.ChunkedArray
        String or dictionary-encoded versions (nulls allowed).

    Returns
    -------
    pyarrow.Array
        ``string`` keys, null where the version is null.
    """
    if isinstance(versions, pa.ChunkedArray):
        versions = versions.combine_chunks() if versions.num_chunks else pa.array([], pa.string())
    encoded = versions if pa.types.is_dictionary(versions.type) else pc.dictionary_encode(versions)
    keys = pa.array([version_key(v) for v in encoded.dictionary.cast(pa.string()).to_pylist()], pa.string())
    return pc.take(keys, encoded.indices)
