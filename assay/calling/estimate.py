"""What the candidates' calls will cost, before any of them is made (``cost.max_usd``).

Per example and paid model (a model priced per token that is called live: not a replayed log):

* prompt tokens: the example's logged ``prompt_tokens`` when the dataset has them (production
  traffic: what the incumbent was billed for the same conversation), else the request's
  characters / :data:`CHARS_PER_TOKEN` plus :data:`TOKENS_PER_MESSAGE` per message: an offline
  estimate that needs no tokenizer (English text runs at about four characters a token);
* output tokens: the example's logged ``completion_tokens`` (the incumbent's answer's length: a
  candidate is expected to answer at about that length), capped by the model's ``max_tokens`` (or
  ``max_completion_tokens``); without a logged count, ``max_tokens`` itself (an upper bound); else
  :data:`DEFAULT_OUTPUT_TOKENS`;
* times the model's samples per example, priced at the model's price on the run's date, with no
  cached-input discount (an estimate errs high).

A judge metric's calls are estimated too, as a ``judge:<model>`` line (:func:`add_judges`): the
grading judge one call per model and example, the pairwise judge two per candidate and example
(both orders), each of the example's prompt tokens plus the answers it shows plus
:data:`JUDGE_INSTRUCTION_TOKENS`, and the judge's ``max_tokens`` (else the default) out; calls the
response cache will serve are counted as paid.
"""

import json
from dataclasses import dataclass, field

import pyarrow as pa

#: characters per token of the offline estimate
CHARS_PER_TOKEN = 4
#: tokens a chat message costs besides its text (role, separators)
TOKENS_PER_MESSAGE = 3
#: output tokens assumed per call when neither max_tokens nor a logged completion bounds them
DEFAULT_OUTPUT_TOKENS = 256
#: tokens of a judge prompt's own instructions and rubric (its fixed text is about 1,000 characters)
JUDGE_INSTRUCTION_TOKENS = 300


@dataclass
class Estimate:
    """The estimated cost of a run's paid calls: per model, and per example (all models together)."""

    rows: int
    models: dict[str, float] = field(default_factory=dict)
    per_example: list[float] = field(default_factory=list)
    prompt_source: str = "characters"
    output_source: dict[str, str] = field(default_factory=dict)
    #: per example: the prompt tokens counted, and the answer tokens a judge is shown (the logged ones)
    prompt_tokens: list = field(default_factory=list, repr=False)
    answer_tokens: list = field(default_factory=list, repr=False)

    @property
    def usd(self) -> float:
        return sum(self.models.values())

    def fits(self, max_usd: float) -> int:
        """How many examples of this sample fit in ``max_usd`` (at the sample's mean cost per example)."""
        if self.usd <= max_usd or not self.rows:
            return self.rows
        mean = self.usd / self.rows
        return min(self.rows, int(max_usd // mean)) if mean > 0 else self.rows

    def to_dict(self) -> dict:
        """The manifest's record of it."""
        return {
            "usd": round(self.usd, 6),
            "rows": self.rows,
            "models": {m: round(v, 6) for m, v in self.models.items()},
            "prompt_tokens": self.prompt_source,
            "output_tokens": self.output_source,
            "chars_per_token": CHARS_PER_TOKEN,
        }


def prompt_tokens(requests, logged: list | None) -> tuple[list[int], str]:
    """Per example: the logged prompt tokens where there are some, else the offline estimate from
    the request's characters; and which was used (``logged``, ``characters`` or ``logged+characters``)."""
    out, used = [], set()
    for i, msgs in enumerate(requests):
        got = logged[i] if logged is not None else None
        if got is not None and got == got:
            out.append(int(got))
            used.add("logged")
            continue
        chars = 0
        for m in msgs:
            chars += len(m.get("content") or "")
            if m.get("tool_calls"):
                chars += len(json.dumps(m["tool_calls"]))
        out.append(-(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(msgs))
        used.add("characters")
    return out, "+".join(sorted(used)) or "characters"


def output_tokens(params: dict, logged: list | None, n: int) -> tuple[list[int], str]:
    """Per example: the logged completion tokens capped by the model's max_tokens, else max_tokens,
    else the default; and which was used."""
    cap = params.get("max_tokens") or params.get("max_completion_tokens")
    fallback = int(cap) if cap else DEFAULT_OUTPUT_TOKENS
    if logged is not None and any(v is not None and v == v for v in logged):
        out = [(min(int(v), fallback) if cap else int(v)) if v is not None and v == v else fallback for v in logged]
        return out, "logged completion_tokens" + (" (capped by max_tokens)" if cap else "")
    if cap:
        return [int(cap)] * n, "max_tokens"
    return [DEFAULT_OUTPUT_TOKENS] * n, f"default {DEFAULT_OUTPUT_TOKENS}"


def estimate(dataset: pa.Table, requests, models: dict, pricers: dict, samples: dict[str, int]) -> Estimate:
    """The cost of calling each of ``models`` (name -> config) on every example of ``dataset``
    (``requests``: each example's messages, or None when the models take rows), priced by
    ``pricers`` (name -> ``price(prompt, completion, cached)``; a model without one is not paid)."""
    n = dataset.num_rows
    cols = dataset.column_names
    logged_p = dataset["prompt_tokens"].to_pylist() if "prompt_tokens" in cols else None
    logged_c = dataset["completion_tokens"].to_pylist() if "completion_tokens" in cols else None
    if requests is None:
        p_tokens, p_source = (
            ([int(v or 0) for v in logged_p], "logged") if logged_p is not None else ([0] * n, "none (no prompt to render)")
        )
    else:
        p_tokens, p_source = prompt_tokens(requests, logged_p)
    est = Estimate(rows=n, per_example=[0.0] * n, prompt_source=p_source)
    for name, mcfg in models.items():
        price = pricers.get(name)
        if price is None:
            continue
        c_tokens, c_source = output_tokens(getattr(mcfg, "params", {}) or {}, logged_c, n)
        k = max(1, int(samples.get(name, 1)))
        each = [price(p, c, 0) * k for p, c in zip(p_tokens, c_tokens)]
        est.models[name] = sum(each)
        est.output_source[name] = c_source
        est.per_example = [a + b for a, b in zip(est.per_example, each)]
    est.prompt_tokens = p_tokens
    est.answer_tokens = output_tokens({}, logged_c, n)[0]
    return est


def add_judges(est: Estimate, judges: list[tuple[str, str, object, int]], pricers: dict) -> Estimate:
    """Add the judges' calls to ``est``: ``judges`` lists (metric name, judge model, its config, calls
    per example); a judge without a price in ``pricers`` is left out."""
    prompts = est.prompt_tokens or [0] * est.rows
    answers = est.answer_tokens or [DEFAULT_OUTPUT_TOKENS] * est.rows
    for metric, name, mcfg, calls in judges:
        price = pricers.get(name)
        if price is None or not calls:
            continue
        params = getattr(mcfg, "params", {}) or {}
        out = int(params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_OUTPUT_TOKENS)
        shown = 2 if metric == "pairwise" else 1  # a pairwise prompt shows two answers
        each = [price(p + shown * a + JUDGE_INSTRUCTION_TOKENS, out, 0) * calls for p, a in zip(prompts, answers)]
        key = f"judge:{name}"
        est.models[key] = est.models.get(key, 0.0) + sum(each)
        est.output_source[key] = f"{calls} call(s) per example, max_tokens {out}"
        est.per_example = [a + b for a, b in zip(est.per_example, each)]
    return est
