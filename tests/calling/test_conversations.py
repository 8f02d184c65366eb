"""Conversations as input (``prompt: {messages: COLUMN}``): normalisation, the system message,
the cache key, the openai provider (both clients) against the fake server, the python provider,
the judge, capacity, the OpenAI evals JSONL shape and the preflight's errors naming the example."""

import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import PromptConfig
from assay.prompting import PromptError, normalise_conversation, prompt_version, render_requests, transcript, with_system
from assay.responses import read_responses
from assay.stages import run_local
from tests.conftest import write_config

DAY = date(2026, 11, 5)

#: the Arrow type the production log readers give the messages column
MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("name", pa.string()),
        ("tool_call_id", pa.string()),
        ("tool_calls", pa.string()),
    ]
)

TOOL_CALLS = [{"id": "call_1", "type": "function", "function": {"name": "order_status", "arguments": '{"id": 42}'}}]


def msg(role, content, name=None, tool_call_id=None, tool_calls=None):
    return {
        "role": role,
        "content": content,
        "name": name,
        "tool_call_id": tool_call_id,
        "tool_calls": None if tool_calls is None else json.dumps(tool_calls),
    }


CONVERSATIONS = {
    "c1": [
        msg("system", "You are a support agent."),
        msg("user", "Where is my order?"),
        msg("assistant", None, tool_calls=TOOL_CALLS),
        msg("tool", "shipped on Monday", tool_call_id="call_1"),
        msg("assistant", "It shipped on Monday."),
        msg("user", "ANSWER: thanks, when will it arrive"),
    ],
    "c2": [msg("user", "ANSWER: hello there")],
    "c3": [
        msg("system", "Be brief."),
        msg("user", "Reset my password please"),
        msg("assistant", "Done."),
        msg("user", "ANSWER: and my username"),
    ],
}


def test_normalise_text_parts_tool_calls_and_json_text():
    conv = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "input_text", "text": "b"}, "c"]},
        {"role": "assistant", "content": None, "tool_calls": json.dumps(TOOL_CALLS), "name": None},
        {"role": "tool", "content": [{"type": "text", "content": "42"}], "tool_call_id": "call_1"},
    ]
    out = normalise_conversation(json.dumps(conv), "e1")
    assert out == [
        {"role": "user", "content": "a\nb\nc"},
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    "value, match",
    [
        (None, "example 'e7': no messages"),
        ([], "example 'e7': the conversation has no messages"),
        ("not json", "example 'e7': the messages are text that is not JSON"),
        ([{"role": "robot", "content": "x"}], "example 'e7', message 0: role 'robot'"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "message 0: content part 0 is of type 'image_url'",
        ),
        ([{"role": "user", "content": "a"}, {"role": "tool", "content": "x"}], "message 1: a tool message without tool_call_id"),
        ([{"role": "assistant", "content": None}], "message 0: a assistant message without content"),
        ([{"role": "assistant", "content": "x", "tool_calls": "{broken"}], "message 0: tool_calls is text that is not JSON"),
        ({"role": "user"}, "not a list"),
    ],
)
def test_malformed_conversations_name_the_example(value, match):
    with pytest.raises(PromptError, match=match.replace("(", r"\(").replace("[", r"\[")):
        normalise_conversation(value, "e7")


def test_system_replace_or_prepend():
    conv = [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}]
    assert with_system(conv, "new", "replace") == [{"role": "system", "content": "new"}, {"role": "user", "content": "hi"}]
    assert with_system(conv, "new", "prepend") == [{"role": "system", "content": "new"}] + conv
    assert with_system(conv, None, "replace") == conv


def test_prompt_config_takes_template_or_messages():
    with pytest.raises(ValueError, match="one of the two"):
        PromptConfig(template="{x}", messages="m")
    with pytest.raises(ValueError, match="one of the two"):
        PromptConfig()
    assert prompt_version(PromptConfig(messages="m")) != prompt_version(PromptConfig(messages="m", system="s"))
    # a template prompt keeps the version (so the cache keys) it always had
    assert prompt_version(PromptConfig(template="{x}")) == prompt_version(PromptConfig(template="{x}", system_mode="prepend"))


