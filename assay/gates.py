"""Quality gates: absolute bounds on a run's metrics, and regressions against the last good run.

A pipeline's ``gates:`` maps a metric to bounds (see ``assay.config.Gate``)::

    gates:
      accuracy: {min: 0.85, max_drop: 0.02}

Every model of the run is checked on its **overall** value (slice ``all``) of that metric:

``min``
    fails when the value is below ``min`` (or missing/NaN: a gate that cannot be checked fails).
``max``
    fails when the value is above ``max`` (or missing/NaN).
``max_drop``
    compares the model with the same model in the **previous good run**: the latest complete
    run of the same pipeline whose gates did not fail, with an earlier ``as_of`` or the same
    ``as_of`` and an earlier run id (see :func:`previous_good_run`). Runs without a gate
    verdict (run before gates were configured, or through ``run_local``) count as good.
    The *drop* is ``previous − value`` for a metric where higher is better and
    ``value − previous`` otherwise, so a positive drop is always a worsening. A drop fails the
    gate only when it is **larger than max_drop and larger than the noise**:

    * *paired bootstrap* (``method="paired_bootstrap"``) when both runs have per-example scores
      (``scores.parquet``: decomposable metrics such as accuracy) for at least
      :data:`MIN_PAIRED` common example ids. The per-example drops ``d_i`` on the common
      examples are resampled :data:`RESAMPLES` times; ``p_value`` is the share of resampled
      mean drops that are ``<= max_drop`` (one-sided test of "the model lost no more than
      max_drop on the same examples"). The drop is real when ``p_value < alpha`` (0.05).
    * *confidence intervals* (``method="ci"``) otherwise (corpus metrics such as macro-F1, no
      common examples): the drop is real when this run's whole interval lies beyond the
      allowance, i.e. ``ci_high < previous − max_drop`` (higher is better) or
      ``ci_low > previous + max_drop`` (lower is better). ``p_value`` is then ``None``.
    * *point* (``method="point"``) when the run has no interval either (``bootstrap: 0``): the
      point estimate decides.

    The same ``max_drop`` check is made on every slice both runs have (``channel=email``, ...),
    with examples assigned to slices from this run's ``dataset.parquet``. The paired tests of
    one model — every gated metric × every slice, ``all`` included — are one family for the
    multiple-comparison correction, with each gate's ``correction``: ``holm`` (the default;
    family-wise error, never less powerful than Bonferroni), ``bh`` (Benjamini–Hochberg, false
    discovery rate), ``bonferroni`` or ``none``; each check keeps its raw ``p_value`` and its
    ``p_adjusted``, and names the ``correction`` and the family's size. A slice that drops
    significantly fails the gate too: a model that holds up overall but breaks on one channel
    is a regression. Per model and metric the report keeps the overall check and the **worst
    slice** (a failing slice first, then an inconclusive one, the largest drop among them).

Every check has a **verdict** (``pass``, ``fail`` or ``inconclusive``). For ``max_drop`` the
drop's 95% interval comes from the score stage's paired comparison (:func:`assay.stats.paired`)
on the shared examples, or from the two runs' standard errors, and so does the minimum
detectable effect (80% power); a check is

* ``fail`` when the drop is larger than ``max_drop`` beyond the noise (as above);
* ``inconclusive`` when the drop is larger than ``max_drop`` but within the noise, or the
  interval straddles ``max_drop``, or the MDE is larger than ``max_drop`` (the run could not
  see a drop of the size the gate guards); the note says which;
* ``pass`` otherwise.

An inconclusive check does not break the gate (``passed`` stays True, ``assay run`` exits 0);
the run's verdict is ``fail`` if any check failed, else ``inconclusive`` if any could not
decide, else ``pass``. A pipeline's pinned ``baseline:`` (``{run: RUN_ID}`` or ``{as_of: DATE}``)
replaces the previous good run as what every ``max_drop`` check compares with, so a slow drift
over many nights adds up instead of hiding in night-to-night steps.

The result is a :class:`GateReport`: a flat list of :class:`Check` records
``{model, metric, slice, rule, value, threshold, previous, drop, p_value, passed, ...}``.
No Prefect here: ``tasks/gate.py`` wraps :func:`check_run` for the flow.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

import assay.store
from assay import stats as ST
from assay.stats import p_adjust
from assay.store import RunFolder, Store

ALPHA = 0.05
RESAMPLES = 2000
MIN_PAIRED = 10


@dataclass
class RunData:
    """What the gates read from one run: its metrics, per-example scores and slice columns."""

    metrics: pd.DataFrame
    scores: pd.DataFrame | None = None  # example_id, model, metric, value
    examples: pd.DataFrame | None = None  # example_id + the slice columns (from dataset.parquet)
    run_id: str | None = None
    as_of: str | None = None

    @classmethod
    def load(cls, rf: RunFolder, scores: bool = True) -> "RunData":
        metrics = rf.read_table(assay.store.METRICS).to_pandas()
        sc = rf.read_table(assay.store.SCORES).to_pandas() if scores and rf.exists(assay.store.SCORES) else None
        examples = None
        if scores and rf.exists(assay.store.DATASET):
            cols = sorted({s.split("=", 1)[0] for s in metrics["slice"].astype(str) if "=" in s})
            examples = _read_columns(rf, assay.store.DATASET, ["example_id", *cols])
        return cls(metrics, sc, examples, rf.run_id, rf.as_of)


def _read_columns(rf: RunFolder, name: str, cols: list[str]) -> pd.DataFrame | None:
    """The columns of an artifact that exist (a slice column may be absent from the dataset)."""
    try:
        return rf.read_table(name, columns=cols).to_pandas()
    except (pa.ArrowInvalid, KeyError):
        pass
    parts = {}
    for c in cols:
        try:
            parts[c] = rf.read_table(name, columns=[c]).column(0).to_pandas()
        except (pa.ArrowInvalid, KeyError):
            continue
    return pd.DataFrame(parts) if "example_id" in parts else None


@dataclass
class Check:
    """One gate check of one model on one metric (and slice)."""

    model: str | None
    metric: str
    slice: str
    rule: str  # min | max | max_drop
    value: float | None
    threshold: float
    previous: float | None = None
    drop: float | None = None
    p_value: float | None = None
    passed: bool = True
    method: str | None = None  # paired_bootstrap | ci | point (max_drop only)
    n_paired: int | None = None  # common examples in the paired test
    note: str | None = None
    p_adjusted: float | None = None  # the p-value corrected over every paired check of the model
    correction: str | None = None  # holm | bh | bonferroni | none, and over how many checks
    verdict: str = "pass"  # pass | fail | inconclusive
    ci_low: float | None = None  # the drop's 95% interval (max_drop)
    ci_high: float | None = None
    mde: float | None = None  # the smallest drop this comparison detects (80% power)

    def to_dict(self) -> dict:
        return {k: _clean(v) for k, v in asdict(self).items()}

    def settle(self, verdict: str, note: str | None = None) -> None:
        """Record the verdict (``passed`` is False only for a failure: inconclusive is not broken)."""
        self.verdict, self.passed, self.note = verdict, verdict != "fail", note

    def describe(self) -> str:
        """One short phrase: what broke and by how much."""
        who = f"{self.metric}[{self.model}]" if self.model else self.metric
        where = "" if self.slice == "all" else f" on slice {self.slice}"
        if self.rule in ("min", "max"):
            op = "<" if self.rule == "min" else ">"
            by = f" (by {_fmt(abs(self.threshold - self.value))})" if self.value is not None else ""
            return f"{who} {_fmt(self.value)} {op} {self.rule} {_fmt(self.threshold)}{where}{by}" + (
                f" ({self.note})" if self.note else ""
            )
        if self.p_adjusted is not None:
            p = f", p={self.p_adjusted:.3g} ({self.correction})"
        else:
            p = f", p={self.p_value:.3g}" if self.p_value is not None else f", {self.method}" if self.method else ""
        ci = f", 95% CI [{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]" if self.ci_low is not None else ""
        op = "<=" if self.verdict == "pass" else ">" if self.verdict == "fail" else "vs"
        why = f": inconclusive, {self.note}" if self.verdict == "inconclusive" and self.note else ""
        return (
            f"{who} dropped {_fmt(self.drop)}{where} ({_fmt(self.previous)} -> {_fmt(self.value)}) "
            f"{op} max_drop {_fmt(self.threshold)}{ci}{p}{why}"
        )


@dataclass
class GateReport:
    """Every check of a run, and the run it was compared with."""

    checks: list[Check] = field(default_factory=list)
    previous: dict | None = None  # {"run_id", "as_of"} of the previous good run

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "inconclusive"]

    @property
    def verdict(self) -> str:
        """``fail`` when a check failed, else ``inconclusive`` when one could not decide, else ``pass``."""
        return "fail" if self.failures else "inconclusive" if self.inconclusive else "pass"

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "previous": self.previous,
            "checks": [c.to_dict() for c in self.checks],
            "failures": [c.describe() for c in self.failures],
            "inconclusive": [c.describe() for c in self.inconclusive],
        }

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [c.to_dict() for c in self.checks],
            columns=[
                "model",
                "metric",
                "slice",
                "rule",
                "value",
                "threshold",
                "previous",
                "drop",
                "p_value",
                "passed",
                "method",
                "n_paired",
                "note",
                "p_adjusted",
                "correction",
            ],
        )

    def message(self, limit: int = 3) -> str:
        """One line for an exception or a log: the failures (else the inconclusive checks), worst first."""
        fails = sorted(self.failures, key=lambda c: -(c.drop or 0))
        what = "failed"
        if not fails:
            fails, what = sorted(self.inconclusive, key=lambda c: -(c.drop or 0)), "inconclusive"
        if not fails:
            return "all gates passed"
        parts = [c.describe() for c in fails[:limit]]
        more = f"; and {len(fails) - limit} more" if len(fails) > limit else ""
        return f"{len(fails)} gate check(s) {what}: " + "; ".join(parts) + more

    def markdown(self, pipeline: str, as_of: str, run_id: str) -> str:
        head = {"fail": "FAILED", "inconclusive": "inconclusive", "pass": "passed"}[self.verdict]
        lines = [f"# Gates {head}: {pipeline} {as_of}", "", f"Run `{run_id}`."]
        if self.previous and self.previous.get("baseline"):
            lines.append(f"Compared with the pinned baseline run `{self.previous['run_id']}` ({self.previous['as_of']}).")
        elif self.previous:
            lines.append(f"Compared with the previous good run `{self.previous['run_id']}` ({self.previous['as_of']}).")
        else:
            lines.append("No previous good run: `max_drop` gates had nothing to compare with.")
        lines.append("")
        if self.failures:
            lines.append("## What broke")
            lines.append("")
            for c in self.failures:
                lines.append(f"- **{c.describe()}**")
            lines.append("")
        if self.inconclusive:
            lines.append("## Inconclusive (not a failure: this run cannot tell)")
            lines.append("")
            for c in self.inconclusive:
                lines.append(f"- {c.describe()}")
            lines.append("")
        corr = sorted({c.correction for c in self.checks if c.correction})
        if corr:
            lines.append(
                "The paired `max_drop` checks (every metric and slice of a model) are corrected for multiple comparisons: "
                + ", ".join(f"**{c}**" for c in corr)
                + " (p shown is the corrected one)."
            )
            lines.append("")
        lines.append("## Checks")
        lines.append("")
        lines.append("| model | metric | slice | rule | value | threshold | previous | drop | p | method | result |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in self.checks:
            lines.append(
                f"| {c.model or ''} | {c.metric} | {c.slice} | {c.rule} | {_fmt(c.value)} | {_fmt(c.threshold)} | "
                f"{_fmt(c.previous)} | {_fmt(c.drop)} | {_p(c)} | "
                f"{c.method or ''} | {'**FAIL**' if c.verdict == 'fail' else c.verdict} |"
            )
        return "\n".join(lines) + "\n"


def _p(c: "Check") -> str:
    p = c.p_adjusted if c.p_adjusted is not None else c.p_value
    return "" if p is None else f"{p:.3g}"


def _clean(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _bound(g: Any, name: str) -> float | None:
    v = g.get(name) if isinstance(g, Mapping) else getattr(g, name, None)
    return None if v is None else float(v)


# the checks ---------------------------------------------------------------------------------
def evaluate(
    gates: Mapping[str, Any],
    current: RunData,
    previous: RunData | None,
    alpha: float = ALPHA,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> GateReport:
    """Check ``current`` against the ``gates`` (metric -> Gate or dict) and the ``previous`` good run.

    The paired ``max_drop`` checks of one model (every gated metric × every slice, ``all``
    included) are one family for the multiple-comparison correction: a model checked on three
    metrics and five slices makes 18 tests, and the p-values are adjusted over all 18.
    """
    report = GateReport(previous={"run_id": previous.run_id, "as_of": previous.as_of} if previous else None)
    m = current.metrics
    families: dict[str, list[tuple[Check, str]]] = {}  # model -> (paired check, its gate's correction)
    kept: list[tuple[Check, list[Check]]] = []  # the overall check and its slice checks
    for metric, g in gates.items():
        lo, hi, max_drop = _bound(g, "min"), _bound(g, "max"), _bound(g, "max_drop")
        overall = m[(m["metric"] == metric) & (m["slice"] == "all")]
        if overall.empty:
            for rule, t in (("min", lo), ("max", hi), ("max_drop", max_drop)):
                if t is not None:
                    c = Check(None, metric, "all", rule, None, t)
                    c.settle("fail", "metric not in this run's metrics.parquet")
                    report.checks.append(c)
            continue
        for row in overall.itertuples(index=False):
            model, value = str(row.model), _num(row.value)
            for rule, t in (("min", lo), ("max", hi)):
                if t is None:
                    continue
                c = Check(model, metric, "all", rule, value, t)
                ok = value is not None and (value >= t if rule == "min" else value <= t)
                c.settle("pass" if ok else "fail", None if value is not None else "no value")
                report.checks.append(c)
            if max_drop is not None:
                correction = (g.get("correction") if isinstance(g, Mapping) else getattr(g, "correction", None)) or "holm"
                first, slices = _drop_checks(model, metric, max_drop, current, previous, alpha, resamples, seed)
                report.checks.append(first)
                kept.append((first, slices))
                for c in [first, *slices]:
                    families.setdefault(model, []).append((c, correction))
    for family in families.values():
        _correct(family, alpha)
    for _first, slices in kept:
        scored = [c for c in slices if c.drop is not None]
        if scored:
            rank = {"fail": 2, "inconclusive": 1, "pass": 0}
            report.checks.append(max(scored, key=lambda c: (rank[c.verdict], c.drop)))
    return report


def _drop_checks(
    model: str, metric: str, max_drop: float, cur: RunData, prev: RunData | None, alpha: float, resamples: int, seed: int
) -> tuple[Check, list[Check]]:
    """The overall ``max_drop`` check of one model and metric, and one per slice both runs have."""
    cm = cur.metrics[(cur.metrics["model"] == model) & (cur.metrics["metric"] == metric)]
    c_all = cm[cm["slice"] == "all"].iloc[0]
    if prev is None:
        return Check(model, metric, "all", "max_drop", _num(c_all["value"]), max_drop, note="no previous good run"), []
    pm = prev.metrics[(prev.metrics["model"] == model) & (prev.metrics["metric"] == metric)]
    p_all = pm[pm["slice"] == "all"]
    if p_all.empty:
        return Check(
            model, metric, "all", "max_drop", _num(c_all["value"]), max_drop, note="model or metric not in the previous run"
        ), []
    hib = bool(c_all["higher_is_better"]) if "higher_is_better" in c_all.index else True
    cur_each, prev_each = _each(cur, model, metric), _each(prev, model, metric)
    first = _drop_check(model, metric, "all", c_all, p_all.iloc[0], hib, max_drop, cur_each, prev_each, alpha, resamples, seed)
    slices = [s for s in cm["slice"].tolist() if s != "all" and s in set(pm["slice"].tolist())]
    checks = []
    for i, name in enumerate(slices):
        members = _members(cur, name)
        ce = cur_each[cur_each.index.isin(members)] if (cur_each is not None and members is not None) else None
        checks.append(
            _drop_check(
                model,
                metric,
                name,
                cm[cm["slice"] == name].iloc[0],
                pm[pm["slice"] == name].iloc[0],
                hib,
                max_drop,
                ce,
                prev_each,
                alpha,
                resamples,
                seed + 1 + i,
            )
        )
    return first, checks


def _correct(family: list[tuple[Check, str]], alpha: float) -> None:
    """Decide the paired checks of one model on p-values adjusted over all of them (see :func:`evaluate`);
    each check is adjusted with its own gate's ``correction`` applied to the whole family."""
    paired = [(c, how) for c, how in family if c.method == "paired_bootstrap" and c.p_value is not None]
    if not paired:
        return
    ps = [c.p_value for c, _ in paired]
    adjusted = {how: p_adjust(ps, how) for how in {h for _, h in paired}}
    for i, (c, how) in enumerate(paired):
        c.p_adjusted = float(adjusted[how][i])
        c.correction = f"{how} over {len(paired)} checks"
        _decide(c, c.p_adjusted < alpha)


