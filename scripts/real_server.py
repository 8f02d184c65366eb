#!/usr/bin/env python
"""Build llama.cpp's ``llama-server`` and a tiny deterministic model, for the real-server tests.

The tests of the ``openai`` provider and of ``assay capacity`` run against a real
OpenAI-compatible server as well as Assay's fake one. This script makes that server on the
machine, offline except for the package index:

1. ``pip download`` the ``llama-cpp-python`` sdist of the pinned version: it carries the whole
   llama.cpp source tree (``vendor/llama.cpp``), its ``gguf-py`` package and vocabulary-only
   GGUF files of real tokenizers;
2. build only the CMake target ``llama-server`` (CPU, no web UI, no TLS, no downloads);
3. write a tiny Llama-architecture model with random weights from a fixed seed and a real
   tokenizer, whose end-of-generation and invalid-UTF-8 tokens can never win, so every answer
   runs to ``max_tokens`` and token counts are deterministic.

Everything lives in a cache folder outside the repository (``~/.cache/assay/real-server/<version>``,
or ``$ASSAY_REAL_SERVER_CACHE``); a stamp file makes a second run a no-op. Run it directly
(``python scripts/real_server.py``) or call :func:`ensure` from Python.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

PINNED_VERSION = "0.3.36"
PACKAGE = "llama-cpp-python"
# The llama.cpp commit vendored by the pinned sdist; the server reports it as system_fingerprint.
LLAMA_CPP_COMMIT = "0c1e570"
# Bumped when the model recipe or build flags change, so a stale cache is rebuilt.
RECIPE = 1
SEED = 20261205
# Phi-3's tokenizer: a real SentencePiece vocabulary of 32,064 tokens with a chat template; the
# output layer over the vocabulary is most of each token's cost, so a small one keeps it fast
VOCAB = "phi-3"
MODEL_NAME = "assay-tiny-llama"
# Model shape: small enough to run hundreds of tokens a second on 2 CPU cores.
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 32768
BUILD_JOBS = int(os.environ.get("ASSAY_REAL_SERVER_JOBS", "2"))

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DGGML_NATIVE=ON",
    "-DGGML_CCACHE=OFF",
    # the sdist has no git history: name the build as llama.cpp's own releases do, so the server
    # reports system_fingerprint "b1-<commit>" rather than "b0-unknown"
    "-DLLAMA_BUILD_NUMBER=1",
    f"-DLLAMA_BUILD_COMMIT={LLAMA_CPP_COMMIT}",
]


class BuildError(RuntimeError):
    """A step of the build failed; the message names the step and what to look at."""


@dataclasses.dataclass(frozen=True)
class RealServerBuild:
    """Where the built server and model are."""

    binary: Path
    model: Path
    version: str
    llama_cpp_commit: str
    cache: Path


def cache_dir() -> Path:
    """The cache folder of the pinned version (``$ASSAY_REAL_SERVER_CACHE`` overrides the root)."""
    root = os.environ.get("ASSAY_REAL_SERVER_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "assay" / "real-server"
    return base / PINNED_VERSION


def _stamp_content() -> dict:
    return {
        "version": PINNED_VERSION,
        "commit": LLAMA_CPP_COMMIT,
        "recipe": RECIPE,
        "seed": SEED,
        "vocab": VOCAB,
        "cmake": CMAKE_FLAGS,
    }


def _paths(cache: Path) -> RealServerBuild:
    return RealServerBuild(
        binary=cache / "build" / "bin" / "llama-server",
        model=cache / "model" / f"tiny-llama-{VOCAB}-s{SEED}.gguf",
        version=PINNED_VERSION,
        llama_cpp_commit=LLAMA_CPP_COMMIT,
        cache=cache,
    )


def is_built(cache: Path | None = None) -> bool:
    """True when the binary and model of the pinned version and recipe are in place."""
    cache = cache or cache_dir()
    paths = _paths(cache)
    stamp = cache / "stamp.json"
    if not (stamp.is_file() and paths.binary.is_file() and paths.model.is_file()):
        return False
    try:
        return json.loads(stamp.read_text()) == _stamp_content()
    except (OSError, ValueError):
        return False


def _say(msg: str) -> None:
    print(f"real-server: {msg}", flush=True)


class _Step:
    """Prints one line per step with its duration; a failure names the step."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb):
        dt = time.monotonic() - self.t0
        if exc_type is None:
            _say(f"{self.name}: done in {dt:.1f}s")
        else:
            _say(f"{self.name}: FAILED after {dt:.1f}s")
        return False


