"""The fan-out of a run's calls: every model on every example, through the engine: one response per (example, model, sample), resumable.

A chat model with ``samples: K`` is asked each example K times, each a request of its own
(sample 0..K−1): sample 0 has the cache key a single call has, sample s > 0 that key with s
added (:func:`sample_key`), so a cached sampled run replays all K and a single-call run's cache
serves the first sample of a sampled one. A batch provider is called once per example.

Per model: earlier parts of an interrupted run are compacted and their examples skipped
(:func:`assay.responses.compact`, which also hands on what the earlier attempts measured), the rest go to :func:`~assay.calling.engine.call_chat` (chat
providers, the rendered prompt of each example) or :func:`~assay.calling.batch.run_batches`
(batch providers, the rows), and every chunk that comes back is written as one Parquet part
``responses/part-<model>-<seq>.parquet``, so a killed run loses at most a shard of work and pays
for none of it again. Models run concurrently (different endpoints do not wait for one another).
"""

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from assay.cache import ResponseCache, key_maker
from assay.calling.batch import run_batches
from assay.calling.budget import Budget
from assay.calling.engine import CallOptions, Chunk, call_chat, new_stats
from assay.errors import ProviderSetupError
from assay.prompting import prompt_version, render_requests
from assay.providers.base import BatchProvider, ChatProvider, Provider
from assay.responses import RESPONSE_SCHEMA, compact, drop_remote_journal, journal_path, part_name, remote_journal
from assay.store import RunFolder


@dataclass
class Options:
    shard_size: int = 500
    cache_mode: str = "use"  # use | refresh | off
    on_progress: Callable[[str, int, int, float], None] | None = None  # (model, done, errors, the model's usd)


_STARTED = RESPONSE_SCHEMA.field("started_at").type


def sample_key(key: str, sample: int) -> str:
    """The cache key of sample ``sample`` of a request whose single-call key is ``key``: that key
    itself for sample 0 (so a run without repeated sampling keeps its cache), a hash of the key and
    the sample index otherwise."""
    if not sample:
        return key
    return hashlib.sha256(f"{key}/sample/{int(sample)}".encode()).hexdigest()


def pick(ids, index) -> "list | pa.Array":
    """The ids at positions ``index`` (a list or a range) of ``ids`` (a list or an Arrow array)."""
    if isinstance(ids, list):
        return [ids[j] for j in index]
    if isinstance(index, range) and index.step == 1:
        return ids.slice(index.start, len(index))
    return ids.take(pa.array(list(index), pa.int64()))


def chunk_table(chunk: Chunk, example_ids, model: str, samples: list | None = None) -> pa.Table:
    """A chunk as response rows (:data:`~assay.responses.RESPONSE_SCHEMA`); ``example_ids`` a list
    or an Arrow array; ``samples`` gives each row's sample index (default 0)."""
    n = len(chunk)
    s = RESPONSE_SCHEMA
    c = chunk
    if isinstance(example_ids, pa.ChunkedArray):
        example_ids = example_ids.combine_chunks()
    ids = example_ids.cast(pa.string()) if isinstance(example_ids, pa.Array) else pa.array(example_ids, pa.string())
    arrays = [
        ids,
        pa.array([model] * n, pa.string()),
        pa.array(samples if samples is not None else [0] * n, pa.int32()),
        pa.array(c.output, pa.string()),
        pa.array(c.prompt_tokens, pa.int64()),
        pa.array(c.completion_tokens, pa.int64()),
        pa.array(c.cached_tokens, pa.int64()),
        pa.array(c.cache_write_tokens, pa.int64()),
        pa.array(c.latency_s, pa.float64()),
        pa.array(c.started_at, pa.int64()).cast(_STARTED),
        pa.array(c.attempts, pa.int32()),
        pa.array(c.cached, pa.bool_()),
        pa.array(c.error, pa.string()),
        pa.array(c.confidence, pa.float64()),
        pa.array(c.response_model, pa.string()),
        pa.array(c.system_fingerprint, pa.string()),
        pa.array(c.ttft_s, pa.float64()),
    ]
    return pa.Table.from_arrays(arrays, schema=s)


