"""The paging engine's progress bar: it counts each millisecond of the window once and ends at exactly 100%."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import pandas as pd
import pytest
from tqdm.auto import tqdm

from exec_analytics import FoundryClient, load_executions, paging
from exec_analytics.simulator import FaultConfig, SimulatorServer, Workload


class _RecordingBar(tqdm):  # type: ignore[type-arg, misc]
    """The real bar, which also keeps the count after every update, to check it never passes the total."""

    bars: ClassVar[list[_RecordingBar]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts: list[float] = []
        _RecordingBar.bars.append(self)

    def update(self, n: float | None = 1) -> bool | None:
        out = super().update(n)
        self.counts.append(self.n)
        return out


def test_progress_bar_ends_at_exactly_100_percent_without_warnings(
    make_sim: Callable[..., SimulatorServer],
    workload: Workload,
    sim_now: pd.Timestamp,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Splits (one first slice per worker: idle workers early) and restarts (tokens expire after a page) both
    # re-read parts of a slice, the cases where increments used to sum past the total.
    monkeypatch.setattr(paging, "_SLICES_PER_WORKER", 1)
    monkeypatch.setattr(paging, "_MIN_PAGES_PER_SPLIT_PART", 0)  # split even thin remainders: re-reads are the point
    monkeypatch.setattr(paging, "tqdm", _RecordingBar)
    _RecordingBar.bars = []
    srv = make_sim(page_token_ttl_s=0.004, faults=FaultConfig(latency_s=0.005))
    rids = workload.resource_rids
    with FoundryClient(srv.url, token=srv.token) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_executions(
            rids, sim_now - pd.Timedelta(hours=12), sim_now, client=client, cache=False, workers=4, progress=True
        )
    err = capsys.readouterr().err
    assert df.attrs["slice_splits"] > 0 and df.attrs["token_restarts"] > 0, "nothing re-read: the test proves little"
    assert not [w for w in caught if "tqdm" in type(w.message).__module__], [str(w.message) for w in caught]
    (bar,) = _RecordingBar.bars
    assert bar.counts and all(0 <= n <= bar.total for n in bar.counts)
    assert bar.counts == sorted(bar.counts) and bar.n == bar.total
    shown = [int(p) for p in re.findall(r"executions:\s+(\d+)%", err)]
    assert shown and max(shown) == shown[-1] == 100
    assert "TqdmWarning" not in err and "<-" not in err  # no negative time remaining
    assert f"{df.attrs['pages']:,} pages" in err