def _run(cmd: list[str], step: str, log: Path, cwd: Path | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\nfull log: {log}\n--- last lines ---\n{tail}")


def _download(cache: Path) -> Path:
    dl = cache / "download"
    dl.mkdir(parents=True, exist_ok=True)
    name = f"{PACKAGE.replace('-', '_')}-{PINNED_VERSION}.tar.gz"
    sdist = dl / name
    if sdist.is_file():
        return sdist
    if not _has_pip():
        raise BuildError(f"pip is needed to download the {PACKAGE} sdist ({sys.executable} -m pip does not run)")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{PACKAGE}=={PINNED_VERSION}",
            "-d",
            str(dl),
        ],
        "download of the llama-cpp-python sdist from the package index",
        cache / "logs" / "download.log",
    )
    if not sdist.is_file():
        found = sorted(p.name for p in dl.iterdir())
        raise BuildError(f"pip download did not produce {name} in {dl} (found: {found})")
    return sdist


def _has_pip() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0


def _extract(sdist: Path, cache: Path) -> Path:
    src = cache / "src"
    marker = src / ".extracted"
    if marker.is_file():
        return src
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    prefix = f"{PACKAGE.replace('-', '_')}-{PINNED_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix) or m.name == prefix:
                continue
            m.name = m.name[len(prefix) :]
            members.append(m)
        if not members:
            raise BuildError(f"{sdist} holds no vendor/llama.cpp tree")
        tar.extractall(src, members=members, filter="data")
    marker.write_text(PINNED_VERSION)
    return src


def _build(src: Path, cache: Path) -> Path:
    build = cache / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} is needed to build llama-server (apt-get install cmake g++)")
    with _Step("cmake configure"):
        _run(
            ["cmake", "-S", str(src), "-B", str(build), *generator, *CMAKE_FLAGS],
            "cmake configure",
            cache / "logs" / "configure.log",
        )
    with _Step(f"build llama-server (-j{BUILD_JOBS})"):
        _run(
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(BUILD_JOBS)],
            "build of llama-server",
            cache / "logs" / "build.log",
        )
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise BuildError(f"the build finished but {binary} is missing; see {cache / 'logs' / 'build.log'}")
    _build_stamp(cache).write_text(json.dumps(CMAKE_FLAGS))
    return binary


def _build_stamp(cache: Path) -> Path:
    return cache / "build" / "assay-build-flags.json"


def _built_with_these_flags(cache: Path) -> bool:
    try:
        return json.loads(_build_stamp(cache).read_text()) == CMAKE_FLAGS
    except (OSError, ValueError):
        return False


def write_model(src: Path, out: Path) -> Path:
    """Write the tiny model: random weights from SEED, the tokenizer of VOCAB's vocab-only file.

    Tokens that would end an answer early or cut a character in two (end-of-generation, control,
    byte pieces, invalid UTF-8) get a logit far below every other token's, whatever the input:
    every token embedding carries a large constant in hidden dimension 0, which the blocks do not
    read (their norms weigh it 0) and which therefore dominates that dimension after the final
    norm; the banned tokens' output rows weigh it strongly negative, the others not at all. So
    every answer runs to ``max_tokens`` and token counts are exact."""
    import numpy as np

    sys.path.insert(0, str(src / "gguf-py"))
    try:
        import gguf
    finally:
        sys.path.pop(0)

    vocab_file = src / "models" / f"ggml-vocab-{VOCAB}.gguf"
    if not vocab_file.is_file():
        raise BuildError(f"vocabulary file {vocab_file} is missing from the sdist")
    reader = gguf.GGUFReader(str(vocab_file))

    tmp = out.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(MODEL_NAME)
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens: list[str] = []
    token_types: list[int] = []
    eog_ids: set[int] = set()
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        value = field.contents()
        if field.name == "tokenizer.ggml.tokens":
            tokens = list(value)
        elif field.name == "tokenizer.ggml.token_type":
            token_types = [int(v) for v in value]
        elif field.name in (
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
            "tokenizer.ggml.padding_token_id",
        ):
            eog_ids.add(int(value))
        sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, field.types[0], sub_type=sub)
    if not tokens:
        raise BuildError(f"{vocab_file} has no tokenizer.ggml.tokens")
    n_vocab = len(tokens)
    banned = sorted(_banned_tokens(tokens, token_types, eog_ids))

    rng = np.random.default_rng(SEED)

    def rand(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embd = rand(n_vocab, N_EMBD, scale=1.0)
    embd[:, 0] = 20.0  # the constant the final norm turns into a fixed positive input of the output layer
    block_norm = np.ones(N_EMBD, dtype=np.float32)
    block_norm[0] = 0.0  # the blocks do not read it (it would make every input look alike)
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    head_dim = N_EMBD // N_HEAD
    for i in range(N_LAYER):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", block_norm)
        writer.add_tensor(p + "attn_q.weight", rand(N_HEAD * head_dim, N_EMBD, scale=0.5))
        writer.add_tensor(p + "attn_k.weight", rand(N_HEAD_KV * head_dim, N_EMBD, scale=0.5))
        writer.add_tensor(p + "attn_v.weight", rand(N_HEAD_KV * head_dim, N_EMBD, scale=0.5))
        attn_out = rand(N_EMBD, N_HEAD * head_dim, scale=0.1)
        attn_out[0] = 0.0  # nor do they write to it
        writer.add_tensor(p + "attn_output.weight", attn_out)
        writer.add_tensor(p + "ffn_norm.weight", block_norm)
        writer.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD, scale=0.5))
        writer.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD, scale=0.5))
        down = rand(N_EMBD, N_FF, scale=0.1)
        down[0] = 0.0
        writer.add_tensor(p + "ffn_down.weight", down)
    output = rand(n_vocab, N_EMBD, scale=1.0)
    output[:, 0] = 0.0
    output[banned, 0] = -50.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out


