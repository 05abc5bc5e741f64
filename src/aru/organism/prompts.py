"""The shipped organism's folders and its prompt files (X− forbidden, X+ allowed questions) for ``aru fit``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from aru.organism.world import SPLITS, World

DATA = Path(__file__).parent / "data"
STAGES = ("base", "tuned")


def shipped(which: str = "tuned") -> Path:
    """The folder of the shipped ``"base"`` (pretrained) or ``"tuned"`` (safety-fine-tuned) organism, loadable
    with ``AutoModelForCausalLM`` / ``AutoTokenizer``."""
    if which not in STAGES:
        raise ValueError(f"which={which!r}: the shipped organisms are {STAGES}")
    folder = DATA / which
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the shipped organism {str(folder)!r} is missing (broken install?); reinstall aru or retrain it with: "
            "aru organism train -o DIR"
        )
    return folder


def organism_prompts(split: str, world: World | None = None) -> tuple[list[str], list[str]]:
    """(X−, X+): forbidden-topic and allowed-topic user messages (no chat template applied) for ``split``.

    ``"train"``: fine-tune entities with the fine-tune question templates; ``"val"`` and ``"test"``: entities held
    out of the fine-tune (disjoint halves) with every template, including the one never used in the fine-tune.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; choose one of {SPLITS}")
    world = world or World(0)
    bad = [f.question(t) for f, t in world.questions(split, True)]
    good = [f.question(t) for f, t in world.questions(split, False)]
    return bad, good


def write_prompt_files(out_dir: str | Path, world: World | None = None) -> dict[str, Path]:
    """Write ``bad_{train,val,test}.txt`` and ``good_{train,val,test}.txt`` (one prompt per line) into ``out_dir``
    (all-or-nothing); returns {file stem: path}."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{str(out_dir)!r} exists and is not a folder; choose another output folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{kind}_{split}" for split in SPLITS for kind in ("bad", "good")]
    existing = [n for n in names if (out_dir / f"{n}.txt").exists()]
    if existing:
        raise FileExistsError(f"{str(out_dir / existing[0])}.txt already exists; choose another output folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for split in SPLITS:
            bad, good = organism_prompts(split, world)
            (tmp / f"bad_{split}.txt").write_text("\n".join(bad) + "\n")
            (tmp / f"good_{split}.txt").write_text("\n".join(good) + "\n")
        out_dir.mkdir(exist_ok=True)
        out = {}
        for n in names:
            (tmp / f"{n}.txt").replace(out_dir / f"{n}.txt")
            out[n] = out_dir / f"{n}.txt"
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
