"""Regenerate the committed sample ``data/executions_sample.parquet``.

Serves the built-in Foundry simulator on loopback with its clock frozen at the demo's "now", loads three ISO
weeks of its three readable resources through the real client and loader (no cache), and writes the
executions table as zstd Parquet. The same seed always gives the same file content::

    python data/make_sample.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from exec_analytics import FoundryClient, load_executions
from exec_analytics.demo import DEMO_NOW
from exec_analytics.simulator import SimClock, SimulatorServer, Workload

HERE = Path(__file__).resolve().parent
OUT = HERE / "executions_sample.parquet"
#: ISO weeks 2026-W45 to 2026-W47: the 1.3.0 canary of score-order-risk (2026-11-03..10), the upstream
#: incident of 2026-11-12 and the 1.4.0 rollout (2026-11-17..20), each with a full week before the next.
START = pd.Timestamp("2026-11-02T00:00Z")
END = pd.Timestamp("2026-11-23T00:00Z")
SEED = 0


def make_sample(
    out: Path = OUT, *, seed: int = SEED, start: pd.Timestamp = START, end: pd.Timestamp = END
) -> pd.DataFrame:
    """Load ``[start, end)`` of the simulator's readable resources and write them to ``out``.

    Returns
    -------
    pandas.DataFrame
        The executions table that was written.
    """
    workload = Workload(seed=seed)
    with (
        SimulatorServer(workload, clock=SimClock(now=DEMO_NOW)) as server,
        FoundryClient(hostname=server.url, token=server.token) as client,
    ):
        df = load_executions(workload.resource_rids, start, end, client=client, cache=False, progress=False)
    names = {r.rid: r.name for r in workload.resources if r.rid in workload.resource_rids}
    # Provenance that describes the data, not the run: a fixed file for a fixed seed.
    df.attrs = {}
    table_meta = {"seed": seed, "start": start.isoformat(), "end": end.isoformat(), "names": names}
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"exec_analytics.sample"] = json.dumps(table_meta, sort_keys=True).encode()
    pq.write_table(table.replace_schema_metadata(meta), out, compression="zstd", compression_level=19)
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default {OUT.relative_to(HERE.parent)})")
    parser.add_argument("--seed", type=int, default=SEED, help="workload seed (default 0)")
    args = parser.parse_args()
    df = make_sample(args.out, seed=args.seed)
    print(f"{len(df):,} executions of {df['resource_rid'].nunique()} resources, {START:%Y-%m-%d} to {END:%Y-%m-%d}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
