"""Foundry resource identifiers (RIDs): validation and the caller kind derived from them."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["RID_PATTERN", "caller_kind", "validate_rid", "validate_rids"]

# ri.<service>.<instance>.<type>.<locator>; the instance is usually "main" but may be empty.
RID_PATTERN = re.compile(r"^ri\.[a-z][a-z0-9-]*\.[a-z0-9-]*\.[a-z][a-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate_rid(rid: object, name: str = "resource_rid") -> str:
    """Return ``rid`` if it is a well-formed Foundry RID, else raise.

    Parameters
    ----------
    rid : object
        The value to check.
    name : str
        Parameter name used in the error message.

    Returns
    -------
    str
        The RID, unchanged.

    Raises
    ------
    TypeError
        If ``rid`` is not a string.
    ValueError
        If it does not look like ``ri.<service>.<instance>.<type>.<locator>``.
    """
    if not isinstance(rid, str):
        raise TypeError(f"{name} must be a str RID, got {type(rid).__name__}")
    if not RID_PATTERN.match(rid):
        raise ValueError(
            f"{name} {rid!r} is not a Foundry RID; expected 'ri.<service>.<instance>.<type>.<locator>', "
            "e.g. 'ri.function-registry.main.function.c26f11c8-cdb3-4f44-9f5d-9816ea1c82da'"
        )
    return rid


def validate_rids(resource_rid: str | Sequence[str], name: str = "resource_rid") -> list[str]:
    """One RID or a non-empty sequence of them, each checked, duplicates dropped, order kept.

    Returns
    -------
    list of str
        The distinct RIDs in the order given.

    Raises
    ------
    TypeError, ValueError
        As :func:`validate_rid`, or for an empty sequence or another type.
    """
    if isinstance(resource_rid, str):
        rids = [resource_rid]
    elif isinstance(resource_rid, Sequence) and resource_rid:
        rids = list(resource_rid)
    else:
        raise TypeError(f"{name} must be a RID string or a non-empty list of them")
    for rid in rids:
        validate_rid(rid, name)
    return list(dict.fromkeys(rids))


def caller_kind(callers: pd.Series) -> pd.Series:
    """Derive the caller kind (``<service>.<type>``) from caller RIDs, vectorised over categories.

    ``ri.workshop.main.module.…`` becomes ``workshop.module``; ``ri.actions.main.action-type.…`` becomes
    ``actions.action-type``. Missing callers and strings that are not RIDs give NA.

    Parameters
    ----------
    callers : pandas.Series
        Caller RIDs, ideally categorical (the work is then done once per distinct caller).

    Returns
    -------
    pandas.Series
        Categorical caller kinds aligned with ``callers``.
    """
    cat = callers.astype("category")
    cats = pd.Series(cat.cat.categories.astype(str))
    parts = cats.str.extract(r"^ri\.([^.]+)\.[^.]*\.([^.]+)\.")
    kinds = (parts[0] + "." + parts[1]).to_numpy(dtype=object)
    codes = cat.cat.codes.to_numpy()
    out = np.where(codes >= 0, kinds[np.maximum(codes, 0)] if len(kinds) else None, None)
    return pd.Series(out, index=callers.index, name="caller_kind", dtype="category")