class PartWriter:
    """``on_chunk`` for one model: each chunk becomes the next response part; ``after(chunk)``, if
    given, is told once the part is written. ``samples`` (aligned with ``example_ids``) gives each
    request's sample index."""

    def __init__(
        self,
        run: RunFolder,
        model: str,
        seq: int,
        example_ids: list,
        after: Callable[[Chunk], None] | None = None,
        samples: list | None = None,
    ):
        self.run, self.model, self.seq, self.ids, self.after = run, model, seq, example_ids, after
        self.samples = samples

    def __call__(self, chunk: Chunk) -> None:
        ids, ss = self.ids, self.samples
        self.run.write_table(
            part_name(self.model, self.seq),
            chunk_table(chunk, pick(ids, chunk.index), self.model, None if ss is None else [ss[j] for j in chunk.index]),
        )
        self.seq += 1
        if self.after is not None:
            self.after(chunk)


#: internal: whether a chat model's finished calls are journaled (benchmarks/invoke_throughput.py
#: ``durability`` measures what the journal costs by turning it off; runs always journal)
JOURNAL = True
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class Uploads:
    """On a remote artifact root, a journal's lines also go to the run folder: what was journaled
    since the last upload becomes one new object ``responses/journal-<model>.d/<attempt>-<n>.jsonl``
    every ``ASSAY_JOURNAL_UPLOAD_S`` seconds (default 2), from a thread of its own, so the event
    loop never waits on the object store and a resume on another machine repays only the calls
    of the last interval (:func:`assay.responses.read_journal` reads every upload)."""

    def __init__(self, run: RunFolder, model: str, attempt: str):
        self.run, self.model, self.prefix = run, model, f"{remote_journal(run, model)}/{attempt}-"
        self.every = float(os.environ.get("ASSAY_JOURNAL_UPLOAD_S") or 2.0)
        self.buf: list[bytes] = []
        self.seq = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="assay-journal-upload", daemon=True)
        self.thread.start()

    def add(self, data: bytes) -> None:
        with self.lock:
            self.buf.append(data)

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            self.upload()

    def upload(self) -> None:
        with self.lock:
            data, self.buf = b"".join(self.buf), []
        if not data:
            return
        try:
            self.run._write_bytes(f"{self.prefix}{self.seq:06d}.jsonl", data)
            self.seq += 1
        except Exception as e:  # noqa: BLE001  (kept for the next upload; the local journal has it)
            import logging

            logging.getLogger("assay.invoke").warning(
                "journal upload to %s failed (retried at the next one): %s", self.run.url, e
            )
            with self.lock:
                self.buf.insert(0, data)

    def close(self, remove: bool) -> None:
        self.stop.set()
        self.thread.join()
        if remove:
            drop_remote_journal(self.run, self.model)
        else:
            self.upload()


