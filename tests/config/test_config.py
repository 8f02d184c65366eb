"""pipelines.yaml validation: the good file, and each kind of bad file."""

import textwrap

import pytest

from assay.config import ConfigError
from assay.preflight import load_checked

GOOD = """
artifacts: runs
models:
  m1: {provider: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY, params: {temperature: 0}}
  base: {provider: sklearn, train: train.parquet}
pipelines:
  p:
    dataset: {source: test.parquet, id: id, reference: label, slices: [lang]}
    prompt: {template: "Classify: {text}"}
    models: [m1, base]
    metrics: [accuracy, {name: exact_match, args: {ignore_case: false}}]
    gates: {accuracy: {min: 0.5}}
"""


def write(tmp_path, text: str):
    p = tmp_path / "pipelines.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def problems(tmp_path, text: str) -> list[tuple]:
    with pytest.raises(ConfigError) as e:
        load_checked(write(tmp_path, text))
    return e.value.problems


def test_good_file_validates(tmp_path):
    loaded = load_checked(write(tmp_path, GOOD))
    p = loaded.pipeline("p")
    assert p.models == ["m1", "base"]
    assert [s.key for s in p.metric_specs()] == ["accuracy", "exact_match"]
    assert loaded.resolve_path("test.parquet") == str(tmp_path / "test.parquet")
    assert len(loaded.config_hash("p")) == 64


def test_shipped_example_validates(project_root):
    loaded = load_checked(project_root / "pipelines.yaml")
    assert "support-triage" in loaded.config.pipelines


def test_config_hash_changes_with_what_shapes_results(tmp_path):
    a = load_checked(write(tmp_path, GOOD)).config_hash("p")
    b = load_checked(write(tmp_path, GOOD.replace("temperature: 0", "temperature: 1"))).config_hash("p")
    assert a != b


def test_yaml_syntax_error_names_the_line(tmp_path):
    ((path, msg, line),) = problems(tmp_path, "models:\n  m1: {provider: openai\npipelines: {}\n")
    assert "invalid YAML" in msg and line == 3


def test_unknown_key_names_its_path_and_line(tmp_path):
    text = GOOD.replace("reference: label,", "reference: label, refrence: x,")
    ((path, msg, line),) = problems(tmp_path, text)
    assert path == "pipelines.p.dataset.refrence"
    assert "Extra inputs" in msg
    assert line == 8


def test_unknown_model_in_pipeline_lists_close_matches(tmp_path):
    ((path, msg, line),) = problems(tmp_path, GOOD.replace("models: [m1, base]", "models: [m1, bsae]"))
    assert path == "pipelines.p.models[1]"
    assert "did you mean 'base'" in msg
    assert line == 10


def test_unknown_provider_lists_close_matches(tmp_path):
    ((path, msg, _),) = problems(tmp_path, GOOD.replace("provider: openai", "provider: opnai"))
    assert path == "models.m1.provider" and "did you mean 'openai'" in msg


def test_unknown_metric_lists_close_matches(tmp_path):
    found = problems(tmp_path, GOOD.replace("metrics: [accuracy,", "metrics: [acuracy,"))
    by_path = {p: m for p, m, _ in found}
    assert "did you mean 'accuracy'" in by_path["pipelines.p.metrics[0]"]
    assert "pipelines.p.gates.accuracy" in by_path  # the gate now names a metric that is not computed


def test_wrong_type_and_range(tmp_path):
    text = GOOD.replace("params: {temperature: 0}", "params: {temperature: 0}, max_concurrency: 0")
    ((path, msg, _),) = problems(tmp_path, text)
    assert path == "models.m1.max_concurrency" and "greater than or equal to 1" in msg


def test_field_foreign_to_provider(tmp_path):
    ((path, msg, _),) = problems(tmp_path, GOOD.replace("train: train.parquet", "train: train.parquet, base_url: http://x"))
    assert path == "models.base.base_url" and "not an option of provider 'sklearn'" in msg


def test_gate_on_metric_not_computed(tmp_path):
    ((path, msg, _),) = problems(tmp_path, GOOD.replace("gates: {accuracy:", "gates: {f1:"))
    assert path == "pipelines.p.gates.f1"


