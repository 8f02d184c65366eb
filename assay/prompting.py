"""Prompt rendering: a template filled from each dataset row's fields, or a conversation read from a column.

``prompt: {template: ...}`` makes each request ``system`` + one user message. ``prompt: {messages:
COLUMN}`` sends the column's conversation as it is (multi-turn, tool calls and tool results kept),
normalised to the OpenAI chat shape (:func:`normalise_conversation`), with ``system:`` replacing
the conversation's own system messages or put before them (``system_mode``). Either way the rest
of Assay (the cache key, the calling engine, every provider) sees only lists of messages.
"""

import hashlib
import json
import string
from collections.abc import Sequence

import pyarrow as pa

from assay.config import PromptConfig
from assay.dataset import template_fields
from assay.errors import AssayError


class PromptError(AssayError, ValueError):
    """A template that cannot be filled from a row."""


def prompt_version(prompt: PromptConfig | None) -> str | None:
    """The declared version, else a content hash: a cached response is reused only for the same prompt."""
    if prompt is None:
        return None
    if prompt.version:
        return prompt.version
    if prompt.messages is not None:  # the conversations themselves are in every request, so in every cache key
        return hashlib.sha256(json.dumps([prompt.system, "messages", prompt.system_mode]).encode()).hexdigest()[:12]
    return hashlib.sha256(json.dumps([prompt.system, prompt.template]).encode()).hexdigest()[:12]


class Requests(Sequence):
    """The chat messages of every row, built when asked for: ``requests[i]`` is row i's messages.

    The engine asks for each one as it calls it, so that a run over many rows does not hold (and
    the garbage collector does not keep scanning) a list of dicts per row it has not called yet.
    """

    def __init__(self, system: str | None, users: list[str]):
        self.system, self.users = system, users

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self.system:
            return [{"role": "system", "content": self.system}, {"role": "user", "content": self.users[i]}]
        return [{"role": "user", "content": self.users[i]}]


def render_requests(prompt: PromptConfig, rows: pa.Table) -> "Requests | Conversations":
    """Chat messages for every row of ``rows``, in order, built on demand (see :class:`Requests`)."""
    if prompt.messages is not None:
        return render_conversations(prompt, rows)
    fields = template_fields(prompt.template)
    missing = [f for f in fields if f not in rows.column_names]
    if missing:
        raise PromptError(f"prompt template uses {', '.join(missing)} which the dataset does not have")
    cols = {f: rows[f].to_pylist() for f in fields}
    template = prompt.template
    users = _fill_plain(template, cols, rows.num_rows)
    if users is None:  # format specs, conversions, attributes: str.format itself, row by row
        users = [
            template.format_map({f: ("" if cols[f][i] is None else cols[f][i]) for f in fields}) for i in range(rows.num_rows)
        ]
    return Requests(prompt.system, users)


def render_messages(prompt: PromptConfig, rows: pa.Table) -> list[list[dict]]:
    """Chat messages for every row of ``rows``, in order."""
    return list(render_requests(prompt, rows))


def _fill_plain(template: str, cols: dict[str, list], n: int) -> list[str] | None:
    """The template filled column by column when it has only plain ``{field}`` fields (the usual case,
    and several times faster than ``format_map`` per row); None when it has anything else."""
    parts = list(string.Formatter().parse(template))
    if any(f is not None and (spec or conv or f not in cols) for _, f, spec, conv in parts):
        return None
    users = [""] * n
    for literal, f, _, _ in parts:
        if literal:
            users = [u + literal for u in users]
        if f is not None:
            # what str.format writes for a value: format(v, ""); None is left empty
            users = [u + (v if type(v) is str else "" if v is None else format(v, "")) for u, v in zip(users, cols[f])]
    return users


# ------------------------------------------------------------------------------------------------ conversations

#: the roles a conversation's messages may have
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: content part types that hold text (OpenAI chat and Responses, OTel GenAI ``text`` parts)
TEXT_PARTS = ("text", "input_text", "output_text")


class Conversations(Sequence):
    """Every row's conversation, normalised (:func:`normalise_conversation`), with the prompt's
    system message applied; ``ids`` are the rows' example ids (for errors that name the example)."""

    def __init__(self, conversations: list[list[dict]], ids: list):
        self.conversations, self.ids = conversations, ids

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.conversations[i]
        return self.conversations[i]


def _where(example_id) -> str:
    return f"example {example_id!r}" if example_id is not None else "a row"


