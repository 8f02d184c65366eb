"""``assay whatif``: a cascade or a route, ad hoc, on a recorded run.

Exit codes: 0 ok, 2 a bad run folder, model name, rule or option.
"""

import json
import math

import typer

import assay.report.format
from assay import store
from flows.cli.common import EXIT_CONFIG, err

RULES = "confidence:T, judge:T, judge:METRIC:T, valid:json, valid:labels, valid:regex:PATTERN, valid:schema:FILE, agree"


def parse_rule(text: str) -> dict:
    """``--rule`` as a rule's config (see :data:`RULES`); ValueError naming what is wrong."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower()

    def number(v: str) -> float:
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"--rule {text!r}: {v!r} is not a threshold (a number from 0 to 1)") from None

    if kind == "confidence":
        return {"kind": "confidence", "threshold": number(rest)}
    if kind == "judge":
        metric, _, t = rest.rpartition(":")
        return {"kind": "judge", "metric": metric or "judge", "threshold": number(t)}
    if kind == "agree" and not rest:
        return {"kind": "agree"}
    if kind == "valid":
        what, _, arg = rest.partition(":")
        if what == "json" and not arg:
            return {"kind": "valid", "json": True}
        if what == "labels" and not arg:
            return {"kind": "valid", "labels": True}
        if what == "regex" and arg:
            return {"kind": "valid", "regex": arg}
        if what == "schema" and arg:
            try:
                with open(arg) as f:
                    return {"kind": "valid", "schema": json.load(f)}
            except (OSError, ValueError) as e:
                raise ValueError(f"--rule {text!r}: cannot read the JSON schema {arg}: {e}") from None
    raise ValueError(f"--rule {text!r} is not a rule (one of: {RULES})")


def build_policy(
    cascade: str | None,
    rule: str | None,
    route: str | None,
    models: str | None,
    tolerance: float | None,
    lam: float | None,
    learn: float,
    seed: int,
):
    """The policy the options describe, validated by the config's own schema; ValueError otherwise."""
    # lazy: keeps pydantic out of the CLI
    from pydantic import TypeAdapter, ValidationError

    # lazy: keeps yaml, pydantic out of the CLI
    from assay.config.loading import format_path
    from assay.config.schema import PolicyConfig

    if (cascade is None) == (route is None):
        raise ValueError("give --cascade a,b (with --rule) or --route COLUMN")
    if cascade is not None:
        if rule is None:
            raise ValueError(f"--cascade needs --rule ({RULES})")
        data = {"kind": "cascade", "models": [m.strip() for m in cascade.split(",") if m.strip()], "rule": parse_rule(rule)}
    else:
        if rule is not None:
            raise ValueError("--rule is for --cascade; a route takes --tolerance or --lambda")
        data = {"kind": "route", "column": route, "learn": learn, "seed": seed}
        if models:
            data["models"] = [m.strip() for m in models.split(",") if m.strip()]
        if tolerance is not None:
            data["tolerance"] = tolerance
        if lam is not None:
            data["lambda"] = lam
    try:
        return TypeAdapter(PolicyConfig).validate_python(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = tuple(x for x in first["loc"] if x not in ("cascade", "route", "confidence", "valid", "agree", "judge"))
        msg = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{format_path(loc) or 'policy'}: {msg}") from None


def policy_table(policies, cfg, rec=None, title: str = "policies", compact: bool = False):
    """The rich table of policies.parquet rows (the columns of every view); ``compact`` (the result
    of ``assay run``) puts models and rule in one column and leaves out the intervals of APGR and
    saving and the p95 latency, to fit a terminal."""
    # lazy: keeps rich out of the CLI
    from rich.markup import escape
    from rich.table import Table

    # lazy: keeps pandas, numpy, pyarrow out of the CLI
    from assay.report.decision import POLICY_COLUMNS, policy_rows, policy_titles, saving_text

    titles = policy_titles(cfg, str(policies["metric"].iloc[0]) if len(policies) else None)
    rows = policy_rows(policies, rec)
    cols = list(POLICY_COLUMNS)
    if compact:
        cols = ["policy", "what", "quality", "cost_per_1k", "monthly", "escalated", "apgr", "saving"]
        titles = {**titles, "what": "models; rule", "apgr": "APGR", "saving": "saving at matched quality"}
        for r, (_, p) in zip(rows, policies.iterrows()):
            r["what"] = f"{r['models']}; {r['rule']}"
            r["apgr"] = assay.report.format.num(p.get("apgr"))
            if not assay.report.format.missing(p.get("saving")):
                r["saving"] = saving_text(p["saving"], p["matched_model"])
    t = Table(title=title, title_justify="left")
    for col in cols:
        t.add_column(titles[col], justify="left" if col in ("policy", "models", "rule", "saving", "what") else "right")
    for r in rows:
        t.add_row(*[escape(r[c]) + (" ✓" if c == "policy" and r["recommended"] else "") for c in cols])
    return t


def whatif(
    run_folder: str = typer.Argument(..., help="A run folder: <artifacts>/<pipeline>/<as_of>/<run_id>."),
    cascade: str | None = typer.Option(None, "--cascade", help="Models in the order they are asked, e.g. small,large."),
    rule: str | None = typer.Option(None, "--rule", help=f"When the cascade escalates: {RULES}."),
    route: str | None = typer.Option(None, "--route", help="Route by this slice column (e.g. language)."),
    models: str | None = typer.Option(None, "--models", help="The models a route chooses from (default: the run's)."),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="Route: quality a cheaper model may give up (default 0.01)."
    ),
    lam: float | None = typer.Option(None, "--lambda", help="Route: maximise quality − λ · cost per 1,000 requests instead."),
    learn: float = typer.Option(0.5, "--learn", help="Route: share of the examples the choice is learned on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the route's learning split and of the bootstrap."),
    resamples: int | None = typer.Option(None, "--resamples", help="Bootstrap resamples (default: the run's bootstrap setting)."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
):
    """Score and price a cascade or a route on a recorded run, without calling any model.

    Reads the run's responses, scores and costs and prints the policy's quality (with its 95%
    interval), cost per 1,000 requests, monthly cost, p95 latency, share escalated, APGR, saving at
    matched quality, and the sweep of its threshold. Exit 2 on a bad run folder, an unknown model,
    a bad rule or option.
    """
    # lazy: keeps pandas, numpy, pyarrow out of the CLI
    from assay.policies import evaluate_one, from_run
    from assay.report.summary import run_config

    if fmt not in ("table", "json", "csv"):
        err(f"whatif: --format must be table, json or csv, got {fmt!r}")
        raise typer.Exit(EXIT_CONFIG)
    try:
        rf = store.open_run(run_folder)
        for name in (store.SCORES, store.COSTS):
            if not rf.exists(name):
                raise store.NotARunFolder(f"{rf.path(name)} is missing: the run did not finish its score and cost stages")
        cfg = run_config(rf.manifest() or {})
        pol = build_policy(cascade, rule, route, models, tolerance, lam, learn, seed)
        a = from_run(rf, cfg)
        absent = [m for m in (pol.models or []) if m not in a.models]
        if absent:
            raise ValueError(f"model {absent[0]!r} is not in this run (models: {', '.join(a.models)})")
        if pol.kind == "route" and (a.columns is None or pol.column not in a.columns):
            have = list(a.columns.columns) if a.columns is not None else []
            raise ValueError(f"--route {pol.column!r} is not a slice column of this run (slices: {', '.join(have) or 'none'})")
        if pol.kind == "cascade" and pol.rule.kind == "judge" and pol.rule.metric not in a.scores:
            raise ValueError(
                f"--rule: no per-example scores of metric {pol.rule.metric!r} in this run (metrics: {', '.join(a.scores)})"
            )
    except (store.NotARunFolder, ValueError) as e:
        err(f"whatif: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    name = "cascade" if pol.kind == "cascade" else f"route-{pol.column}"
    row, sweep = evaluate_one(a, name, pol, cfg.bootstrap if resamples is None else resamples, seed, cfg.cost.monthly_requests)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "policy": clean,
                    "sweep": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in s.items()} for s in sweep],
                },
                indent=2,
                default=str,
            )
        )
        return
    # lazy: keeps pandas out of the CLI
    import pandas as pd

    if fmt == "csv":
        typer.echo(pd.DataFrame([row]).to_csv(index=False), nl=False)
        return
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, width=None if __import__("sys").stdout.isatty() else 160)
    con.print(policy_table(pd.DataFrame([row]), cfg, None, f"{rf.pipeline} {rf.as_of}: {name}, on {row['n']:,} examples"))
    answered = ", ".join(f"{m} {100 * s:.1f}%" for m, s in json.loads(row["answered_by"]).items())
    con.print(
        f"answered by: {answered}; {row['calls_per_request']:.2f} calls per request"
        + (f"; routes: {row['routes']}" if row.get("routes") else "")
        + (f"; {row['note']}" if row.get("note") else "")
    )
    if sweep:
        st = Table(title=f"sweep of the {sweep[0]['parameter']}", title_justify="left")
        for c in ("threshold", "quality", "$/1k req", "escalated", "p95 latency", "APGR"):
            st.add_column(c, justify="right")
        for s in sweep:
            st.add_row(
                assay.report.format.num(s["threshold"]) + (" ←" if s["configured"] else ""),
                assay.report.format.num(s["quality"]),
                assay.report.format.usd(s["cost_per_1k_usd"]),
                "–" if assay.report.format.missing(s["escalated"]) else f"{100 * s['escalated']:.1f}%",
                assay.report.format.seconds(s["latency_p95_s"]),
                assay.report.format.num(s["apgr"]),
            )
        con.print(st)