def test_env_var_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_URL", "http://127.0.0.1:9/v1")
    text = GOOD.replace("api_key_env: OPENAI_API_KEY,", "api_key_env: OPENAI_API_KEY, base_url: '${ASSAY_TEST_URL}',")
    loaded = load_checked(write(tmp_path, text))
    assert loaded.config.models["m1"].base_url == "http://127.0.0.1:9/v1"
    # the raw config (what manifests record) keeps the placeholder, not the value
    assert loaded.raw["models"]["m1"]["base_url"] == "${ASSAY_TEST_URL}"


def test_missing_env_var_names_key_path(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSAY_NOPE", raising=False)
    text = GOOD.replace("api_key_env: OPENAI_API_KEY,", "api_key_env: OPENAI_API_KEY, base_url: '${ASSAY_NOPE}',")
    ((path, msg, line),) = problems(tmp_path, text)
    assert path == "models.m1.base_url" and "ASSAY_NOPE is not set" in msg and line == 4


def test_env_default(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSAY_NOPE", raising=False)
    text = GOOD.replace("api_key_env: OPENAI_API_KEY,", "api_key_env: OPENAI_API_KEY, base_url: '${ASSAY_NOPE:-http://h/v1}',")
    assert load_checked(write(tmp_path, text)).config.models["m1"].base_url == "http://h/v1"


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_checked(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(e.value) and "not found" in str(e.value)


def test_several_problems_reported_together(tmp_path):
    text = GOOD.replace("models: [m1, base]", "models: [m1, bsae]").replace("metrics: [accuracy,", "metrics: [acuracy,")
    assert len(problems(tmp_path, text)) == 3  # model, metric, and the gate on the missing metric


def test_cli_validate_exit_codes(tmp_path, project_root):
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "flows.cli", "validate", "--config", str(project_root / "pipelines.yaml")],
        capture_output=True,
        text=True,
        cwd=project_root,
    )
    assert ok.returncode == 0, ok.stderr
    bad = write(tmp_path, GOOD.replace("models: [m1, base]", "models: [m1, bsae]"))
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "validate", "--config", str(bad)], capture_output=True, text=True, cwd=project_root
    )
    assert r.returncode == 2
    assert "pipelines.p.models[1] (line 10)" in r.stderr and "did you mean 'base'" in r.stderr


def test_metric_options_are_checked_before_any_model_is_paid_for(tmp_path):
    """A metric's options, a metric file and a judge model are checked with the config, not at the
    score stage, after the models were called."""
    text = GOOD.replace("args: {ignore_case: false}", "args: {ignore_cas: false}")
    ((path, msg, _),) = problems(tmp_path, text)
    assert path == "pipelines.p.metrics[1].args" and "ignore_cas" in msg and "ignore_case" in msg

    text = GOOD.replace("metrics: [accuracy,", "metrics: [accuracy, {name: judge, judge: m1, args: {scale: [5, 1]}},")
    ((path, msg, _),) = problems(tmp_path, text)
    assert path == "pipelines.p.metrics[1].args" and "low < high" in msg

    text = GOOD.replace("metrics: [accuracy,", "metrics: [accuracy, {name: judge, judge: base},")
    ((path, msg, _),) = problems(tmp_path, text)
    assert path == "pipelines.p.metrics[1].judge" and "cannot answer prompts" in msg

    text = GOOD.replace("metrics: [accuracy,", "metrics: [accuracy, {path: my_metrics/tone.py},")
    ((path, msg, _),) = problems(tmp_path, text)
    assert path == "pipelines.p.metrics[1].path" and str(tmp_path / "my_metrics" / "tone.py") in msg
    (tmp_path / "my_metrics").mkdir()
    (tmp_path / "my_metrics" / "tone.py").write_text("# an evaluate module\n")
    load_checked(write(tmp_path, text))  # exists: loaded (and checked) when the score stage builds it