class Journal:
    """``on_calls`` for one model: every finished call appended to ``responses/journal-<model>.jsonl``
    (one JSON line per write: ``{"c": [column, ...]}`` in :data:`assay.responses.JOURNAL_FIELDS`
    order) within a fraction of a second, so a killed run repays only the calls
    that were in flight; :func:`assay.responses.compact` folds it into the parts on resume.

    Each write ends with a snapshot of this attempt's measurements (one JSON object: the attempt,
    its ``wall_s`` so far, the fresh successes ``ok`` durable so far), so that a resumed run's
    throughput covers the time of the calls it did not make again. A batch model's journal holds
    only the snapshots, one per part written (:meth:`mark`)."""

    def __init__(
        self,
        run: RunFolder,
        model: str,
        example_ids: list,
        started: float,
        wall: Callable[[], float | None],
        samples: list | None = None,
    ):
        self.path = journal_path(run, model)
        self.ids = example_ids
        self.samples = samples
        self.started, self.wall = started, wall
        self.attempt = f"{time.time():.6f}-{os.getpid()}"
        self.ok = 0
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.uploads = Uploads(run, model, self.attempt) if run.store.remote else None

    def _write(self, data: bytes) -> None:
        os.write(self.fd, data)
        if self.uploads is not None:
            self.uploads.add(data)

    def measured(self) -> dict:
        """This attempt's measurements so far."""
        wall = self.wall()
        return {"attempt": self.attempt, "wall_s": time.perf_counter() - self.started if wall is None else wall, "ok": self.ok}

    def _snapshot(self) -> str:
        return _ENCODE(self.measured()) + "\n"

    def __call__(self, chunk: Chunk) -> None:
        ids, c, ss = self.ids, chunk, self.samples
        self.ok += c.error.count(None)
        # the fields of assay.responses.JOURNAL_FIELDS, the sample index last
        # one line per write, column by column (one encoder call, no per-call Python work)
        cols = [
            [ids[j] for j in c.index],
            c.output,
            c.prompt_tokens,
            c.completion_tokens,
            c.cached_tokens,
            c.cache_write_tokens,
            c.latency_s,
            c.started_at,
            c.attempts,
            c.cached,
            c.error,
            c.confidence,
            [0] * len(c.index) if ss is None else [ss[j] for j in c.index],
            c.response_model,
            c.system_fingerprint,
            c.ttft_s,
        ]
        self._write((_ENCODE({"c": cols}) + "\n" + self._snapshot()).encode())

    def mark(self, chunk: Chunk) -> None:
        """A batch model's part is written: snapshot what it holds (cache hits took no time)."""
        self.ok += sum(1 for e, hit in zip(chunk.error, chunk.cached) if e is None and not hit)
        self._write(self._snapshot().encode())

    def close(self, remove: bool) -> None:
        os.close(self.fd)
        if self.uploads is not None:
            self.uploads.close(remove)
        if remove:
            os.remove(self.path)


def request_identity(provider: Provider, prompt) -> dict:
    """The cache identity of a model's responses in a pipeline: the provider's, and the prompt's version."""
    return {**provider.identity(), "prompt_version": prompt_version(prompt)}


def _render(prompt, rows: pa.Table):
    if prompt is None:
        raise ProviderSetupError("this model needs a prompt: set the pipeline's prompt.template or prompt.messages")
    return render_requests(prompt, rows)


