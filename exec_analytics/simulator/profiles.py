"""The resources the simulator serves, their callers and version timelines: the known truth.

Everything here is static per ``(seed, scale)``: RIDs, callers with their traffic share, latency and
failure profile, and the version rollouts anchored to absolute dates. Per-hour executions are drawn from
these profiles in :mod:`.workload`. Tests of the statistics read the truth from here (which version
regressed, by how much, which comparison is confounded) instead of hard-coding numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np
import pandas as pd

from ..timeutil import epoch_ms, to_utc

__all__ = [
    "CALLER_KINDS",
    "FAILURE_REASONS",
    "CallerProfile",
    "Incident",
    "ResourceProfile",
    "VersionSpec",
    "build_profiles",
]

HOUR_MS = 3_600_000

#: Failure classifications the simulator emits (the real set is unknown; see docs/endpoint.md).
FAILURE_REASONS: tuple[str, ...] = (
    "timeout",
    "invalid_parameter",
    "upstream_unavailable",
    "out_of_memory",
    "permission_denied",
    "internal_error",
)
# How the failures of an average caller split between reasons.
_REASON_SHARE = np.array([0.22, 0.30, 0.20, 0.06, 0.12, 0.10])

#: Caller kinds, named like :func:`exec_analytics.rids.caller_kind` derives them from the RID.
CALLER_KINDS: tuple[str, ...] = (
    "workshop.module",
    "actions.action-type",
    "object-sentinel.monitor",
    "function-registry.function",
)
KIND_WORKSHOP, KIND_ACTION, KIND_AUTOMATION, KIND_FUNCTION, KIND_NONE = range(5)
_KIND_RID_PREFIX = (
    "ri.workshop.main.module.",
    "ri.actions.main.action-type.",
    "ri.object-sentinel.main.monitor.",
    "ri.function-registry.main.function.",
)
# Typical latency of each caller kind relative to the resource median: automations run big batches.
_KIND_LATENCY = (1.0, 1.3, 3.2, 0.7)
_STATIC_STREAM = 3_000_000_000  # far above any hour index, so static draws never reuse an hour's stream
_EPOCH_DOW = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class VersionSpec:
    """One version of a resource and how it was rolled out.

    Attributes
    ----------
    version : str
        The ``resourceVersion`` string.
    canary_start, full_start : pandas.Timestamp or None
        The rollout begins at ``canary_start`` with ``canary_share`` of executions and ramps linearly to
        all of them at ``full_start``. None for the first version (live since the resource was created).
    canary_share : float
        Share of executions on this version when the canary starts.
    latency_multiplier : float
        True effect on every execution's duration, holding the caller fixed.
    failure_multipliers : mapping of str to float
        True effect on the rate of each failure reason (absent reasons: 1.0), holding the caller fixed.
    kind_shares : mapping of str to float
        Uneven rollouts: for the caller kinds listed (``CALLER_KINDS`` names, or ``"none"`` for executions
        without a caller), the share of executions on this version during the whole canary, instead of the
        linear ramp. Empty for an even rollout.
    """

    version: str
    canary_start: pd.Timestamp | None = None
    full_start: pd.Timestamp | None = None
    canary_share: float = 0.1
    latency_multiplier: float = 1.0
    failure_multipliers: Mapping[str, float] = field(default_factory=dict)
    kind_shares: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Incident:
    """A stretch of time when one failure reason is far more frequent (e.g. an upstream outage)."""

    start: pd.Timestamp
    end: pd.Timestamp
    failure_reason: str
    multiplier: float


@dataclass(frozen=True)
class CallerProfile:
    """One caller of a resource.

    Attributes
    ----------
    rid : str
        The ``callerRid`` reported on its executions.
    kind : str
        One of ``CALLER_KINDS``.
    share : float
        Expected share of the resource's executions over a week.
    latency_multiplier : float
        Its executions' duration relative to the resource median.
    failure_multiplier : float
        Its overall failure rate relative to the resource base rate.
    reason_multipliers : mapping of str to float
        Per failure reason, on top of ``failure_multiplier``.
    trace_owner : str
        The ``traceOwningRid`` of its executions.
    """

    rid: str
    kind: str
    share: float
    latency_multiplier: float
    failure_multiplier: float
    reason_multipliers: Mapping[str, float]
    trace_owner: str


@dataclass(frozen=True, eq=False)
class ResourceProfile:
    """A function or automation the simulator serves, with the truth behind its executions.

    Attributes
    ----------
    index : int
        Position in ``Workload.resources``; part of the per-hour random stream.
    rid, name, kind : str
        The resource RID, a human name and its kind (``"function"``).
    readable : bool
        Whether the default token may list its executions.
    rate_per_hour : float
        Mean executions per hour over a week (already multiplied by the workload ``scale``).
    created : pandas.Timestamp
        No executions before this time.
    median_ms, sigma : float
        Log-normal duration of a successful execution for an average caller (median, log-sd).
    tail_probability : float
        Share of executions with an extra heavy (Pareto) tail factor.
    timeout_ms : int
        The execution time limit: timeouts last about this long, successes never longer.
    base_failure_rate : float
        Failure probability of an average caller on a neutral version.
    no_caller_share : float
        Share of executions without a ``callerRid``.
    callers : tuple of CallerProfile
    versions : tuple of VersionSpec
        In rollout order.
    regressed_version : str or None
        A version with a real (per-caller) regression.
    confounded_version : str or None
        A version with no per-caller effect whose rollout reached slow callers first, so a naive
        comparison against its predecessor looks like a regression.
    incidents : tuple of Incident
    """

    index: int
    rid: str
    name: str
    kind: str
    readable: bool
    rate_per_hour: float
    created: pd.Timestamp
    median_ms: float
    sigma: float
    tail_probability: float
    timeout_ms: int
    base_failure_rate: float
    no_caller_share: float
    callers: tuple[CallerProfile, ...]
    versions: tuple[VersionSpec, ...]
    regressed_version: str | None = None
    confounded_version: str | None = None
    incidents: tuple[Incident, ...] = ()

    @property
    def version_names(self) -> list[str]:
        """Version strings in rollout order."""
        return [v.version for v in self.versions]

    @property
    def latency_multipliers(self) -> dict[str, float]:
        """True per-caller latency effect of each version."""
        return {v.version: v.latency_multiplier for v in self.versions}

    @property
    def failure_multipliers(self) -> dict[str, dict[str, float]]:
        """True per-caller effect of each version on each failure reason (1.0 when unchanged)."""
        return {
            v.version: {r: float(v.failure_multipliers.get(r, 1.0)) for r in FAILURE_REASONS} for v in self.versions
        }

    @property
    def caller_rids(self) -> list[str]:
        return [c.rid for c in self.callers]

    def version_shares(self, when: object, caller_kind: str | None = None) -> dict[str, float]:
        """Expected share of executions on each version at time ``when`` for a caller kind.

        Parameters
        ----------
        when : str, datetime or pandas.Timestamp
            Timezone-aware time.
        caller_kind : str, optional
            A ``CALLER_KINDS`` name or ``"none"``; None means an interactive caller (workshop module).

        Returns
        -------
        dict
            Version -> share (only versions with a positive share).
        """
        t = np.array([epoch_ms(to_utc(when, "when"))], dtype=np.int64)
        kind_code = KIND_WORKSHOP if caller_kind is None else _kind_code(caller_kind)
        cur, nxt, share = self.rollout(t, np.array([kind_code]))
        out = {self.versions[int(cur[0])].version: 1.0 - float(share[0])}
        if share[0] > 0:
            out[self.versions[int(nxt[0])].version] = float(share[0])
        return {k: v for k, v in out.items() if v > 0}

    # --- arrays the generator uses; computed once per profile -------------------------------------

    def rollout(self, t_ms: np.ndarray, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current version, next version and the probability of the next one, per execution.

        Parameters
        ----------
        t_ms : numpy.ndarray
            Start times, epoch milliseconds.
        kinds : numpy.ndarray
            Caller kind codes (``KIND_*``), one per start time.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray, numpy.ndarray)
            Current and next version codes and the probability of the next one.
        """
        tab = self.tables
        full = tab["full_ms"]
        cur = np.searchsorted(full, t_ms, side="right") - 1
        cur = np.clip(cur, 0, len(full) - 1)
        nxt = np.minimum(cur + 1, len(full) - 1)
        canary = tab["canary_ms"][nxt]
        in_canary = (nxt > cur) & (t_ms >= canary)
        span = np.maximum(full[nxt] - canary, 1)
        ramp = tab["canary_share"][nxt] + (1.0 - tab["canary_share"][nxt]) * (t_ms - canary) / span
        kind_share = tab["kind_share"][nxt, kinds]
        share = np.where(np.isnan(kind_share), ramp, kind_share)
        share = np.where(in_canary, np.clip(share, 0.0, 1.0), 0.0)
        return cur, nxt, share

    @cached_property
    def tables(self) -> dict[str, np.ndarray]:
        """Numeric tables the generator and the renderer index by caller, version and reason code."""
        return _build_tables(self)


