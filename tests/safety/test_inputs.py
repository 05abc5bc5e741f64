"""Bad and careless inputs: each is refused (or warned about) with a message naming the value, nothing is written,
the input is unchanged, and no traceback reaches the user."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safety_kit import aru, directions_file, listing, refused, rewrite_tensor, tiny_llama, tree_sha


def _fit(model, bad, good, out, *extra):
    return aru("fit", model, "--bad", bad, "--good", good, "-o", out, *extra)


def _nothing_written(tmp_path, before):
    assert listing(tmp_path) == before


# ------------------------------------------------------------------------------------------------ devices, Hub


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_fit_device_cuda_without_cuda(organism_dir, prompt_files, tmp_path):
    r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors",
             "--device", "cuda")  # fmt: skip
    refused(r, "--device 'cuda'", "CUDA is not available", "--device cpu")
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_recipe_device_cuda_without_cuda(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\nid = "organism:tuned"\ndevice = "cuda"\n[prompts]\nsource = "organism"\n')
    r = aru("run", recipe, "-o", tmp_path / "out", "-q")
    refused(r, "'cuda'", "model.device", "CUDA is not available")
    assert listing(tmp_path) == ["r.toml"]


def test_unknown_device(organism_dir, prompt_files, tmp_path):
    r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors",
             "--device", "gpu0")  # fmt: skip
    refused(r, "--device 'gpu0'", "use cpu or cuda")


def test_edit_unreachable_hub(ckpt, tmp_path, monkeypatch):
    import huggingface_hub

    def unreachable(*a, **k):
        raise ConnectionError("Failed to establish a new connection: [Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    _, dirs = ckpt
    before = listing(tmp_path)
    r = aru("edit", "acme/tiny-chat", "-d", dirs, "-o", tmp_path / "out")
    refused(r, "'acme/tiny-chat'", "Connection refused", "check the id, your network")
    _nothing_written(tmp_path, before)


def test_fit_hub_offline(prompt_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = _fit("acme/never-downloaded", prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors")
    refused(r, "'acme/never-downloaded'", "cannot load model")
    assert listing(tmp_path) == []


def test_fit_missing_tokenizer_folder(organism_dir, prompt_files, tmp_path):
    """Issue 15 #8: a missing --tokenizer folder was reported as a bad repo id (failed before)."""
    r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors",
             "--tokenizer", "./no-such-tokenizer")  # fmt: skip
    refused(r, "--tokenizer './no-such-tokenizer'", "no such folder")
    assert "Repo id must use" not in r.output


# ------------------------------------------------------------------------------------------------ disks


def test_fit_onto_a_full_disk(organism_dir, prompt_files, tmp_path, monkeypatch):
    import errno

    import aru.directions

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".d.safetensors.tmp"))

    monkeypatch.setattr(aru.directions, "save_file", full, raising=False)
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors")
    refused(r, "No space left on device", str(tmp_path), "free some space")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------------------------------------ text files


@pytest.mark.parametrize("kind", ["prompt", "recipe"])
def test_non_utf8_files_are_named(organism_dir, prompt_files, tmp_path, kind):
    latin = tmp_path / ("bad.txt" if kind == "prompt" else "r.toml")
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    if kind == "prompt":
        r = _fit(organism_dir, latin, prompt_files / "good.txt", tmp_path / "d.safetensors")
    else:
        r = aru("run", latin, "--check")
    refused(r, str(latin), "is not UTF-8", "0xe9", "line 1")
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize(
    "content, needle",
    [(b"[]", "holds a JSON list"), (b"\xff\xfe{", "is not valid JSON"), (b'{"aru_provenance": 1}', "schema")],
)
def test_verify_with_a_malformed_aru_json(ckpt, tmp_path, content, needle):
    model, dirs = ckpt
    out = tmp_path / "out"
    assert aru("edit", model, "-d", dirs, "-o", out).exit_code == 0
    (out / "aru.json").write_bytes(content)
    r = aru("verify", out)
    refused(r, str(out / "aru.json"), needle)
    assert "this is a bug" not in r.output


# ------------------------------------------------------------------------------------------------ bad values


def test_edit_source_layer_not_a_number(ckpt, tmp_path):
    model, dirs = ckpt
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out", "--source-layer", "abc")
    refused(r, "--source-layer 'abc'", "residual index")
    assert "invalid literal" not in r.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["edit", "fit"])
def test_reversed_layer_range(ckpt, organism_dir, prompt_files, tmp_path, command):
    """Issue 15 #8: ``--layers 3-1`` was called "out of range" (failed before)."""
    model, dirs = ckpt
    if command == "edit":
        r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out", "--layers", "3-1")
    else:
        r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors",
                 "--layers", "3-1")  # fmt: skip
    refused(r, "'3-1' is reversed", "'1-3'")
    assert "out of range" not in r.output