def _decide(c: Check, real: bool) -> None:
    """The verdict of a ``max_drop`` check whose drop, interval and MDE are known.

    * fail: the drop is larger than ``max_drop`` beyond the noise (``real``);
    * inconclusive: the drop is larger than ``max_drop`` but not beyond the noise, or its 95%
      interval straddles ``max_drop``, or the comparison's minimum detectable effect (80% power)
      is larger than ``max_drop`` (the run could not see a drop of the size the gate guards);
    * pass otherwise.
    """
    t = c.threshold
    if c.drop > t and real:
        c.settle("fail")
    elif c.drop > t:
        c.settle("inconclusive", "interval straddles max_drop: drop beyond max_drop but within noise")
    elif c.ci_high is not None and c.ci_low is not None and c.ci_low <= t < c.ci_high:
        c.settle("inconclusive", f"interval straddles max_drop ({_fmt(c.ci_low)} to {_fmt(c.ci_high)})")
    elif c.mde is not None and c.mde > t:
        c.settle("inconclusive", f"MDE {_fmt(c.mde)} > max_drop: this run cannot see a drop of {_fmt(t)}")
    else:
        c.settle("pass")


def _each(run: RunData, model: str, metric: str) -> pd.Series | None:
    """Per-example scores of one model and metric, indexed by example id (None when not decomposable)."""
    if run.scores is None or run.scores.empty:
        return None
    s = run.scores[(run.scores["model"] == model) & (run.scores["metric"] == metric)]
    if s.empty:
        return None
    return pd.Series(s["value"].astype(float).to_numpy(), index=s["example_id"].astype(str).to_numpy())