def _kind_code(kind: str) -> int:
    if kind == "none":
        return KIND_NONE
    try:
        return CALLER_KINDS.index(kind)
    except ValueError:
        raise ValueError(f"caller_kind {kind!r} is not one of {', '.join(CALLER_KINDS)} or 'none'") from None


def _ms(ts: pd.Timestamp | None, default: int) -> int:
    return default if ts is None else epoch_ms(ts)


def _build_tables(p: ResourceProfile) -> dict[str, np.ndarray]:
    """Numeric tables indexed by caller code (last code = no caller), version code and reason code."""
    n_c = len(p.callers)
    lo = np.iinfo(np.int64).min // 2
    versions = p.versions
    kind_share = np.full((len(versions), 5), np.nan)
    for i, v in enumerate(versions):
        for kind, share in v.kind_shares.items():
            kind_share[i, _kind_code(kind)] = share
    caller_kind = np.array([CALLER_KINDS.index(c.kind) for c in p.callers] + [KIND_NONE], dtype=np.int8)
    reason_mult = np.ones((n_c + 1, len(FAILURE_REASONS)))
    for i, c in enumerate(p.callers):
        reason_mult[i] = [c.reason_multipliers.get(r, 1.0) for r in FAILURE_REASONS]
    weekly = _weekly_profiles()
    caller_share = np.array([c.share for c in p.callers] + [p.no_caller_share])
    # Expected executions per hour of week for each caller: share x rate x its kind's weekly shape.
    lam = caller_share[:, None] * p.rate_per_hour * weekly[np.minimum(caller_kind, KIND_NONE)]
    owners = [p.rid, *sorted({c.trace_owner for c in p.callers})]
    owner_code = np.array([owners.index(c.trace_owner) for c in p.callers] + [0], dtype=np.int16)
    return {
        "full_ms": np.array([_ms(v.full_start, lo) for v in versions], dtype=np.int64),
        "canary_ms": np.array([_ms(v.canary_start, lo) for v in versions], dtype=np.int64),
        "canary_share": np.array([v.canary_share for v in versions]),
        "kind_share": kind_share,
        "version_latency": np.array([v.latency_multiplier for v in versions]),
        "version_reason_t": np.array(
            [[v.failure_multipliers.get(r, 1.0) for v in versions] for r in FAILURE_REASONS], dtype=np.float64
        ),
        "caller_kind": caller_kind,
        "caller_latency": np.array([c.latency_multiplier for c in p.callers] + [1.0]),
        "caller_failure": np.array([c.failure_multiplier for c in p.callers] + [1.0]),
        "caller_reason": reason_mult,
        "caller_reason_t": np.ascontiguousarray(reason_mult.T),
        "lambda_week": lam,
        "load_week": 1.0 + 0.12 * (weekly[KIND_WORKSHOP] - 1.0),
        "owner_code": owner_code,
        "owners": np.array(owners, dtype=object),
    }