@pytest.mark.parametrize("value", ["1.5", "0", "-0.2", "1"])
def test_fit_holdout_out_of_range(organism_dir, prompt_files, tmp_path, value):
    """Issue 15 #8: ``--holdout 1.5`` was reported as bad fractions (failed before)."""
    r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors",
             "--holdout", value)  # fmt: skip
    refused(r, "--holdout", value, code=2)
    assert "fractions" not in r.output


@pytest.mark.parametrize("command", ["gguf", "verify"])
def test_negative_tolerance(ckpt, tmp_path, command):
    model, dirs = ckpt
    out = tmp_path / "out"
    assert aru("edit", model, "-d", dirs, "-o", out).exit_code == 0
    args = ["gguf", out, "-o", tmp_path / "m.gguf"] if command == "gguf" else ["verify", out]
    refused(aru(*args, "--tol", "-1"), "--tol", "-1", code=2)
    assert not (tmp_path / "m.gguf").exists()


def test_edit_revision_on_a_local_folder(ckpt, tmp_path):
    """Issue 15 #7: ``--revision`` on a local folder was recorded as the base revision (failed before)."""
    model, dirs = ckpt
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out", "--revision", "v1.0")
    refused(r, "revision 'v1.0'", "local folder", "drop --revision")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fractions", ["[nan, 0.5, 0.5]", "[inf, 0.5, -inf]", "[0.5, 0.5, 0.0]", "[1.5, -0.25, -0.25]"])
def test_recipe_fractions(tmp_path, prompt_files, fractions):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[model]\nid = "organism:tuned"\n[prompts]\nbad = "{prompt_files / "bad.txt"}"\n'
        f'good = "{prompt_files / "good.txt"}"\nfractions = {fractions}\n'
    )
    refused(aru("run", recipe, "--check"), "prompts.fractions")


def test_run_check_with_a_missing_prompt_file(tmp_path):
    """Issue 15 #7: ``aru run --check`` called a recipe valid when its prompt file did not exist (failed before)."""
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\nid = "organism:tuned"\n[prompts]\nbad = "nope.txt"\ngood = "also-nope.txt"\n')
    r = aru("run", recipe, "--check")
    refused(r, "prompts.bad", str(tmp_path / "nope.txt"), "does not exist")


# ------------------------------------------------------------------------------------------------ directions vs model


def test_layer_99_basis_on_a_4_layer_model(ckpt, tmp_path):
    """Issue 15 #7: a basis for layer 99 was applied to a 4-layer model (failed before)."""
    model, _ = ckpt
    q = torch.nn.functional.normalize(torch.randn(1, 32), dim=-1)
    dirs = directions_file(tmp_path / "deep.safetensors", bases={99: q}, default_layer="99")
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    refused(r, "residual indices [99]", "4 decoder layers", "aru fit")
    assert not (tmp_path / "out").exists()


def test_directions_fitted_on_another_model_type(ckpt, tmp_path):
    """Issue 15 #7: directions fitted on another model_type were folded anyway (failed before)."""
    model, _ = ckpt
    dirs = directions_file(tmp_path / "qwen.safetensors", model_type="qwen2")
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    refused(r, "'qwen2'", "'llama'", "aru fit")
    assert not (tmp_path / "out").exists()


def test_fit_records_the_model_type(organism_dir, prompt_files, tmp_path):
    from aru.directions import load_directions

    r = _fit(organism_dir, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors",
             "--layers", "2")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert load_directions(tmp_path / "d.safetensors").metadata["model_type"] == "llama"


def test_one_prompt_per_class_warns_with_the_numbers(organism_dir, tmp_path):
    """Issue 15 #7: one prompt per class gave degenerate directions with exit 0 and no word (failed before)."""
    (tmp_path / "b.txt").write_text("How do I pick a lock?\n")
    (tmp_path / "g.txt").write_text("How do I bake bread?\n")
    r = _fit(organism_dir, tmp_path / "b.txt", tmp_path / "g.txt", tmp_path / "d.safetensors", "--layers", "2")
    assert r.exit_code == 0, r.output
    assert "aru: warning: only 1 X− (--bad) and 1 X+ (--good) prompts" in r.output and "degenerate" in r.output


def test_hidden_size_disagreement_blames_the_config(ckpt, tmp_path):
    """Issue 15 #8: a config whose hidden size disagrees with the tensors was blamed on the directions."""
    model, dirs = ckpt
    cfg = json.loads((model / "config.json").read_text())
    cfg["hidden_size"] = 64
    (model / "config.json").write_text(json.dumps(cfg))
    before = tree_sha(model)
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    refused(r, "config.json says hidden size 64", "width 32")
    assert "fit them on this model" not in r.output and tree_sha(model) == before


def test_hidden_size_disagreement_blames_the_directions(ckpt, tmp_path):
    model, _ = ckpt
    dirs = directions_file(tmp_path / "wide.safetensors", d=48)
    refused(aru("edit", model, "-d", dirs, "-o", tmp_path / "out"), "dimension 48", "hidden size 32", "aru fit")