def _members(run: RunData, slice_name: str) -> set[str] | None:
    """The example ids of a ``column=value`` slice, from the run's dataset (None when unknown)."""
    if run.examples is None or "=" not in slice_name:
        return None
    col, val = slice_name.split("=", 1)
    if col not in run.examples.columns:
        return None
    ex = run.examples
    mask = ex[col].map(lambda v: str(v)) == val
    return set(ex.loc[mask, "example_id"].astype(str))


def _se(row) -> float | None:
    """A metric row's standard error: its ``se`` column, else its 95% interval's half width / 1.96."""
    se = _num(row.get("se")) if hasattr(row, "get") else None
    if se is not None:
        return se
    lo, hi = _num(row.get("ci_low")), _num(row.get("ci_high"))
    return None if lo is None or hi is None else (hi - lo) / (2 * 1.959964)


def _drop_check(
    model,
    metric,
    slice_name,
    c_row,
    p_row,
    hib: bool,
    max_drop: float,
    cur_each: pd.Series | None,
    prev_each: pd.Series | None,
    alpha: float,
    resamples: int,
    seed: int,
) -> Check:
    value, previous = _num(c_row["value"]), _num(p_row["value"])
    base = Check(model, metric, slice_name, "max_drop", value, max_drop, previous)
    if value is None or previous is None:
        base.settle("pass" if (value is not None or previous is None) else "fail", "no value to compare")
        return base
    drop = (previous - value) if hib else (value - previous)
    base.drop = drop
    paired = None
    if cur_each is not None and prev_each is not None:
        common = cur_each.index.intersection(prev_each.index)
        if len(common) >= MIN_PAIRED:
            a, b = cur_each.loc[common].to_numpy(float), prev_each.loc[common].to_numpy(float)
            ok = ~(np.isnan(a) | np.isnan(b))
            if ok.sum() >= MIN_PAIRED:
                paired = (a[ok], b[ok])
    if paired is not None:
        a, b = paired
        # the drop on the shared examples, with the score stage's paired comparison (interval, SE)
        pc = ST.paired(b, a, alpha=alpha) if hib else ST.paired(a, b, alpha=alpha)
        base.method, base.n_paired = "paired_bootstrap", int(pc.n)
        base.ci_low, base.ci_high, base.mde = float(pc.ci_low), float(pc.ci_high), float(ST.mde(pc.se, alpha))
        base.p_value = paired_drop_p_value((b - a) if hib else (a - b), max_drop, resamples, seed)
        real = base.p_value < alpha
    else:
        lo, hi = _num(c_row.get("ci_low")), _num(c_row.get("ci_high"))
        if (hi if hib else lo) is None:
            base.method = "point"
            base.settle("fail" if drop > max_drop else "pass")
            return base
        base.method = "ci"
        real = hi < previous - max_drop if hib else lo > previous + max_drop
        se_c, se_p = _se(c_row), _se(p_row)
        if se_c is not None:
            se = math.sqrt(se_c**2 + (se_p or 0.0) ** 2)
            q = ST.z_two_sided(alpha)
            base.ci_low, base.ci_high, base.mde = drop - q * se, drop + q * se, float(ST.mde(se, alpha))
    _decide(base, real)
    return base