def test_names_are_checked_by_the_schema_with_key_path_and_line(tmp_path):
    """A pipeline's or a model's name is one path component: it cannot climb out of the artifact
    root, split into folders or carry a control character into file names and logs."""
    text = (
        GOOD.replace("\n  p:\n", "\n  ../../escape:\n")
        .replace("  base: {", '  "ba\\ase": {')
        .replace("[m1, base]", '[m1, "ba\\ase"]')
    )
    with pytest.raises(ConfigError) as e:
        load_checked(write(tmp_path, text))
    assert [(p, line) for p, _, line in e.value.problems] == [("models.'ba\\x07se'", 5), ("pipelines.../../escape", 7)]
    assert "models.'ba\\x07se' (line 5): not a usable name: it contains a control character ('\\x07')" in e.value.format()
    assert "pipelines.../../escape (line 7): not a usable name: it contains a path separator ('/')" in e.value.format()
    ((path, msg, _),) = problems(tmp_path, GOOD.replace("\n  p:\n", "\n  ..:\n"))
    assert path == "pipelines..." and "'..' is the parent folder" in msg
    # what the schema accepts, the store accepts as a folder name (its last defence never fires), and back
    from assay.config.schema import check_name
    from assay.store import safe_component

    for name in ("support-triage", "p", "a.b", "v1..2", "gpt-4o-mini", "llama-3.1-8b", "model:v2"):
        assert check_name(name) == safe_component("pipeline", name)
    for name in ("", ".", "..", ".hidden", "a/b", "a\\b", "tab\there", "bell\a", "del\x7f"):
        with pytest.raises(ValueError):
            check_name(name)
        with pytest.raises(ValueError):
            safe_component("pipeline", name)


# ------------------------------------------------------------------------------------------------ each provider's options


def test_unknown_provider_names_path_line_and_the_known_ones(tmp_path):
    ((path, msg, line),) = problems(tmp_path, GOOD.replace("provider: openai", "provider: opena"))
    assert (path, line) == ("models.m1.provider", 4)
    assert msg == "unknown provider 'opena'; did you mean 'openai'? (known: openai, python, replay, sklearn, transformers)"
    ((path, msg, line),) = problems(tmp_path, GOOD.replace("{provider: sklearn, train: train.parquet}", "{train: train.parquet}"))
    assert (path, line) == ("models.base.provider", 5) and "a model needs a provider" in msg and "sklearn" in msg


def test_misspelt_option_names_the_provider_and_what_it_takes(tmp_path):
    text = GOOD.replace("params: {temperature: 0}", "temprature: 0")
    with pytest.raises(ConfigError) as e:
        load_checked(write(tmp_path, text))
    ((path, msg, line),) = e.value.problems
    assert (path, line) == ("models.m1.temprature", 4)  # the provider is not part of the path
    assert msg.startswith("not an option of provider 'openai'") and "(it takes: api_key_env, base_url, client," in msg
    assert msg.endswith("goes under params:")
    assert "models.m1.temprature (line 4): not an option of provider 'openai'" in str(e.value)
    # a close match is named
    ((path, msg, _),) = problems(tmp_path, GOOD.replace("api_key_env:", "api_key_evn:"))
    assert path == "models.m1.api_key_evn" and "did you mean 'api_key_env'?" in msg
    # an option of another provider says whose it is
    ((path, msg, _),) = problems(tmp_path, GOOD.replace("train: train.parquet}", "train: train.parquet, max_concurrency: 2}"))
    assert path == "models.base.max_concurrency" and "max_concurrency is an option of providers 'openai', 'replay'" in msg


def test_missing_required_option_names_it(tmp_path):
    ((path, msg, line),) = problems(tmp_path, GOOD.replace("model: gpt-4o-mini, ", ""))
    assert (path, msg, line) == ("models.m1.model", "required by provider 'openai'", 4)


def test_errors_inside_a_model_keep_their_path_without_the_provider(tmp_path):
    ((path, msg, line),) = problems(
        tmp_path, GOOD.replace("train: train.parquet}", "train: train.parquet, compute: {usd_per_hour: -1}}")
    )
    assert (path, line) == ("models.base.compute.usd_per_hour", 5) and "greater than or equal to 0" in msg
    text = GOOD.replace("base: {provider: sklearn, train: train.parquet}", "base: {provider: replay}")
    ((path, msg, line),) = problems(tmp_path, text)
    assert (path, line) == ("models.base", 5) and msg.startswith("replay needs source:")  # no "Value error, "