def _text(content, where: str) -> str | None:
    """A message's content as text: a string as it is, a list of text parts joined with newlines."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)) or type(content).__name__ == "ndarray":
        out = []
        for k, part in enumerate(content):
            if isinstance(part, str):
                out.append(part)
                continue
            if not isinstance(part, dict):
                raise PromptError(f"{where}: content part {k} is {type(part).__name__}, not a text part")
            kind = part.get("type") or "text"
            if kind not in TEXT_PARTS:
                raise PromptError(
                    f"{where}: content part {k} is of type {kind!r}; only text parts ({', '.join(TEXT_PARTS)}) can be sent"
                )
            text = part.get("text", part.get("content"))
            if not isinstance(text, str):
                raise PromptError(f"{where}: content part {k} (type {kind}) has no text")
            out.append(text)
        return "\n".join(out)
    raise PromptError(f"{where}: content is {type(content).__name__}, neither text nor a list of text parts")


def normalise_conversation(value, example_id=None) -> list[dict]:
    """One conversation as OpenAI chat messages: ``{role, content}`` with content as text (a list of
    text parts joined), and ``name``, ``tool_call_id``, ``tool_calls`` (a list; given as JSON text or
    a list) where the message has them. Accepts a list of message mappings or its JSON text; a
    :class:`PromptError` naming the example and the message otherwise."""
    where = _where(example_id)
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise PromptError(f"{where}: the messages are text that is not JSON ({e})") from None
    if value is None:
        raise PromptError(f"{where}: no messages (the column is empty for this row)")
    if type(value).__name__ == "ndarray":
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise PromptError(f"{where}: the messages are {type(value).__name__}, not a list of {{role, content}} messages")
    if not value:
        raise PromptError(f"{where}: the conversation has no messages")
    out = []
    for j, m in enumerate(value):
        at = f"{where}, message {j}"
        if not isinstance(m, dict):
            raise PromptError(f"{at}: {type(m).__name__}, not a {{role, content}} mapping")
        role = m.get("role")
        if role not in ROLES:
            raise PromptError(f"{at}: role {role!r} is not one of {', '.join(ROLES)}")
        msg = {"role": role, "content": _text(m.get("content"), at)}
        for k in ("name", "tool_call_id"):
            if m.get(k) is not None:
                msg[k] = str(m[k])
        calls = m.get("tool_calls")
        if isinstance(calls, str):
            try:
                calls = json.loads(calls) if calls.strip() else None
            except ValueError as e:
                raise PromptError(f"{at}: tool_calls is text that is not JSON ({e})") from None
        if type(calls).__name__ == "ndarray":
            calls = list(calls)
        if calls:
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                raise PromptError(f"{at}: tool_calls must be a list of tool calls")
            msg["tool_calls"] = calls
        if msg["content"] is None and "tool_calls" not in msg:
            raise PromptError(f"{at}: a {role} message without content")
        if role == "tool" and "tool_call_id" not in msg:
            raise PromptError(f"{at}: a tool message without tool_call_id")
        out.append(msg)
    return out


def with_system(messages: list[dict], system: str | None, mode: str) -> list[dict]:
    """``messages`` with the prompt's ``system`` applied: ``replace`` drops the conversation's own
    system messages and puts ``system`` first; ``prepend`` puts it before them."""
    if not system:
        return messages
    rest = [m for m in messages if m["role"] != "system"] if mode == "replace" else messages
    return [{"role": "system", "content": system}] + rest


def render_conversations(prompt: PromptConfig, rows: pa.Table) -> Conversations:
    """Every row's conversation from the ``prompt.messages`` column, normalised, system applied;
    a :class:`PromptError` naming the first example whose conversation is not well formed."""
    col = prompt.messages
    if col not in rows.column_names:
        raise PromptError(f"prompt.messages column {col!r} is not in the dataset (columns: {', '.join(rows.column_names)})")
    values = rows[col].to_pylist()
    ids = rows["example_id"].to_pylist() if "example_id" in rows.column_names else [None] * rows.num_rows
    convs = [with_system(normalise_conversation(v, e), prompt.system, prompt.system_mode) for v, e in zip(values, ids)]
    return Conversations(convs, ids)


def has_tool_messages(messages: list[dict]) -> bool:
    """Whether a conversation holds tool calls or tool results."""
    return any(m["role"] in ("tool", "function") or "tool_calls" in m for m in messages)


def refuse_tool_messages(requests, ids, provider: str) -> None:
    """A :class:`PromptError` naming the first example whose conversation has tool calls or results,
    for a provider that cannot send them."""
    for i, msgs in enumerate(requests):
        if has_tool_messages(msgs):
            where = _where(ids[i] if ids is not None else None)
            raise PromptError(
                f"{where}: the conversation has tool calls or tool results, which provider {provider} "
                "cannot send (use an openai model, or drop those messages from the dataset)"
            )


def transcript(messages: list[dict]) -> str:
    """A conversation as plain text for a judge: one ``[role] text`` block per message, the tool
    calls an assistant made as their JSON."""
    out = []
    for m in messages:
        head = m["role"] + (f" {m['name']}" if m.get("name") else "")
        body = m.get("content") or ""
        if m.get("tool_calls"):
            body = (body + "\n" if body else "") + "tool calls: " + json.dumps(m["tool_calls"], ensure_ascii=False)
        out.append(f"[{head}]\n{body}")
    return "\n\n".join(out)
