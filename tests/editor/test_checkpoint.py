"""The streaming editor: round trips, byte-identical copies, tying, sharding, provenance, bad input."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from conftest import random_basis, save_tiny
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from aru.checkpoint import edit_checkpoint
from aru.cli import main
from aru.directions import Directions, save_directions
from aru.errors import CheckpointError, DirectionsError, UnsupportedArchitectureError
from aru.provenance import check_provenance, file_sha256, hash_folder
from aru.safetensors_io import read_header


def _tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            out.update({k: st.get_tensor(k) for k in st.keys()})
    return out


def _raw(folder):
    """name -> raw bytes of every tensor, via the header (byte-level comparison)."""
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        h = read_header(f)
        data = f.read_bytes()
        for t in h.tensors.values():
            out[t.name] = data[h.data_start + t.begin : h.data_start + t.end]
    return out


def test_round_trip_keys_shapes_dtypes_and_untouched_bytes(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    before = hash_folder(src)
    result = edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    assert hash_folder(src) == before  # the input is never modified
    a, b = _tensors(src), _tensors(tmp_path / "out")
    assert set(b) == set(a) | {"lm_head.weight"}  # untied: the head is added
    for name in a:
        assert b[name].shape == a[name].shape and b[name].dtype == a[name].dtype
    raw_a, raw_b = _raw(src), _raw(tmp_path / "out")
    edited = set(result.edited)
    assert edited and all(".o_proj." in n or ".down_proj." in n or "embed_tokens" in n for n in edited)
    for name in a:
        if name not in edited:
            assert raw_a[name] == raw_b[name], name
        else:
            assert raw_a[name] != raw_b[name], name
    assert torch.equal(b["lm_head.weight"], a["model.embed_tokens.weight"])  # the head keeps the original matrix
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is False
    assert (tmp_path / "out" / "tokenizer_config.json").exists() == (src / "tokenizer_config.json").exists()
    assert (tmp_path / "out" / "generation_config.json").is_file()


def test_editing_twice_equals_editing_once(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    edit_checkpoint(src, dpath, tmp_path / "once", progress=False)
    edit_checkpoint(tmp_path / "once", dpath, tmp_path / "twice", progress=False)
    once, twice = _tensors(tmp_path / "once"), _tensors(tmp_path / "twice")
    assert set(once) == set(twice)
    for name in once:
        assert torch.allclose(once[name], twice[name], atol=1e-6), name


def test_edited_tensors_follow_the_projection_math(llama_ckpt, tmp_path):
    from aru.directions import load_directions

    src, dpath, _ = llama_ckpt
    q = load_directions(dpath).basis()
    edit_checkpoint(src, dpath, tmp_path / "out", strength=0.5, progress=False)
    a, b = _tensors(src), _tensors(tmp_path / "out")
    w, w2 = a["model.layers.1.mlp.down_proj.weight"], b["model.layers.1.mlp.down_proj.weight"]
    assert torch.allclose(w2, w - 0.5 * q.T @ (q @ w), atol=1e-6)
    e, e2 = a["model.embed_tokens.weight"], b["model.embed_tokens.weight"]
    assert torch.allclose(e2, e - 0.5 * (e @ q.T) @ q, atol=1e-6)
    # rank of the change is at most k
    assert torch.linalg.matrix_rank(w2 - w).item() <= q.shape[0]


def test_keep_tied_edits_the_shared_matrix_and_reports_it(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    with pytest.warns(Warning, match="keep_tied"):
        result = edit_checkpoint(src, dpath, tmp_path / "out", keep_tied=True, progress=False)
    assert not result.untied and not result.exact
    assert "relative change" in result.approximate[0]
    assert "lm_head.weight" not in _tensors(tmp_path / "out")


def test_sharded_checkpoint_keeps_shard_names_and_index(tmp_path):
    src = tmp_path / "in"
    model = save_tiny("gpt2", src)
    shutil.rmtree(src)
    model.save_pretrained(src, max_shard_size="40KB")
    shards = sorted(p.name for p in src.glob("*.safetensors"))
    assert len(shards) > 2
    d = model.config.hidden_size
    dpath = save_directions(Directions({"all": random_basis(d)}, d), tmp_path / "d.safetensors")
    edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.safetensors")) == shards
    index_in = json.loads((src / "model.safetensors.index.json").read_text())
    index_out = json.loads((out / "model.safetensors.index.json").read_text())
    emb_shard = index_in["weight_map"]["transformer.wte.weight"]
    assert index_out["weight_map"] == {**index_in["weight_map"], "lm_head.weight": emb_shard}
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert not loaded.config.tie_word_embeddings
    assert loaded.lm_head.weight.data_ptr() != loaded.transformer.wte.weight.data_ptr()


def test_provenance_records_inputs_outputs_and_settings(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    result = edit_checkpoint(src, dpath, tmp_path / "out", layers="1-2", strength=0.9, progress=False)
    rec = check_provenance(tmp_path / "out")  # every output hash matches
    assert rec["input"]["path"] == str(src.resolve())
    assert rec["input"]["files"] == {"model.safetensors": file_sha256(src / "model.safetensors")}
    assert rec["directions"]["sha256"] == file_sha256(dpath)
    assert rec["settings"]["layers"] == [1, 2] and rec["settings"]["strength"] == 0.9
    assert rec["settings"]["edit_embeddings"] is False  # layer 0 not edited -> embeddings untouched
    assert set(rec["edited_tensors"]) == set(result.edited)
    assert all(".layers.0." not in n and "embed" not in n for n in result.edited)


# ---------------------------------------------------------------- bad input: clear error, no output, input intact


def _assert_failed_cleanly(src, out, before):
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temp folder left behind
    assert hash_folder(src) == before


def test_missing_shard(tmp_path):
    src = tmp_path / "in"
    model = save_tiny("llama", src)
    shutil.rmtree(src)
    model.save_pretrained(src, max_shard_size="40KB")
    d = model.config.hidden_size
    dpath = save_directions(Directions({"all": random_basis(d)}, d), tmp_path / "d.safetensors")
    victim = sorted(src.glob("*.safetensors"))[1]
    victim.unlink()
    before = hash_folder(src)
    with pytest.raises(CheckpointError, match="names shards that do not exist"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


def test_index_naming_a_missing_file(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}})
    )
    before = hash_folder(src)
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


@pytest.mark.parametrize("damage", ["truncate", "garbage_header"])
def test_corrupt_shard(llama_ckpt, tmp_path, damage):
    src, dpath, _ = llama_ckpt
    shard = src / "model.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-1000] if damage == "truncate" else data[:8] + b"{not json" + data[17:])
    before = hash_folder(src)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


def test_direction_of_the_wrong_dimension(llama_ckpt, tmp_path):
    src, _, _ = llama_ckpt
    dpath = save_directions(Directions({"all": random_basis(48)}, 48), tmp_path / "d48.safetensors")
    before = hash_folder(src)
    with pytest.raises(DirectionsError, match="dimension 48.*hidden size 32"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


def test_nan_direction(llama_ckpt, tmp_path):
    src, _, _ = llama_ckpt
    q = random_basis(32)
    from safetensors.torch import save_file

    q[0, 3] = float("nan")
    save_file({"basis.all": q}, str(tmp_path / "nan.safetensors"), metadata={"aru_format": "1", "hidden_size": "32"})
    before = hash_folder(src)
    with pytest.raises(DirectionsError, match="NaN"):
        edit_checkpoint(src, tmp_path / "nan.safetensors", tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


def test_unsupported_architecture(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "bloom"
    (src / "config.json").write_text(json.dumps(cfg))
    before = hash_folder(src)
    with pytest.raises(UnsupportedArchitectureError, match="'bloom' is not in aru's table.*refused.*re-injects"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_overlapping_the_input(llama_ckpt, where):
    src, dpath, _ = llama_ckpt
    before = hash_folder(src)
    out = src if where == "same" else src / "edited"
    with pytest.raises(CheckpointError, match="never modifies its input"):
        edit_checkpoint(src, dpath, out, progress=False)
    assert hash_folder(src) == before


def test_existing_output_needs_force(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="--force"):
        edit_checkpoint(src, dpath, out, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(CheckpointError, match="not an aru output"):  # --force replaces only aru's own outputs
        edit_checkpoint(src, dpath, out, force=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    edit_checkpoint(src, dpath, out, force=True, progress=False)  # an empty folder
    with pytest.raises(CheckpointError, match="--force"):
        edit_checkpoint(src, dpath, out, progress=False)
    edit_checkpoint(src, dpath, out, force=True, progress=False)  # an earlier aru edit output
    assert (out / "aru.json").is_file()


def test_no_disk_space_before_writing(llama_ckpt, tmp_path, monkeypatch):
    src, dpath, _ = llama_ckpt
    before = hash_folder(src)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CheckpointError, match="not enough disk space"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


def test_disk_full_while_writing(llama_ckpt, tmp_path, monkeypatch):
    """ENOSPC in the middle of a shard: a clear error and no partial folder."""
    import aru.checkpoint as ck

    src, dpath, _ = llama_ckpt
    before = hash_folder(src)
    real = ck._copy_range

    def full(fi, fo, n, *a):
        if n > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fi, fo, n, *a)

    monkeypatch.setattr(ck, "_copy_range", full)
    with pytest.raises(CheckpointError, match="ran out of space"):
        edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    _assert_failed_cleanly(src, tmp_path / "out", before)


def test_bf16_checkpoint_folds_in_fp32_and_keeps_dtype(tmp_path):
    src = tmp_path / "in"
    model = save_tiny("qwen2", src, dtype=torch.bfloat16)
    d = model.config.hidden_size
    q = random_basis(d)
    dpath = save_directions(Directions({"all": q}, d), tmp_path / "d.safetensors")
    edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    a, b = _tensors(src), _tensors(tmp_path / "out")
    w = a["model.layers.0.self_attn.o_proj.weight"]
    assert b["model.layers.0.self_attn.o_proj.weight"].dtype == torch.bfloat16
    expected = (w.float() - q.T @ (q @ w.float())).to(torch.bfloat16)  # one rounding, from fp32
    assert torch.equal(b["model.layers.0.self_attn.o_proj.weight"], expected)


# ---------------------------------------------------------------- CLI


def test_cli_edit_then_verify(llama_ckpt, tmp_path):
    src, dpath, _ = llama_ckpt
    runner = CliRunner()
    res = runner.invoke(main, ["edit", str(src), "-d", str(dpath), "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["untied"] is True
    res = runner.invoke(main, ["verify", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["passed"] and report["rel_dlogit"] < 1e-4
    assert report["leak"] < 1e-5 < 1e-2 < report["base_leak"]


def test_cli_verify_fails_on_a_missed_writer(llama_ckpt, tmp_path):
    """Undo the fold in one writer: verify must see it in the logits and the leak, and exit 1."""
    src, dpath, _ = llama_ckpt
    out = tmp_path / "out"
    edit_checkpoint(src, dpath, out, progress=False)
    from safetensors.torch import load_file, save_file

    from aru.provenance import update_provenance

    tensors = load_file(out / "model.safetensors")
    orig = load_file(src / "model.safetensors")
    tensors["model.layers.1.mlp.down_proj.weight"] = orig["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    update_provenance(out)
    res = CliRunner().invoke(main, ["verify", str(out), "--json"])
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["rel_dlogit"] > 1e-3 and report["leak"] > 1e-2


def test_cli_bad_input_is_one_clear_line(llama_ckpt, tmp_path):
    src, _, _ = llama_ckpt
    dpath = save_directions(Directions({"all": random_basis(48)}, 48), tmp_path / "d48.safetensors")
    res = CliRunner().invoke(main, ["edit", str(src), "-d", str(dpath), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "Error: " in res.output and "hidden size 32" in res.output and "Traceback" not in res.output


def test_hub_id_is_resolved_with_snapshot_download(llama_ckpt, tmp_path, monkeypatch):
    """A Hub id goes through snapshot_download (here served from a local folder) and is recorded."""
    import huggingface_hub

    src, dpath, _ = llama_ckpt
    calls = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.update(repo_id=repo_id, revision=revision)
        snap = tmp_path / "hub" / "abc123"
        if not snap.exists():
            shutil.copytree(src, snap)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    edit_checkpoint("org/tiny-llama", dpath, tmp_path / "out", progress=False)
    rec = check_provenance(tmp_path / "out")
    assert calls["repo_id"] == "org/tiny-llama"
    assert rec["input"]["repo_id"] == "org/tiny-llama" and rec["input"]["revision"] == "abc123"
    assert rec["input"]["path"] is None