def test_a_served_models_instances_and_one_way_to_price_it(tmp_path):
    ((path, msg, line),) = problems(
        tmp_path, GOOD.replace("train: train.parquet}", "train: train.parquet, compute: {instances: -1}}")
    )
    assert (path, line) == ("models.base.compute.instances", 5) and "greater than or equal to 0" in msg
    text = GOOD.replace(
        "base: {provider: sklearn, train: train.parquet}",
        'base: {provider: python, function: "m:f", compute: {usd_per_hour: 1}, hosting: {usd_per_gpu_hour: 2}}',
    )
    ((path, msg, line),) = problems(tmp_path, text)
    assert (path, line) == (
        "models.base",
        5,
    ) and msg == "give compute: (priced by compute time) or hosting: (priced by throughput), not both"
    serverless = GOOD.replace("train: train.parquet}", "train: train.parquet, compute: {usd_per_hour: 1, instances: 0}}")
    assert load_checked(write(tmp_path, serverless)).config.models["base"].compute.instances == 0


def test_each_provider_gets_its_own_class_with_the_old_defaults(tmp_path):
    from assay.config import OpenAIModel, SklearnModel

    loaded = load_checked(write(tmp_path, GOOD))
    m1, base = loaded.config.models["m1"], loaded.config.models["base"]
    assert isinstance(m1, OpenAIModel) and isinstance(base, SklearnModel)
    assert (m1.max_concurrency, m1.timeout_s, m1.max_attempts, m1.client, m1.rpm) == (16, 60, 4, "aiohttp", None)
    assert m1.target == "gpt-4o-mini" and base.target == "tfidf-logreg (train: train.parquet)"


def test_model_targets():
    from assay.config import parse_model

    assert parse_model({"provider": "openai", "model": "m", "base_url": "http://h/v1"}).target == "m @ http://h/v1"
    assert parse_model({"provider": "replay", "source": "log.parquet"}).target == "log.parquet"
    assert parse_model({"provider": "replay", "output_column": "pred"}).target == "dataset column pred"
    assert parse_model({"provider": "python", "function": "pkg.mod:fn"}).target == "pkg.mod:fn"
    assert parse_model({"provider": "transformers", "path": "models/tiny"}).target == "models/tiny"
    assert parse_model({"provider": "sklearn", "estimator": "majority"}).target == "majority"


def test_config_hash_is_what_it_was_with_one_model_class(tmp_path):
    """The hash names run folders, matches a run to resume and is checked by ``assay reproduce``: it is
    the value it had when one model class held every provider's fields (values computed then)."""
    text = """
        models:
          o: {provider: openai, model: gpt-4o-mini, api_key_env: K, params: {temperature: 0}, base_url: "http://x/v1", rpm: 10, hosting: {usd_per_gpu_hour: 2}}
          sk: {provider: sklearn, train: train.parquet, estimator: majority}
          py: {provider: python, function: "m:f", params: {a: 1}, compute: {usd_per_hour: 1}}
          tr: {provider: transformers, path: m, model: tiny, max_concurrency: 2}
          rp: {provider: replay, output_column: answer, price: {input_per_mtok: 1, output_per_mtok: 2}}
        pipelines:
          p:
            dataset: {source: test.parquet, id: id, reference: label}
            prompt: {template: "x {text}"}
            models: [o, sk, py, tr, rp]
            metrics: [accuracy]
    """
    loaded = load_checked(write(tmp_path, text))
    assert loaded.config_hash("p") == "0146012d357f04837ea1265179f5ccb33ccdc6b515ec1e914594b742fd0934f8"
    assert loaded.config_hash("p", ["sk"]) == "b1f21ca5dbffa1cb5ad7d7b26f904b813263c414a2c679c521f5b610b22690a5"


# ------------------------------------------------------------------------------------------------ a run's recorded config


def _manifest(loaded, pipeline="p") -> dict:
    """What a run records (see assay.runs.start_run)."""
    return {"pipeline": pipeline, "config": loaded.pipeline_slice(pipeline), "config_file": str(loaded.path)}


