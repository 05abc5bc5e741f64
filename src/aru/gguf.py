"""Convert an edited checkpoint to GGUF with llama.cpp's own converter, and compare llama.cpp with transformers.

The converter (``convert_hf_to_gguf.py`` with its ``conversion/`` package and its own ``gguf-py``) is taken from the
llama-cpp-python sdist and extracted into a cache outside the repository; aru never vendors llama.cpp code.
Running the GGUF needs the optional extra ``aru[gguf]`` (``llama-cpp-python``).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aru.errors import AruError, CheckpointError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
ENV_DIR = "ARU_LLAMA_CPP_DIR"
_SDIST_PREFIX = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
# What the converter needs beside itself: its model-class package, its own gguf-py (the PyPI ``gguf`` is too old).
_NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
INSTALL_HINT = (
    f"pip download --no-deps --no-binary :all: llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} -d /tmp/sdist, "
    f"or let aru fetch it: python -c 'import aru.gguf; aru.gguf.ensure_converter()' "
    f"(or point {ENV_DIR} at a llama.cpp checkout)"
)

DEFAULT_PROMPTS = (
    "what is the city of kraibroux ?",
    "what is the weapon of zelitu ?",
    "name the food that kraibroux has .",
    "hello , who are you ?",
)


class GgufError(AruError, RuntimeError):
    """The llama.cpp converter is missing or failed, or a GGUF file cannot be loaded."""


def converter_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds (or will hold) ``convert_hf_to_gguf.py``: ``cache_dir``, else ``$ARU_LLAMA_CPP_DIR``,
    else ``~/.cache/aru/llama.cpp/<version>/``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    return Path.home() / ".cache" / "aru" / "llama.cpp" / LLAMA_CPP_PYTHON_VERSION


def _is_complete(folder: Path) -> bool:
    return (
        (folder / "convert_hf_to_gguf.py").is_file()
        and (folder / "conversion" / "__init__.py").is_file()
        and (folder / "gguf-py" / "gguf" / "__init__.py").is_file()
    )


def ensure_converter(*, cache_dir: str | os.PathLike | None = None, install: bool = True) -> Path:
    """Return the path of llama.cpp's ``convert_hf_to_gguf.py``, fetching the llama-cpp-python sdist if needed.

    Only ``convert_hf_to_gguf.py``, ``conversion/``, ``gguf-py/`` and ``LICENSE`` are extracted, into a temporary
    folder beside the cache that is renamed into place once complete.
    """
    folder = converter_dir(cache_dir)
    if _is_complete(folder):
        return folder / "convert_hf_to_gguf.py"
    if not install:
        raise GgufError(
            f"llama.cpp's converter is not in {folder} (need convert_hf_to_gguf.py, conversion/, gguf-py/). "
            f"Get it with: {INSTALL_HINT}"
        )
    if folder.exists() and any(folder.iterdir()):
        raise GgufError(
            f"{folder} exists but does not hold a complete llama.cpp converter; remove it or set {ENV_DIR} elsewhere"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.tmp-") as tmp:
        tmp_path = Path(tmp)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += [f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(tmp_path / "sdist")]
        print(f"aru: fetching llama.cpp's converter ({' '.join(cmd[1:])})", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = sorted((tmp_path / "sdist").glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise GgufError(
                f"could not download the llama-cpp-python sdist:\n{_tail(proc.stderr)}\nTry: {INSTALL_HINT}"
            )
        extracted = tmp_path / "llama.cpp"
        _extract_converter(sdists[0], extracted)
        if not _is_complete(extracted):
            raise GgufError(f"{sdists[0].name} does not contain llama.cpp's converter under {_SDIST_PREFIX}")
        if folder.exists():
            folder.rmdir()  # empty, checked above
        extracted.rename(folder)
    return folder / "convert_hf_to_gguf.py"


def _extract_converter(sdist: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.name.startswith(_SDIST_PREFIX) or not (member.isfile() or member.isdir()):
                continue
            rel = member.name[len(_SDIST_PREFIX) :]
            if not any(rel == n or (n.endswith("/") and rel.startswith(n)) for n in _NEEDED):
                continue
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise GgufError(f"unsafe path in {sdist.name}: {member.name}")
            target = dest / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _tail(text: str, n: int = 25) -> str:
    return "\n".join((text or "").strip().splitlines()[-n:])


def convert(
    edited: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    outtype: str = "f32",
    cache_dir: str | os.PathLike | None = None,
    install: bool = True,
    overwrite: bool = False,
) -> Path:
    """Convert the Hugging Face checkpoint folder ``edited`` to ``out_file`` (GGUF) with llama.cpp's converter.

    The converter runs in a subprocess (``PYTHONPATH`` to its own gguf-py) writing a temporary file beside
    ``out_file``, renamed into place only on success; on failure nothing is left and the error carries the
    converter's stderr tail.
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype {outtype!r} is not supported; use one of {', '.join(OUTTYPES)}")
    edited = Path(edited)
    if not (edited / "config.json").is_file():
        raise CheckpointError(f"{edited} is not a Hugging Face checkpoint folder (no config.json)")
    out_file = Path(out_file)
    if out_file.suffix != ".gguf":
        raise ValueError(f"output file {out_file} should end in .gguf, e.g. {out_file.with_suffix('.gguf')}")
    if out_file.exists() and not overwrite:
        raise FileExistsError(f"{out_file} exists; remove it or choose another output file")
    if out_file.is_dir():
        raise FileExistsError(f"{out_file} is a folder; give a file name ending in .gguf")
    converter = ensure_converter(cache_dir=cache_dir, install=install)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_file.parent, prefix=f".{out_file.stem}.", suffix=".gguf.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    env = dict(os.environ)
    gguf_py = str(converter.parent / "gguf-py")
    env["PYTHONPATH"] = gguf_py + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, str(converter), str(edited), "--outfile", str(tmp), "--outtype", outtype]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or tmp.stat().st_size == 0:
            raise GgufError(
                f"llama.cpp's converter failed on {edited} (exit {proc.returncode}):\n{_tail(proc.stderr)}\n"
                f"Command: {' '.join(cmd)}"
            )
        os.replace(tmp, out_file)
    finally:
        tmp.unlink(missing_ok=True)
    return out_file