async def invoke_model(
    name: str,
    provider: Provider,
    dataset: pa.Table,
    prompt,
    run: RunFolder,
    cache: ResponseCache | None,
    opts: Options,
    budget: Budget,
    samples: int = 1,
) -> dict:
    """Produce one response per example and sample for one model, writing parts as shards complete.

    ``samples`` K > 1 asks a chat model each example K times (requests ``(example, sample)``,
    sample 0..K−1); a batch provider is called once whatever K. Besides the engine's stats:
    ``resumed`` (requests an earlier attempt answered), ``resumed_latency_s`` (their recorded
    time), ``earlier_attempts`` (each earlier attempt's measured ``wall_s`` and fresh successes
    ``ok``) and, with K > 1, ``samples``."""
    t_start = time.perf_counter()
    done = compact(run, name)
    batch = isinstance(provider, BatchProvider)
    if not batch and not isinstance(provider, ChatProvider):
        raise TypeError(f"model {name}: provider {type(provider).__name__} is neither a ChatProvider nor a BatchProvider")
    k = 1 if batch else max(1, int(samples))
    n = dataset.num_rows
    if batch and not done.ids:  # a fresh batch model: the ids stay one Arrow array (millions of Python strings would not)
        ids, todo, todo_samples = dataset["example_id"].combine_chunks(), range(n), None
    elif k == 1:
        ids = dataset["example_id"].to_pylist()
        todo = [i for i, e in enumerate(ids) if e not in done.ids]
        todo_samples = None
    else:  # example by example, each example's K samples together
        ids = dataset["example_id"].to_pylist()
        pairs = done.pairs
        todo, todo_samples = [], []
        for i, e in enumerate(ids):
            for s in range(k):
                if (e, s) not in pairs:
                    todo.append(i)
                    todo_samples.append(s)
    resumed = n * k - len(todo)
    earlier = {
        "resumed": resumed,
        "resumed_latency_s": done.latency_s,
        "earlier_attempts": [{f: a[f] for f in ("wall_s", "ok")} for a in done.attempts],
    }
    if k > 1:
        earlier["samples"] = k

    def progress(done: int, errors: int, usd: float) -> None:
        opts.on_progress(name, resumed + done, errors, usd)

    on_progress = progress if opts.on_progress is not None else None
    if on_progress is not None:
        on_progress(0, 0, 0.0)  # the bar shows the model and its total (and what a resumed run already has) at once
    if not todo:
        if os.path.exists(journal_path(run, name)):
            os.remove(journal_path(run, name))  # its measurements go into the stats, and from there to the manifest
        drop_remote_journal(run, name)
        return {**new_stats(1 if batch else provider.cfg.max_concurrency), **earlier}
    # (no take on a fresh run: building any Arrow array from Python objects imports pandas, half
    # a second before the first call)
    rows = sorted(set(todo)) if todo_samples is not None else todo
    sub = dataset if len(rows) == n else dataset.take(pa.array(rows, pa.int64()))
    sub_ids = ids if sub is dataset else sub["example_id"].to_pylist()
    at = None
    if todo_samples is not None:  # one request per (example, sample): positions of the requests in ``sub``
        where = {r: j for j, r in enumerate(rows)}
        at = [where[i] for i in todo]
        sub_ids = [sub_ids[j] for j in at]
    use_cache = cache is not None and opts.cache_mode != "off" and provider.cache_responses
    journal = None
    if batch or JOURNAL:
        journal = Journal(run, name, sub_ids, t_start, lambda: provider.stats().get("wall_s"), samples=todo_samples)
    identity = request_identity(provider, prompt) if use_cache else None
    kw = dict(
        name=name,
        identity=identity,
        cache=cache if use_cache else None,
        options=CallOptions(cache_mode=opts.cache_mode, chunk_size=opts.shard_size),
        budget=budget,
        on_chunk=PartWriter(run, name, done.seq, sub_ids, after=journal.mark if batch else None, samples=todo_samples),
        on_progress=on_progress,
    )
    try:
        if batch:
            stats = await run_batches(provider, sub, **kw)
        else:
            requests = _render(prompt, sub)
            keys = None
            if at is not None:
                if use_cache:
                    make = key_maker(identity)
                    base = [make(r) for r in requests]
                    keys = [sample_key(base[j], s) for j, s in zip(at, todo_samples)]
                requests = [requests[j] for j in at]
            stats = await call_chat(provider, requests, keys=keys, on_calls=journal, **kw)
    except BaseException:
        if journal is not None:
            journal.close(remove=False)  # what it holds is folded into the parts when the run resumes
        raise
    if journal is not None:
        journal.close(remove=True)  # every call it holds is in a part now, its measurements in the stats
    stats.update(earlier)
    stats["wall_s"] = time.perf_counter() - t_start
    return stats


async def invoke_all(
    providers: dict[str, Provider],
    dataset: pa.Table,
    prompt,
    run: RunFolder,
    cache: ResponseCache | None,
    opts: Options,
    budget: Budget,
    samples: dict[str, int] | None = None,
) -> dict[str, dict]:
    """All models concurrently (different endpoints do not wait for one another); ``samples``
    gives a model's calls per example (default 1)."""
    names = list(providers)
    samples = samples or {}
    results = await asyncio.gather(
        *(invoke_model(n, providers[n], dataset, prompt, run, cache, opts, budget, samples=samples.get(n, 1)) for n in names)
    )
    return dict(zip(names, results))