@pytest.mark.parametrize(
    "value, shown", [('"abc"', "hidden_size = 'abc'"), ("null", "hidden size"), ("-4", "hidden_size = -4"),
                     ("[32]", "hidden_size = [32]"), ("true", "hidden_size = True")],
)  # fmt: skip
def test_hidden_size_not_a_number(ckpt, tmp_path, value, shown):
    """Issue 15 #6: ``hidden_size: "abc"`` gave a bare ``invalid literal for int()``."""
    model, dirs = ckpt
    cfg = (model / "config.json").read_text()
    assert '"hidden_size": 32' in cfg
    (model / "config.json").write_text(cfg.replace('"hidden_size": 32', f'"hidden_size": {value}'))
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    refused(r, str(model / "config.json"), shown)
    assert "invalid literal" not in r.output


def test_fit_hidden_size_not_a_number(organism_dir, prompt_files, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(organism_dir, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["hidden_size"] = "abc"
    (model / "config.json").write_text(json.dumps(cfg))
    r = _fit(model, prompt_files / "bad.txt", prompt_files / "good.txt", tmp_path / "d.safetensors")
    refused(r, str(model / "config.json"), "hidden_size = 'abc'", "positive whole number")
    assert "this is a bug" not in r.output and not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize(
    "name, writer",
    [("model.layers.1.self_attn.o_proj.weight", True), ("model.layers.1.input_layernorm.weight", False),
     ("model.layers.0.self_attn.q_proj.weight", False)],
)  # fmt: skip
def test_nan_already_in_the_input(ckpt, tmp_path, name, writer):
    """Issue 15 #7/#8: a NaN in a non-writer was copied silently; one in a writer was blamed on the fold."""
    model, dirs = ckpt

    def poison(t):
        t = t.clone()
        t.view(-1)[3] = float("nan")
        return t

    rewrite_tensor(model / "model.safetensors", name, poison)
    before = tree_sha(model)
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    refused(r, name, "already holds", "the input checkpoint is corrupt")
    assert "folding into" not in r.output and tree_sha(model) == before
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".aru-" in p.name]


# ------------------------------------------------------------------------------------------------ corrupt checkpoints


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:-100]), "truncated"),
        (lambda m: (m / "model.safetensors").write_bytes(b"\x00" * 4), "model.safetensors"),
        (lambda m: (m / "config.json").write_text("{"), "config.json"),
        (lambda m: (m / "config.json").unlink(), "no config.json"),
        (lambda m: (m / "model.safetensors").unlink(), "has no model.safetensors"),
        (
            lambda m: (m / "config.json").write_text(
                json.dumps({"model_type": "bloom", "hidden_size": 32, "n_layer": 2})
            ),
            "'bloom'",
        ),
    ],
)
def test_corrupt_checkpoints(ckpt, tmp_path, damage, needle):
    model, dirs = ckpt
    damage(model)
    before = tree_sha(model)
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    refused(r, needle)
    assert tree_sha(model) == before and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".aru-" in p.name]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p.write_bytes(b"not a safetensors file"), "dirs.safetensors"),
        (lambda p: directions_file(p, bases={"all": torch.full((1, 32), float("nan"))}), "dirs.safetensors"),
        (lambda p: directions_file(p, bases={"all": torch.ones(2, 32)}), "dirs.safetensors"),
        (lambda p: p.unlink(), "dirs.safetensors"),
    ],
)
def test_bad_directions(ckpt, tmp_path, make, needle):
    model, dirs = ckpt
    try:
        make(dirs)
    except Exception:  # the writer itself may refuse: then write the bytes a careless tool would
        dirs.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    before = tree_sha(model)
    r = aru("edit", model, "-d", dirs, "-o", tmp_path / "out")
    assert r.exit_code in (1, 2) and needle in r.output, r.output
    assert tree_sha(model) == before and not (tmp_path / "out").exists()


def test_bad_prompt_files(organism_dir, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "g.txt").write_text("hello\n" * 10)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{not json\n')
    (tmp_path / "bad.xlsx").write_text("x")
    for bad, needle in [("empty.txt", "contains no prompts"), ("bad.jsonl", "bad.jsonl"), ("bad.xlsx", ".xlsx"),
                        ("missing.txt", "missing.txt")]:  # fmt: skip
        r = _fit(organism_dir, tmp_path / bad, tmp_path / "g.txt", tmp_path / "d.safetensors")
        assert r.exit_code in (1, 2) and needle in r.output, (bad, r.output)
    assert not (tmp_path / "d.safetensors").exists()


def test_tiny_llama_is_untouched_by_a_refused_edit_of_a_copy(tmp_path):
    """A copy made with symlinks to the original's shards is an input like the original: never written."""
    tiny_llama(tmp_path / "orig")
    (tmp_path / "linked").mkdir()
    for p in (tmp_path / "orig").iterdir():
        (tmp_path / "linked" / p.name).symlink_to(p)
    dirs = directions_file(tmp_path / "d.safetensors")
    before = tree_sha(tmp_path / "orig")
    r = aru("edit", tmp_path / "linked", "-d", dirs, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert tree_sha(tmp_path / "orig") == before
    shutil.rmtree(tmp_path / "out")