def test_recorded_config_has_one_rule_for_an_unset_variable(tmp_path, monkeypatch):
    from assay.config import recorded_config

    monkeypatch.setenv("ASSAY_TEST_URL", "http://127.0.0.1:9/v1")
    loaded = load_checked(
        write(
            tmp_path, GOOD.replace("api_key_env: OPENAI_API_KEY,", "api_key_env: OPENAI_API_KEY, base_url: '${ASSAY_TEST_URL}',")
        )
    )
    manifest = _manifest(loaded)
    again = recorded_config(manifest)
    assert again.config_hash("p") == loaded.config_hash("p") and again.resolve_path("t.parquet") == loaded.resolve_path(
        "t.parquet"
    )
    assert again.pipeline_slice("p") == loaded.pipeline_slice("p")
    monkeypatch.delenv("ASSAY_TEST_URL")
    with pytest.raises(ConfigError) as e:
        recorded_config(manifest)  # the default, for whatever calls the models
    assert e.value.problems == [("config.models.m1.base_url", "environment variable ASSAY_TEST_URL is not set", None)]
    assert recorded_config(manifest, unset_env="keep").config.models["m1"].base_url == "${ASSAY_TEST_URL}"


def test_recorded_config_errors_name_the_manifest_key_path(tmp_path):
    from assay.config import recorded_config, recorded_model

    manifest = _manifest(load_checked(write(tmp_path, GOOD)))

    def problems_of(m) -> list[tuple]:
        with pytest.raises(ConfigError) as e:
            recorded_config(m, source="run/manifest.json")
        assert str(e.value).startswith("run/manifest.json: ")
        return [(path, msg) for path, msg, _ in e.value.problems]

    bad = json_copy(manifest)
    bad["config"]["models"]["m1"]["temprature"] = 0
    ((path, msg),) = problems_of(bad)
    assert path == "config.models.m1.temprature" and msg.startswith("not an option of provider 'openai'")
    bad = json_copy(manifest)
    bad["config"]["pipeline"]["shard_size"] = 0
    assert [p for p, _ in problems_of(bad)] == ["config.pipeline.shard_size"]
    bad = json_copy(manifest)
    del bad["config"]["models"]["base"]
    assert problems_of(bad) == [("config.models.base", "no recorded config for model 'base'")]
    assert problems_of({"pipeline": "p"}) == [("config.pipeline", "the manifest has no recorded config")]
    with pytest.raises(ConfigError) as e:
        recorded_model({"provider": "openai"}, ("judge_prices", "j", "model_config"))
    assert [p for p, _, _ in e.value.problems] == ["judge_prices.j.model_config.model"]


def json_copy(obj):
    import json

    return json.loads(json.dumps(obj))


def test_runner_is_chosen_per_pipeline_over_the_top_level_and_shapes_no_hash(tmp_path):
    plain = load_checked(write(tmp_path, GOOD))
    assert plain.runner("p") is None
    top = load_checked(write(tmp_path, "runner: {dask: local, workers: 3, shard_rows: 1000}\n" + textwrap.dedent(GOOD)))
    r = top.runner("p")
    assert (r.dask, r.workers, r.shard_rows) == ("local", 3, 1000)
    both = textwrap.dedent(GOOD).replace("  p:\n", "  p:\n    runner: {dask: 'tcp://10.0.0.5:8786'}\n", 1)
    both = load_checked(write(tmp_path, "runner: {dask: local}\n" + both))
    assert both.runner("p").dask == "tcp://10.0.0.5:8786" and both.runner("p").workers is None
    # the same assessment here or on a cluster is the same run
    assert plain.config_hash("p") == top.config_hash("p") == both.config_hash("p")


@pytest.mark.parametrize(
    "runner, path, words",
    [
        ("{dask: 'host:8786'}", "runner.dask", "neither 'local' nor a scheduler address"),
        ("{dask: local, workers: 0}", "runner.workers", "greater than or equal to 1"),
        ("{dask: 'tcp://h:8786', workers: 2}", "runner", "workers is for a local cluster"),
        ("{dask: local, shard_rows: 0}", "runner.shard_rows", "greater than or equal to 1"),
        ("{dask: local, threads: 2}", "runner.threads", "xtra"),
        ("{workers: 2}", "runner.dask", "required"),
    ],
)
def test_a_bad_runner_names_its_key_path(tmp_path, runner, path, words):
    text = textwrap.dedent(GOOD).replace("  p:\n", f"  p:\n    runner: {runner}\n", 1)
    found = problems(tmp_path, text)
    hits = [(where, msg) for where, msg, _ in found if where == f"pipelines.p.{path}"]
    assert hits and words.lower() in hits[0][1].lower(), found
