"""The shipped code-generation example (data/codegen) end to end, without Prefect."""

from datetime import date
from pathlib import Path

import pandas as pd

from assay.stages import run_local

ROOT = Path(__file__).resolve().parents[2]


def test_codegen_example_scores_programs_by_running_them(tmp_path):
    ctx = run_local(str(ROOT / "data" / "codegen" / "pipelines.yaml"), "codegen", date(2026, 11, 24), artifacts=str(tmp_path))
    m = pd.read_parquet(ctx.folder.path("metrics.parquet")).set_index(["model", "metric", "slice"])
    assert m.loc[("coder-a", "pass_at_k", "all"), "value"] == 13 / 16
    assert m.loc[("coder-b", "pass_at_k", "all"), "value"] == 8 / 16
    assert m.loc[("coder-a", "pass_at_k", "all"), "n_clusters"] == 8  # dataset.cluster: family
    assert bool(m.loc[("coder-a", "style.lines", "all"), "higher_is_better"]) is False
    assert m.loc[("coder-a", "style.defines_entry_point", "all"), "value"] == 1.0
    s = pd.read_parquet(ctx.folder.path("scores.parquet"))
    gcd = s[(s.model == "coder-b") & (s.metric == "pass_at_k") & (s.example_id == "math-gcd")].iloc[0]
    assert gcd["value"] == 0.0 and gcd["detail"] == "timed out after 5 s"  # its loop never ends
    c = pd.read_parquet(ctx.folder.path("comparisons.parquet"))
    row = c[c.metric == "pass_at_k"].iloc[0]
    assert row["diff"] == 5 / 16 and row["n_clusters"] == 8 and row["se"] > 0


def test_assay_plan_on_the_example(tmp_path):
    from typer.testing import CliRunner

    from flows.cli.main import app

    cfg = str(ROOT / "data" / "codegen" / "pipelines.yaml")
    runner = CliRunner()
    r = runner.invoke(app, ["plan", "codegen", "--config", cfg, "--artifacts", str(tmp_path), "--detect", "0.1"])
    assert r.exit_code == 2 and "no complete run to plan from" in r.output
    run_local(cfg, "codegen", date(2026, 11, 24), artifacts=str(tmp_path))
    r = runner.invoke(app, ["plan", "codegen", "--config", cfg, "--artifacts", str(tmp_path), "--detect", "0.1", "-f", "csv"])
    assert r.exit_code == 0, r.output
    import io

    t = pd.read_csv(io.StringIO(r.output)).set_index("metric")
    row = t.loc["pass_at_k"]
    assert row["n_run"] == 16 and row["examples_needed"] > 16 and row["basis"] == "paired difference"
    r = runner.invoke(app, ["plan", "codegen", "--config", cfg, "--artifacts", str(tmp_path), "--detect", "0.1"])
    assert "pass_at_k" in r.output and "coder-a vs coder-b" in r.output and "examples" in r.output
    r = runner.invoke(app, ["plan", "codegen", "--config", cfg, "--artifacts", str(tmp_path), "--detect", "-1"])
    assert r.exit_code == 2


def test_the_terminal_says_when_the_headline_interval_rests_on_too_few_clusters(tmp_path, capsys):
    """The shipped example has 16 problems in 8 families (``dataset.cluster``): the result table's
    intervals come with the score stage's note, not only in metrics.parquet."""
    from flows.cli.run import print_result

    ctx = run_local(str(ROOT / "data" / "codegen" / "pipelines.yaml"), "codegen", date(2026, 11, 24), artifacts=str(tmp_path))
    print_result(ctx.folder.url, "codegen")
    out = capsys.readouterr().out
    note = (
        pd.read_parquet(ctx.folder.path("metrics.parquet"))
        .set_index(["model", "metric", "slice"])
        .loc[("coder-a", "pass_at_k", "all"), "note"]
    )
    assert note and "clusters" in note
    assert f"note (coder-a, coder-b): {note}" in out, out