@dataclass
class GgufComparison:
    """llama.cpp (GGUF) against transformers (HF folder) on the same token ids."""

    gguf_file: str
    hf_folder: str
    tol: float
    max_abs_dlogit: float  # max |logit_llama - logit_hf| over prompts, positions and vocabulary
    logit_scale: float  # max |logit_hf| over the same
    rel_dlogit: float  # max_abs_dlogit / logit_scale
    greedy_agreement: float  # fraction of prompts whose greedy generations are the same token ids
    token_ids_agree: bool  # prompts and random strings tokenize identically
    n_prompts: int
    n_random: int
    n_tokenization_mismatches: int
    tokenization_mismatches: list[dict] = field(default_factory=list)  # first few, for the report
    generations: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.token_ids_agree and self.rel_dlogit <= self.tol and self.greedy_agreement == 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def random_strings(n: int, vocab_words: list[str] | None = None, *, seed: int = 0) -> list[str]:
    """``n`` reproducible strings mixing vocabulary words, ASCII, whitespace, punctuation, accents, CJK and emoji."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?!'\"-:;()\t\néüßñ漢字テスト😀🚀"
    words = [w for w in (vocab_words or []) if w.isprintable() and w.strip()]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            if words and rng.random() < 0.5:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))))
        out.append(rng.choice(["", " "]).join(parts) if rng.random() < 0.3 else " ".join(parts))
    return out


def _load_llama(gguf_file: Path, n_ctx: int):
    try:
        import llama_cpp
    except ImportError as exc:
        raise GgufError(
            f"comparing a GGUF needs llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}: pip install 'aru[gguf]' "
            f"(or pip install llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}; it compiles llama.cpp, minutes)"
        ) from exc
    if not gguf_file.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_file} does not exist; create it with: aru gguf EDITED -o {gguf_file}")
    # f32 KV cache (type 0 = GGML_TYPE_F32) for an exact comparison; logits at every position.
    return llama_cpp.Llama(
        model_path=str(gguf_file),
        n_ctx=n_ctx,
        logits_all=True,
        type_k=0,
        type_v=0,
        n_threads=max(1, min(4, os.cpu_count() or 1)),
        verbose=False,
    )


def _render(tokenizer, prompt: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    return prompt


def compare_gguf(
    hf_folder: str | os.PathLike,
    gguf_file: str | os.PathLike,
    *,
    prompts: list[str] | None = None,
    max_new_tokens: int = 16,
    tol: float = 1e-4,
    n_random: int = 300,
    seed: int = 0,
    n_ctx: int = 512,
) -> GgufComparison:
    """Compare llama.cpp running ``gguf_file`` with transformers running ``hf_folder``.

    Each prompt is rendered with the tokenizer's chat template (when it has one); both stacks tokenize it (chat
    markers parsed as special tokens) and the transformers ids are fed to both, so logits are compared at every
    position on identical inputs. Greedy generations are compared as token ids. Tokenization is also compared on
    ``n_random`` reproducible random strings. ``passed`` needs identical token ids, ``rel_dlogit <= tol`` and
    every greedy generation equal.
    """
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if tol < 0 or math.isnan(tol):
        raise ValueError(f"tol must be >= 0, got {tol}")
    hf_folder, gguf_file = Path(hf_folder), Path(gguf_file)
    llm = _load_llama(gguf_file, n_ctx)
    tokenizer = AutoTokenizer.from_pretrained(hf_folder)
    model = AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32).eval()
    prompts = list(DEFAULT_PROMPTS if prompts is None else prompts)
    if not prompts:
        raise ValueError("prompts is empty; give at least one prompt")

    mismatches: list[dict] = []

    def check_tokens(text: str, special: bool) -> list[int]:
        hf_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ll_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        if list(hf_ids) != list(ll_ids):
            mismatches.append({"text": text, "transformers": list(hf_ids), "llama_cpp": list(ll_ids)})
        return list(hf_ids)

    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos.add(llm.token_eos())
    max_abs, scale, agree, generations = 0.0, 0.0, 0, []
    for prompt in prompts:
        ids = check_tokens(_render(tokenizer, prompt), special=True)
        if len(ids) + max_new_tokens > n_ctx:
            raise ValueError(f"prompt of {len(ids)} tokens plus {max_new_tokens} new ones exceeds n_ctx={n_ctx}")
        llm.reset()
        llm.eval(ids)
        ll_logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        with torch.no_grad():
            hf_logits = model(torch.tensor([ids])).logits[0].double().numpy()
        max_abs = max(max_abs, float(np.abs(ll_logits - hf_logits).max()))
        scale = max(scale, float(np.abs(hf_logits).max()))
        hf_gen = _greedy_hf(model, ids, max_new_tokens, eos)
        ll_gen = _greedy_llama(llm, ids, max_new_tokens, eos)
        agree += hf_gen == ll_gen
        generations.append(
            {
                "prompt": prompt,
                "transformers": tokenizer.decode(hf_gen, skip_special_tokens=True),
                "llama_cpp": tokenizer.decode(ll_gen, skip_special_tokens=True),
                "same_ids": hf_gen == ll_gen,
            }
        )
    # Vocabulary words as plain text: special tokens (<s>, <|user|>) and byte pieces (<0x41>) are left out, since
    # transformers parses special-token text even with add_special_tokens=False, llama.cpp (special=False) does not.
    special = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    words = [w.replace("\u2581", " ").strip() for w in tokenizer.get_vocab() if w not in special]
    words = [w for w in words if not (w.startswith("<") and w.endswith(">"))]
    for text in random_strings(n_random, words, seed=seed):
        check_tokens(text, special=False)
    return GgufComparison(
        gguf_file=str(gguf_file),
        hf_folder=str(hf_folder),
        tol=tol,
        max_abs_dlogit=max_abs,
        logit_scale=scale,
        rel_dlogit=max_abs / scale if scale > 0 else math.inf,
        greedy_agreement=agree / len(prompts),
        token_ids_agree=not mismatches,
        n_prompts=len(prompts),
        n_random=n_random,
        n_tokenization_mismatches=len(mismatches),
        tokenization_mismatches=mismatches[:5],
        generations=generations,
    )


def _greedy_hf(model, ids: list[int], max_new_tokens: int, eos: set[int]) -> list[int]:
    from aru.evaluate import greedy_ids

    return greedy_ids(model, [ids], max_new_tokens=max_new_tokens, pad=0, eos=eos, batch_size=1)[0]


def _greedy_llama(llm, ids: list[int], max_new_tokens: int, eos: set[int]) -> list[int]:
    import numpy as np

    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(max_new_tokens):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        if nxt in eos:
            break
        llm.eval([nxt])
    return out