def _banned_tokens(tokens: list[str], token_types: list[int], eog_ids: set[int]) -> set[int]:
    """Tokens that must never be generated: end-of-generation, control and invalid-UTF-8 pieces."""
    banned = set(eog_ids)
    for i, piece in enumerate(tokens):
        ttype = token_types[i] if i < len(token_types) else 1
        # 1 = normal; 3 = control, 4 = user-defined (tag-like pieces the server may treat as
        # EOG), 6 = byte: none of them belongs in a deterministic answer.
        if ttype != 1:
            banned.add(i)
            continue
        if piece.startswith("<") and piece.endswith(">") and len(piece) > 2:
            banned.add(i)
            continue
        if not _valid_piece(piece):
            banned.add(i)
    return banned


# GPT-2 style byte-level BPE maps each byte to a printable unicode character.
def _byte_decoder() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_DECODER = _byte_decoder()


def _valid_piece(piece: str) -> bool:
    try:
        raw = bytes(_BYTE_DECODER[ch] for ch in piece)
    except KeyError:
        return True  # not a byte-level piece (e.g. sentencepiece): valid text as it stands
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def ensure(verbose: bool = True) -> RealServerBuild:
    """Build the server and model of the pinned version unless they are already in place."""
    cache = cache_dir()
    paths = _paths(cache)
    if is_built(cache):
        if verbose:
            _say(f"llama-server {PINNED_VERSION} (llama.cpp {LLAMA_CPP_COMMIT}) and model in place: {cache}")
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache folder: concurrent test processes wait for the first.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(cache):
            return paths
        t0 = time.monotonic()
        _say(f"building llama-server {PINNED_VERSION} (llama.cpp {LLAMA_CPP_COMMIT}) in {cache}")
        (cache / "stamp.json").unlink(missing_ok=True)
        with _Step(f"download {PACKAGE}=={PINNED_VERSION} sdist"):
            sdist = _download(cache)
        with _Step("extract vendor/llama.cpp"):
            src = _extract(sdist, cache)
        if not (paths.binary.is_file() and _built_with_these_flags(cache)):
            _build(src, cache)
        with _Step(f"write tiny model ({VOCAB} vocabulary, seed {SEED})"):
            paths.model.parent.mkdir(parents=True, exist_ok=True)
            write_model(src, paths.model)
        (cache / "stamp.json").write_text(json.dumps(_stamp_content(), indent=1))
        _say(f"ready in {time.monotonic() - t0:.1f}s: {paths.binary} {paths.model}")
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: build if needed, print where the server and model are."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print-paths", action="store_true", help="print binary and model paths as JSON")
    args = ap.parse_args(argv)
    try:
        built = ensure()
    except BuildError as exc:
        print(f"real-server: ERROR: {exc}", file=sys.stderr)
        return 1
    if args.print_paths:
        print(
            json.dumps(
                {
                    "binary": str(built.binary),
                    "model": str(built.model),
                    "version": built.version,
                    "llama_cpp_commit": built.llama_cpp_commit,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