def paired_drop_p_value(drops: np.ndarray, max_drop: float, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """One-sided bootstrap p-value for "mean per-example drop <= max_drop".

    ``drops`` are per-example drops on common examples (positive = worse). The value is the
    share of resampled means that are at most ``max_drop`` (with the usual +1 correction),
    so a small p-value means the drop is larger than the allowance beyond the noise.
    """
    d = np.asarray(drops, dtype=float)
    n = len(d)
    if n == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)
    for lo in range(0, resamples, step):
        k = min(step, resamples - lo)
        means[lo : lo + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return float((np.sum(means <= max_drop + 1e-12) + 1) / (resamples + 1))


# finding runs -------------------------------------------------------------------------------
def gates_passed(manifest: dict | None) -> bool | None:
    """The gate verdict a manifest records: True, False, or None when gates were not run."""
    g = (manifest or {}).get("gates")
    if not isinstance(g, dict) or "passed" not in g:
        return None
    return bool(g["passed"])


def previous_good_run(store: Store, pipeline: str, as_of: str, run_id: str) -> RunFolder | None:
    """The latest complete run before (as_of, run_id) whose gates did not fail.

    "Before" means an earlier as_of, or the same as_of and an earlier run id (run ids sort by
    start time). A run without a gate verdict counts as good.
    """
    for rf in reversed(store.runs(pipeline)):
        if (rf.as_of, rf.run_id) >= (as_of, run_id):
            continue
        m = rf.manifest() or {}
        if m.get("status") == "complete" and gates_passed(m) is not False:
            return rf
    return None


class BaselineNotFound(LookupError):
    """A pipeline's pinned ``baseline:`` names no complete run."""


def baseline_run(store: Store, pipeline: str, baseline: Any) -> RunFolder:
    """The complete run a pinned ``baseline:`` ({run: RUN_ID} or {as_of: DATE}) names: that run,
    or the latest complete run of that date; :class:`BaselineNotFound` naming what is missing."""
    run_id = baseline.get("run") if isinstance(baseline, Mapping) else getattr(baseline, "run", None)
    as_of = baseline.get("as_of") if isinstance(baseline, Mapping) else getattr(baseline, "as_of", None)
    found = None
    for rf in store.runs(pipeline):
        if (run_id is not None and rf.run_id == run_id) or (run_id is None and rf.as_of == str(as_of)):
            if (rf.manifest() or {}).get("status") == "complete":
                found = rf
    if found is None:
        what = f"run {run_id}" if run_id is not None else f"as_of {as_of}"
        raise BaselineNotFound(f"pipelines.{pipeline}.baseline: no complete run of {pipeline} with {what} under {store.root}")
    return found


def check_run(
    rf: RunFolder, gates: Mapping[str, Any], alpha: float = ALPHA, resamples: int = RESAMPLES, baseline: Any = None
) -> GateReport:
    """Check one run folder's artifacts against ``gates`` and its previous good run, or the pinned
    ``baseline`` run when the pipeline has one (the same paired comparison on the examples both share)."""
    needs_prev = any(_bound(g, "max_drop") is not None for g in gates.values())
    current = RunData.load(rf, scores=needs_prev)
    previous = None
    if needs_prev:
        prf = (
            baseline_run(rf.store, rf.pipeline, baseline)
            if baseline is not None
            else previous_good_run(rf.store, rf.pipeline, rf.as_of, rf.run_id)
        )
        previous = RunData.load(prf) if prf is not None else None
    report = evaluate(gates, current, previous, alpha=alpha, resamples=resamples)
    if baseline is not None and report.previous:
        report.previous["baseline"] = True
    return report
