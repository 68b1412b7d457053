"""The items of serialized KLL sketches as numpy arrays, for quantiles of their weighted union.

A KLL sketch retains items in levels; an item at level ``h`` stands for ``2**h`` values. Querying the union
of several sketches' retained items (each with its weight) needs no merge: the rank of any value in the union
is the sum of its ranks in each sketch, so its error is at most the sum of theirs (``eps * n`` each, so
``eps`` normalized), and nothing is compacted again. A merge, by contrast, compacts with random coin flips,
so the same sketches merged twice answer slightly differently; the union answers the same every time.

The bytes are read in the Apache DataSketches compact format shared by the C++, Python and Java libraries
(and so by Spark's ``kll_sketch_agg_double``): an 8-byte preamble (``preamble_ints``, serial version, family
15, flags, ``k``, ``m``); for an empty sketch nothing more, for a single item that item; otherwise ``n``
(uint64), ``min_k``, the number of levels, the level offsets (uint32, the last one implied), the minimum and
maximum, then the retained items level by level. Any other layout is read through ``datasketches`` itself
(tests check both readings against the library's ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasketches
import numpy as np

__all__ = ["Items", "unpack", "unpack_many"]

_FAMILY_KLL = 15
_FLAG_EMPTY = 1
_FLAG_SINGLE = 4


@dataclass(frozen=True)
class Items:
    """Retained items of sketches, concatenated, with the sketch each came from.

    Attributes
    ----------
    values : numpy.ndarray
        float64, every retained item.
    weights : numpy.ndarray
        int64, how many values each item stands for (1 in a sketch that never compacted).
    owner : numpy.ndarray
        intp, the index of the sketch (in the order given) each item belongs to.
    n : numpy.ndarray
        int64 per sketch: values summarized (the sum of its weights).
    low, high : numpy.ndarray
        float64 per sketch: the smallest and largest value summarized (NaN for an empty sketch).
    """

    values: np.ndarray
    weights: np.ndarray
    owner: np.ndarray
    n: np.ndarray
    low: np.ndarray
    high: np.ndarray


def unpack(blob: bytes) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """One serialized ``kll_doubles_sketch``: ``(values, weights, n, min, max)``.

    Returns
    -------
    tuple
        float64 values and int64 weights of the retained items, level by level; ``n``; the minimum and
        maximum summarized (NaN when empty).
    """
    data = memoryview(blob)
    try:
        fast = _unpack_compact(data)
    except (ValueError, IndexError):  # a layout this reader does not know, or damage: the library decides
        fast = None
    if fast is not None:
        return fast
    # Any other layout (another serial version, an updatable image): ask the library. Its item iterator
    # reports weight 1 for every item of some merged sketches, so the weights come from its CDF instead: the
    # weight at each distinct retained value is the step of n x rank there.
    try:
        sketch = datasketches.kll_doubles_sketch.deserialize(bytes(blob))
    except Exception as exc:  # the library raises RuntimeError or ValueError on damaged bytes
        raise ValueError(f"not a KLL doubles sketch ({len(data)} bytes): {exc}") from None
    if sketch.is_empty():
        return np.empty(0), np.empty(0, dtype=np.int64), 0, np.nan, np.nan
    values = np.unique(np.array([v for v, _ in sketch], dtype=np.float64))
    cumulative = np.rint(np.asarray(sketch.get_cdf(values, True))[:-1] * sketch.n).astype(np.int64)
    weights = np.diff(cumulative, prepend=0)
    return values, weights, int(sketch.n), sketch.get_min_value(), sketch.get_max_value()


def _unpack_compact(data: memoryview) -> tuple[np.ndarray, np.ndarray, int, float, float] | None:
    """The compact layout read with numpy, or None when ``data`` is not in it (or does not add up)."""
    if len(data) >= 8 and data[2] == _FAMILY_KLL:
        preamble_ints, version, flags = data[0], data[1], data[3]
        if flags & _FLAG_EMPTY and len(data) == 8:
            return np.empty(0), np.empty(0, dtype=np.int64), 0, np.nan, np.nan
        if flags & _FLAG_SINGLE and version == 2 and len(data) == 16:
            value = np.frombuffer(data, dtype="<f8", count=1, offset=8).astype(np.float64)
            return value, np.ones(1, dtype=np.int64), 1, float(value[0]), float(value[0])
        if preamble_ints == 5 and version == 1 and len(data) >= 20:
            n = int(np.frombuffer(data, dtype="<u8", count=1, offset=8)[0])
            levels = int(data[18])
            offsets = np.frombuffer(data, dtype="<u4", count=levels, offset=20).astype(np.int64)
            start = 20 + 4 * levels
            low, high = np.frombuffer(data, dtype="<f8", count=2, offset=start)
            values = np.frombuffer(data, dtype="<f8", offset=start + 16).astype(np.float64)
            bounds = np.append(offsets - offsets[0], len(values))
            sizes = np.diff(bounds)
            weights = np.repeat(np.left_shift(np.int64(1), np.arange(levels, dtype=np.int64)), sizes)
            if sizes.min(initial=0) >= 0 and int(weights.sum()) == n:
                return values, weights, n, float(low), float(high)
    return None


def unpack_many(blobs: Sequence[bytes]) -> Items:
    """The retained items of every sketch in ``blobs``, concatenated (see :class:`Items`).

    Returns
    -------
    Items
    """
    parts = [unpack(b) for b in blobs]
    sizes = np.array([len(p[0]) for p in parts], dtype=np.intp)
    return Items(
        values=np.concatenate([p[0] for p in parts]) if parts else np.empty(0),
        weights=np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype=np.int64),
        owner=np.repeat(np.arange(len(parts), dtype=np.intp), sizes),
        n=np.array([p[2] for p in parts], dtype=np.int64),
        low=np.array([p[3] for p in parts], dtype=np.float64),
        high=np.array([p[4] for p in parts], dtype=np.float64),
    )
