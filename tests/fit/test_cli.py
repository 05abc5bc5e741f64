import json

import pytest
import torch
from click.testing import CliRunner

from aru.cli import main
from aru.directions import load_directions


@pytest.fixture(scope="module")
def files(tmp_path_factory, organism_sets):
    d = tmp_path_factory.mktemp("prompts")
    for split in ("train", "val"):
        bad, good = organism_sets[split]
        n = 200 if split == "train" else 80
        (d / f"bad_{split}.txt").write_text("\n".join(bad[::7][:n]) + "\n")
        (d / f"good_{split}.txt").write_text("\n".join(good[::7][:n]) + "\n")
    (d / "empty.txt").write_text("\n")
    return d


@pytest.fixture(scope="module")
def model_dir():
    from aru.organism import shipped

    return str(shipped("tuned"))


def _run(*args):
    return CliRunner().invoke(main, ["fit", *map(str, args)])


def test_fit_table_and_file(files, model_dir, tmp_path):
    out = tmp_path / "d.safetensors"
    r = _run(
        model_dir,
        "--bad",
        files / "bad_train.txt",
        "--good",
        files / "good_train.txt",
        "--val-bad",
        files / "bad_val.txt",
        "--val-good",
        files / "good_val.txt",
        "-o",
        out,
        "--k",
        2,
    )
    assert r.exit_code == 0, r.output
    assert "AUROC" in r.stdout and "cos(dm)" in r.stdout and "default layer" in r.stdout
    d = load_directions(out)
    assert d.layers == [1, 2, 3, 4] and d.basis(4).shape == (2, 64)
    assert d.metadata["method"] == "pca-omega" and d.metadata["heldout"] == "val"
    assert d.metadata["base_model"] == model_dir
    assert int(d.metadata["default_layer"]) in d.layers
    assert float(d.extras["auroc.layer.4"][0]) > 0.9


def test_fit_json(files, model_dir, tmp_path):
    out = tmp_path / "d.safetensors"
    r = _run(
        model_dir,
        "--bad",
        files / "bad_train.txt",
        "--good",
        files / "good_train.txt",
        "-o",
        out,
        "--method",
        "diff-means",
        "--layers",
        "3-4",
        "--json",
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert [row["layer"] for row in res["layers"]] == [3, 4]
    assert res["metadata"]["heldout"] == "holdout" and res["default_layer"] in (3, 4)
    q = load_directions(out).basis(res["default_layer"])
    assert torch.allclose(q.norm(dim=1), torch.ones(1), atol=1e-6)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "lda"], "unknown method 'lda'"),
        (["--layers", "9"], "layer 9 is out of range"),
        (["--layers", "x"], "layers='x'"),
        (["--method", "diff-means", "--pca", "centred"], "--pca apply only to --method pca-omega"),
        (["--position", "middle"], "mean:N"),
    ],
)
def test_bad_options_are_clear(files, model_dir, tmp_path, extra, message):
    out = tmp_path / "d.safetensors"
    r = _run(model_dir, "--bad", files / "bad_train.txt", "--good", files / "good_train.txt", "-o", out, *extra)
    assert r.exit_code != 0 and message in r.output, r.output
    assert "Traceback" not in r.output and not out.exists()


def test_empty_prompt_file(files, model_dir, tmp_path):
    out = tmp_path / "d.safetensors"
    r = _run(model_dir, "--bad", files / "empty.txt", "--good", files / "good_train.txt", "-o", out)
    assert r.exit_code == 1 and "contains no prompts" in r.output and not out.exists()


def test_tokenizer_mismatch(files, tmp_path, model_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    small = tmp_path / "small"
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, vocab_size=100)
    LlamaForCausalLM(cfg).save_pretrained(small)
    out = tmp_path / "d.safetensors"
    r = _run(
        small, "--tokenizer", model_dir, "--bad", files / "bad_val.txt", "--good", files / "good_val.txt", "-o", out
    )
    assert r.exit_code == 1 and "does not match the model" in r.output and not out.exists()


def test_missing_model_folder(files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "d.safetensors"
    r = _run(tmp_path / "no-such-model", "--bad", files / "bad_val.txt", "--good", files / "good_val.txt", "-o", out)
    assert r.exit_code == 1 and "cannot load model" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_failed_run_keeps_existing_output(files, model_dir, tmp_path):
    out = tmp_path / "d.safetensors"
    out.write_bytes(b"previous")
    r = _run(model_dir, "--bad", files / "bad_val.txt", "--good", files / "good_val.txt", "-o", out, "--layers", "7")
    assert r.exit_code == 1 and out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors"]  # no temporary file left behind