def test_render_from_an_arrow_messages_column():
    t = pa.table({"example_id": list(CONVERSATIONS), "messages": pa.array(list(CONVERSATIONS.values()), pa.list_(MESSAGE))})
    reqs = render_requests(PromptConfig(messages="messages", system="House rules."), t)
    assert len(reqs) == 3
    first = reqs[0]
    assert first[0] == {"role": "system", "content": "House rules."} and [m["role"] for m in first][1:] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert first[2]["tool_calls"] == TOOL_CALLS and first[3]["tool_call_id"] == "call_1"
    assert "tool calls: " in transcript(first)


def write_pipeline(
    tmp_path,
    base_url,
    *,
    client="aiohttp",
    conversations=CONVERSATIONS,
    extra_models="",
    models="[cand]",
    metrics="[exact_match]",
    system="",
    provider_prompt="",
):
    ids = list(conversations)
    pq.write_table(
        pa.table(
            {
                "example_id": ids,
                "messages": pa.array(list(conversations.values()), pa.list_(MESSAGE)),
                "label": ["thanks, when will it", "hello there", "and my username"][: len(ids)],
            }
        ),
        tmp_path / "traffic.parquet",
    )
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        cache_dir: {tmp_path}/cache
        models:
          cand: {{provider: openai, model: mock-model, base_url: "{base_url}", client: {client},
                 params: {{max_tokens: 16}}, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
        {extra_models}
        pipelines:
          conv:
            dataset: {{source: traffic.parquet, id: example_id, reference: label}}
            prompt: {{messages: messages{system}}}
            models: {models}
            metrics: {metrics}
            bootstrap: 10
    """,
    )
    return str(cfg)


def _chars(conv):
    return sum(len(m["content"] or "") for m in conv)


@pytest.mark.parametrize("client", ["aiohttp", "sdk"])
def test_openai_gets_the_whole_conversation(tmp_path, server, client):
    server.reset()
    cfg = write_pipeline(tmp_path, server.base_url, client=client)
    ctx = run_local(cfg, "conv", DAY)
    resp = read_responses(ctx.folder).to_pandas().set_index("example_id")
    assert resp["error"].isna().all()
    # the fake server answers the last user message's ANSWER line and counts every message's characters
    assert resp.loc["c1", "output"] == "thanks, when will it arrive"
    for eid, conv in CONVERSATIONS.items():
        assert resp.loc[eid, "prompt_tokens"] == (_chars(normalise_conversation(conv)) + 3) // 4
    assert server.stats()["requests_total"] == 3
    # the cache key covers the messages: the same conversations are served from the cache ...
    ctx2 = run_local(cfg, "conv", DAY)
    assert server.stats()["requests_total"] == 3
    assert ctx2.folder.manifest()["stages"]["invoke"]["models"]["cand"]["cache_hits"] == 3
    # ... and one changed turn is a new request, the others still cached
    changed = dict(CONVERSATIONS)
    changed["c3"] = CONVERSATIONS["c3"][:2] + [msg("assistant", "Done, check your mail.")] + CONVERSATIONS["c3"][3:]
    write_pipeline(tmp_path, server.base_url, client=client, conversations=changed)
    run_local(cfg, "conv", DAY)
    assert server.stats()["requests_total"] == 4


def test_system_mode_in_a_run(tmp_path, server):
    server.reset()
    cfg = write_pipeline(tmp_path, server.base_url, system=", system: 'labels: zebra', system_mode: prepend")
    ctx = run_local(cfg, "conv", DAY)
    resp = read_responses(ctx.folder).to_pandas().set_index("example_id")
    # prepend keeps c1's own system message besides the new one
    want = _chars(normalise_conversation(CONVERSATIONS["c1"])) + len("labels: zebra")
    assert resp.loc["c1", "prompt_tokens"] == (want + 3) // 4


def seen_by_function(rows):
    """A python model that answers with what it was given: the roles, and the last user message."""
    return [json.dumps({"roles": [m["role"] for m in r["messages"]], "prompt": r["prompt"]}) for r in rows]


def test_python_provider_rows_carry_the_conversation(tmp_path, server):
    cfg = write_pipeline(
        tmp_path,
        server.base_url,
        models="[fn]",
        extra_models="  fn: {provider: python, function: 'tests.calling.test_conversations:seen_by_function'}",
    )
    ctx = run_local(cfg, "conv", DAY)
    out = read_responses(ctx.folder).to_pandas().set_index("example_id")["output"]
    assert json.loads(out["c1"]) == {
        "roles": ["system", "user", "assistant", "tool", "assistant", "user"],
        "prompt": "ANSWER: thanks, when will it arrive",
    }


def test_the_judge_sees_the_conversation(tmp_path, server):
    server.reset()
    cfg = write_pipeline(
        tmp_path,
        server.base_url,
        models="[cand]",
        metrics="[{name: judge, judge: grader, args: {rubric: 'helpful?'}}]",
        extra_models=f"  grader: {{provider: openai, model: mock-model, base_url: '{server.base_url}'}}",
    )
    ctx = run_local(cfg, "conv", DAY)
    assert ctx.folder.manifest()["stages"]["score"]["judges"]["judge"]["requests"] == 3
    from assay.stages.score import inputs_text

    ds = ctx.folder.read_table("dataset.parquet")
    texts = inputs_text(ctx, ds)
    assert "[tool]\nshipped on Monday" in texts[0] and "[user]\nWhere is my order?" in texts[0]


def test_capacity_renders_the_conversations(tmp_path, server):
    from assay.capacity import pipeline_prompts
    from assay.config import load_config

    cfg = write_pipeline(tmp_path, server.base_url)
    prompts, where = pipeline_prompts(load_config(cfg), "conv")
    assert len(prompts) == 3 and any(m["role"] == "tool" for m in prompts[0])


def test_openai_evals_jsonl_shape(tmp_path, server):
    server.reset()
    lines = [
        {
            "input": [{"role": "system", "content": "Answer tersely."}, {"role": "user", "content": "ANSWER: Paris"}],
            "ideal": "Paris",
        },
        {"input": [{"role": "user", "content": "ANSWER: 4"}], "ideal": "4"},
        {"input": [{"role": "user", "content": "ANSWER: blue"}], "ideal": "red"},
    ]
    (tmp_path / "evals.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          cand: {{provider: openai, model: mock-model, base_url: "{server.base_url}"}}
        pipelines:
          evals:
            dataset: {{source: evals.jsonl, reference: ideal}}
            prompt: {{messages: input}}
            models: [cand]
            metrics: [exact_match]
            bootstrap: 10
    """,
    )
    ctx = run_local(str(tmp_path / "pipelines.yaml"), "evals", DAY)
    m = ctx.folder.read_table("metrics.parquet").to_pandas()
    row = m[(m.metric == "exact_match") & (m.slice == "all")].iloc[0]
    assert row.value == pytest.approx(2 / 3) and row.n == 3


def test_preflight_names_the_malformed_example(tmp_path, server):
    from assay.config import load_config
    from assay.preflight import find_problems

    bad = dict(CONVERSATIONS)
    bad["c2"] = [msg("user", "hi"), msg("tool", "orphan result")]
    cfg = write_pipeline(tmp_path, server.base_url, conversations=bad)
    problems = find_problems(load_config(cfg), "conv", DAY, None, None)
    assert any(
        k[-2:] == ("prompt", "messages") and "example 'c2', message 1: a tool message without tool_call_id" in m
        for k, m in problems
    ), problems


def test_preflight_names_a_missing_messages_column(tmp_path, server):
    from assay.config import load_config
    from assay.preflight import find_problems

    cfg = write_pipeline(tmp_path, server.base_url)
    text = open(cfg).read().replace("messages: messages", "messages: convo")
    open(cfg, "w").write(text)
    problems = find_problems(load_config(cfg), "conv", DAY, None, None)
    assert any("prompt.messages column 'convo'" in m for _, m in problems), problems


def test_a_provider_that_cannot_send_tool_calls_names_the_example():
    from assay.config import DatasetConfig, TransformersModel
    from assay.providers import Context
    from assay.providers.transformers_provider import TransformersProvider

    t = pa.table({"example_id": list(CONVERSATIONS), "messages": pa.array(list(CONVERSATIONS.values()), pa.list_(MESSAGE))})
    p = TransformersProvider(
        TransformersModel(path="models/none"),
        Context("local", DatasetConfig(source="x"), PromptConfig(messages="messages"), lambda x: x),
    )
    with pytest.raises(
        PromptError,
        match="example 'c1': the conversation has tool calls or tool results, which provider transformers cannot send",
    ):
        p._messages(t)
    # conversations without tool messages go through
    import pyarrow.compute as pc

    assert len(p._messages(t.filter(pc.is_in(t["example_id"], pa.array(["c2", "c3"]))))) == 2
