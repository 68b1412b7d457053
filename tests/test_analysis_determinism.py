"""compare_versions: the output depends on the data and the seed only, and verdicts do not hang on the seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.analysis import compare_versions
from exec_analytics.simulator import Workload


@pytest.fixture(scope="module")
def rollout() -> pd.DataFrame:
    """The simulator's 1.3.0 -> 1.4.0 rollout (the regressed version), three days around it."""
    wl = Workload(seed=0)
    truth = wl.ground_truth(wl.main.rid, "2026-11-16T00:00Z", "2026-11-19T00:00Z")
    df = schema.to_frame(pa.Table.from_pandas(truth[list(schema.COLUMNS)], preserve_index=False))
    keep = (df["start_time"] >= "2026-11-16T00:00Z") & (df["start_time"] < "2026-11-19T00:00Z")
    return df[keep.to_numpy()].reset_index(drop=True)


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same executions in another row order, with every categorical's categories in another order."""
    out = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    for name in ("caller_rid", "status", "failure_reason"):
        cats = list(out[name].cat.categories)
        out[name] = out[name].cat.reorder_categories([cats[i] for i in rng.permutation(len(cats))])
    out["caller_rid"] = out["caller_rid"].cat.add_categories(["ri.workshop.main.module.never-ran"])
    return out


@pytest.mark.parametrize("reasons", [False, True])
def test_row_and_category_order_do_not_change_the_output(rollout, reasons):
    one = compare_versions(rollout, "1.3.0", "1.4.0", reasons=reasons, n_resamples=300, seed=3)
    for seed in (1, 2):
        other = shuffled(rollout, seed)
        assert not other["caller_rid"].cat.categories.equals(rollout["caller_rid"].cat.categories)
        pd.testing.assert_frame_equal(compare_versions(other, "1.3.0", "1.4.0", reasons=reasons, n_resamples=300,
                                                       seed=3), one)  # fmt: skip


def test_verdicts_do_not_depend_on_the_seed(rollout):
    verdicts = {seed: compare_versions(rollout, "1.3.0", "1.4.0", seed=seed)["verdict"].astype(str).tolist()
                for seed in range(10)}  # fmt: skip
    assert len({tuple(v) for v in verdicts.values()}) == 1, verdicts
    # At default settings the regressed version is regressed on all but p99, which three days leave open.
    assert verdicts[0] == ["regressed", "regressed", "regressed", "inconclusive", "regressed"]
