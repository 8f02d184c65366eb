"""``assay capacity``: the serving operating point of a self-hosted model (a load sweep under an SLO).

Exit codes: 0 an operating point was found (and recorded), 1 no concurrency level met the SLO or
the endpoint did not answer, 2 a usage or configuration error (unknown model, a bad SLO clause, a
model that is not an endpoint you run), 130 interrupted.
"""

import json
import math

import typer

from assay.registry import UnknownName
from assay.store import Store
from flows.cli.common import ARTIFACTS_OPT, CONFIG_OPT, EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, err, load

FORMATS = ("table", "csv", "json")


def capacity(
    model: str = typer.Argument(..., help="A self-hosted model of pipelines.yaml (provider openai with hosting:)."),
    config: str = CONFIG_OPT,
    artifacts: str | None = ARTIFACTS_OPT,
    concurrency: str | None = typer.Option(
        None, "--concurrency", help="Levels to sweep, e.g. 1,2,4,8 (default 1,2,4,8,16,32,64)."
    ),
    slo: str | None = typer.Option(
        None, "--slo", help="Bounds a level must meet, e.g. p95_latency_s=2,ttft_s=0.5,error_rate=0.01."
    ),
    pipeline: str | None = typer.Option(
        None, "--pipeline", "-p", help="Send this pipeline's examples, rendered with its prompt (default: one synthetic prompt)."
    ),
    requests: int | None = typer.Option(
        None, "--requests", "-n", min=1, help="Requests per level (default max(32, 4 x concurrency))."
    ),
    record: bool = typer.Option(True, "--record/--no-record", help="Record the operating point for the cost stage."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
):
    """Find a self-hosted model's serving operating point: the best concurrency under an SLO.

    Sweeps concurrency against the endpoint with streamed requests (time to first token,
    inter-token latency, latency, throughput), chooses the highest-throughput level that meets the
    SLO and records it under <artifacts>/_capacity/, where the cost stage prices the model at it.
    Exit 1 when no level meets the SLO or the endpoint does not answer, 2 on bad arguments."""
    # lazy: keeps pandas, numpy, pyarrow out of the CLI
    import assay.capacity
    from assay.config import ConfigError
    from assay.providers import ProviderError
    from assay.providers.openai_compat import MissingSecret

    # lazy: keeps yaml, pydantic out of the CLI
    from assay.runs import artifacts_root

    if fmt not in FORMATS:
        err(f"--format: expected {', '.join(FORMATS)}, got {fmt!r}")
        raise typer.Exit(EXIT_CONFIG)
    loaded = load(config)
    models = loaded.config.models
    try:
        if model not in models:
            raise assay.capacity.CapacityError(f"models: {UnknownName('model', model, list(models))}")
        cfg = models[model]
        assay.capacity.check_model(model, cfg)
        levels = assay.capacity.parse_levels(concurrency)
        bounds = assay.capacity.parse_slo(slo)
        Store(artifacts_root(loaded, artifacts)).capacity().names(model)  # a name that can name a file
        if pipeline is not None:
            loaded.pipeline(pipeline)
            prompts, source = assay.capacity.pipeline_prompts(loaded, pipeline)
        else:
            prompts, source = assay.capacity.synthetic_prompts()
    except ConfigError as e:
        err(e.format())
        raise typer.Exit(EXIT_CONFIG) from None
    except ValueError as e:  # CapacityError, a dataset's or a file name's error
        err(f"capacity: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    except FileNotFoundError as e:
        err(f"capacity: {e}")
        raise typer.Exit(EXIT_CONFIG) from None

    def on_level(c: int, rows: list, wall: float) -> None:
        bad = sum(1 for r in rows if r["error"] is not None)
        err(f"  concurrency {c}: {len(rows)} requests in {wall:.1f} s" + (f", {bad} failed" if bad else ""))

    err(f"capacity {model} ({cfg.target}): levels {','.join(map(str, levels))}, {source}")
    try:
        reqs = assay.capacity.sweep(model, cfg, prompts, levels, requests, on_level=on_level)
    except MissingSecret as e:
        err(f"capacity: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    except ProviderError as e:
        err(f"capacity: {model} does not answer at {cfg.base_url or 'its endpoint'}: {e}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        err("capacity: interrupted; nothing recorded")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    table = assay.capacity.summarize(reqs, bounds)
    chosen = assay.capacity.choose(table)
    if record:
        rec = assay.capacity.build_record(model, cfg, bounds, table, chosen, source, requests)
        where, _ = assay.capacity.write_record(Store(artifacts_root(loaded, artifacts)), model, rec, reqs)
    if fmt == "csv":
        typer.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "model": model,
                    "slo": bounds.as_dict(),
                    "levels": json.loads(table.to_json(orient="records")),
                    "operating_point": None if chosen is None else int(chosen["concurrency"]),
                },
                indent=2,
            )
        )
    else:
        _print(model, table, chosen, bounds)
    if record:
        err(f"recorded {where}")
    if chosen is None:
        err(f"capacity: no concurrency level of {model} meets the SLO ({bounds.text()})")
        raise typer.Exit(EXIT_FAILED)


def _print(model: str, table, chosen, bounds) -> None:
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.table import Table

    def s(v, unit: str = "", digits: int = 3) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return f"{v:.{digits}g}{unit}"

    t = Table(title=f"capacity of {model} (SLO: {bounds.text()})")
    for col in ("concurrency", "req/s", "tok/s", "p95 latency", "p95 TTFT", "p95 ITL", "errors", "goodput", "meets SLO"):
        t.add_column(col, justify="right")
    for r in table.itertuples(index=False):
        mark = "[green]yes[/]" if r.meets_slo else f"[red]no[/] [dim]{r.missed}[/]"
        style = "bold" if chosen is not None and r.concurrency == chosen["concurrency"] else None
        t.add_row(
            str(r.concurrency),
            s(r.rps),
            s(r.output_tok_s),
            s(r.latency_p95_s, " s"),
            s(r.ttft_p95_s, " s"),
            s(r.itl_p95_s, " s"),
            f"{r.errors}/{r.requests}",
            s(r.goodput_rps),
            mark,
            style=style,
        )
    console = Console(width=max(120, Console().width))
    console.print(t)
    if chosen is not None:
        console.print(
            f"operating point: concurrency {int(chosen['concurrency'])}, {chosen['rps']:.3g} req/s, "
            f"{chosen['output_tok_s']:.3g} output tok/s, p95 latency {chosen['latency_p95_s']:.3g} s, "
            f"p95 TTFT {s(chosen['ttft_p95_s'], ' s')}"
        )