def _weekly_profiles() -> np.ndarray:
    """Traffic shape per caller kind over the 168 hours of a week (Monday 00:00 UTC first), mean 1.

    Interactive callers (Workshop, actions, no caller) follow office hours with a quiet weekend;
    automations run around the clock with a nightly batch; function callers are in between.
    """
    hod = np.arange(168) % 24
    dow = np.arange(168) // 24
    office = 0.12 + np.exp(-0.5 * ((hod - 14.0) / 3.5) ** 2)
    office *= np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.3, 0.25])[dow]
    office /= office.mean()
    auto = 1.0 + 2.0 * (hod == 2) + 0.6 * (hod == 3)
    auto /= auto.mean()
    func = 0.5 * office + 0.5 * auto
    return np.stack([office, office, auto, func, office])


def hour_of_week(hour_index: int) -> int:
    """Hour of the week (Monday 00:00 UTC = 0) of an hour counted from the Unix epoch."""
    return ((hour_index // 24 + _EPOCH_DOW) % 7) * 24 + hour_index % 24


# --- the default resources ------------------------------------------------------------------------


def _ts(text: str) -> pd.Timestamp:
    ts: pd.Timestamp = pd.Timestamp(text, tz="UTC")
    return ts


@dataclass(frozen=True)
class _Spec:
    name: str
    rate: float
    kinds: tuple[int, int, int, int]  # number of callers per kind (workshop, action, automation, function)
    median_ms: float
    sigma: float
    timeout_ms: int
    base_failure: float
    no_caller_share: float
    versions: tuple[VersionSpec, ...]
    readable: bool = True
    regressed: str | None = None
    confounded: str | None = None
    incidents: tuple[Incident, ...] = ()
    tail_probability: float = 0.012


_CREATED = _ts("2025-01-01")

_SPECS: tuple[_Spec, ...] = (
    _Spec(
        name="score-order-risk",
        rate=250.0,
        kinds=(13, 8, 5, 6),
        median_ms=180.0,
        sigma=0.7,
        timeout_ms=60_000,
        base_failure=0.022,
        no_caller_share=0.03,
        versions=(
            VersionSpec("1.0.0"),
            VersionSpec("1.1.0", _ts("2026-08-18T09:00"), _ts("2026-08-21T09:00")),
            VersionSpec("1.2.0", _ts("2026-10-13T09:00"), _ts("2026-10-16T09:00")),
            # No per-caller change, but the canary went to the (slow) automation callers first.
            VersionSpec(
                "1.3.0",
                _ts("2026-11-03T09:00"),
                _ts("2026-11-10T09:00"),
                kind_shares={
                    "object-sentinel.monitor": 0.9,
                    "workshop.module": 0.03,
                    "actions.action-type": 0.03,
                    "function-registry.function": 0.03,
                    "none": 0.03,
                },
            ),
            # A real regression: slower for every caller and three times the timeouts.
            VersionSpec(
                "1.4.0",
                _ts("2026-11-17T09:00"),
                _ts("2026-11-20T09:00"),
                canary_share=0.1,
                latency_multiplier=1.4,
                failure_multipliers={"timeout": 3.0},
            ),
        ),
        regressed="1.4.0",
        confounded="1.3.0",
        incidents=(Incident(_ts("2026-11-12T14:00"), _ts("2026-11-12T15:30"), "upstream_unavailable", 40.0),),
    ),
    _Spec(
        name="sync-supplier-status",
        rate=80.0,
        kinds=(2, 3, 10, 3),
        median_ms=2_500.0,
        sigma=0.9,
        timeout_ms=300_000,
        base_failure=0.022,
        no_caller_share=0.01,
        versions=(
            VersionSpec("2.8.0"),
            VersionSpec("2.9.0", _ts("2026-10-20T08:00"), _ts("2026-10-22T08:00")),
            VersionSpec("2.10.0", _ts("2026-11-09T08:00"), _ts("2026-11-11T08:00"), latency_multiplier=0.85),
            VersionSpec("2.11.0", _ts("2026-11-23T08:00"), _ts("2026-11-24T08:00")),
        ),
        incidents=(Incident(_ts("2026-11-24T03:00"), _ts("2026-11-24T05:00"), "timeout", 12.0),),
    ),
    _Spec(
        name="render-monthly-statement",
        rate=15.0,
        kinds=(7, 4, 2, 2),
        median_ms=900.0,
        sigma=0.8,
        timeout_ms=120_000,
        base_failure=0.03,
        no_caller_share=0.05,
        versions=(
            VersionSpec("0.3.0"),
            VersionSpec("0.4.0", _ts("2026-10-05T10:00"), _ts("2026-10-06T10:00")),
            VersionSpec("0.4.1", _ts("2026-11-05T10:00"), _ts("2026-11-06T10:00")),
            VersionSpec("0.5.0", _ts("2026-11-19T10:00"), _ts("2026-11-20T10:00")),
        ),
    ),
    _Spec(
        name="adjust-compensation-bands",
        rate=30.0,
        kinds=(6, 4, 3, 2),
        median_ms=400.0,
        sigma=0.6,
        timeout_ms=60_000,
        base_failure=0.02,
        no_caller_share=0.02,
        versions=(VersionSpec("3.1.0"), VersionSpec("3.2.0", _ts("2026-11-10T12:00"), _ts("2026-11-12T12:00"))),
        readable=False,
    ),
)


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    out = []
    for row in raw:  # a few dozen static ids per workload, not a hot path
        h = row.tobytes().hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def build_users(seed: int, n: int = 240) -> list[str]:
    """User ids (UUIDs) of the people calling the resources; deterministic from the seed."""
    return _uuids(np.random.default_rng([seed, _STATIC_STREAM, 1]), n)


def build_profiles(seed: int, scale: float) -> list[ResourceProfile]:
    """The default resources for a workload seed and traffic scale."""
    profiles = []
    for index, spec in enumerate(_SPECS):
        rng = np.random.default_rng([seed, index, _STATIC_STREAM])
        resource_rid = "ri.function-registry.main.function." + _uuids(rng, 1)[0]
        callers = _build_callers(rng, spec)
        profiles.append(
            ResourceProfile(
                index=index,
                rid=resource_rid,
                name=spec.name,
                kind="function",
                readable=spec.readable,
                rate_per_hour=spec.rate * scale,
                created=_CREATED,
                median_ms=spec.median_ms,
                sigma=spec.sigma,
                tail_probability=spec.tail_probability,
                timeout_ms=spec.timeout_ms,
                base_failure_rate=spec.base_failure,
                no_caller_share=spec.no_caller_share,
                callers=callers,
                versions=spec.versions,
                regressed_version=spec.regressed,
                confounded_version=spec.confounded,
                incidents=spec.incidents,
            )
        )
    return profiles


def _build_callers(rng: np.random.Generator, spec: _Spec) -> tuple[CallerProfile, ...]:
    kinds = np.repeat(np.arange(4), spec.kinds)
    n = len(kinds)
    rids = [_KIND_RID_PREFIX[k] + u for k, u in zip(kinds, _uuids(rng, n), strict=True)]
    # Zipf-like traffic shares over a random ranking; the busiest automation is put second so that
    # automations carry a real share of the traffic (that is what makes the confounded rollout bite).
    ranks = rng.permutation(n)
    autos = np.flatnonzero(kinds == KIND_AUTOMATION)
    if len(autos):
        top_auto = autos[np.argmin(ranks[autos])]
        other = int(np.flatnonzero(ranks == 1)[0])
        ranks[top_auto], ranks[other] = ranks[other], ranks[top_auto]
    weights = 1.0 / (ranks + 1.0) ** 1.1
    shares = weights / weights.sum() * (1.0 - spec.no_caller_share)
    latency = np.array(_KIND_LATENCY)[kinds] * rng.lognormal(0.0, 0.3, n)
    failure = rng.lognormal(0.0, 0.4, n)
    # A few smaller callers hurt much more than the rest (bad parameters, missing permissions); a big
    # caller failing that often would have been noticed and fixed.
    failure *= np.where((rng.random(n) < 0.12) & (ranks >= 3), 4.0, 1.0)
    failure = np.minimum(failure, 8.0)
    reason = rng.lognormal(0.0, 0.3, size=(n, len(FAILURE_REASONS)))
    dominant = rng.integers(0, len(FAILURE_REASONS), n)
    reason[np.arange(n), dominant] *= np.where(rng.random(n) < 0.5, 3.0, 1.0)
    reason[kinds == KIND_AUTOMATION, 0] *= 2.0  # long batch runs time out
    reason[kinds == KIND_AUTOMATION, 3] *= 3.0  # and run out of memory
    out = []
    for i in range(n):
        out.append(
            CallerProfile(
                rid=rids[i],
                kind=CALLER_KINDS[kinds[i]],
                share=float(shares[i]),
                latency_multiplier=float(latency[i]),
                failure_multiplier=float(failure[i]),
                reason_multipliers=MappingProxyType(
                    dict(zip(FAILURE_REASONS, reason[i].round(4).tolist(), strict=True))
                ),
                trace_owner=rids[i],
            )
        )
    return tuple(out)


__all__ += ["HOUR_MS", "build_users", "hour_of_week"]
