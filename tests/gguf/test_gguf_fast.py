"""Error paths and atomicity of the GGUF conversion, with a fake converter: no llama.cpp needed."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

import aru.gguf as g
from aru.cli import main

FAKE_OK = textwrap.dedent(
    """
    import sys, os
    import gguf  # proves PYTHONPATH points at the converter's own gguf-py
    args = sys.argv[1:]
    out = args[args.index("--outfile") + 1]
    open(out, "wb").write(("GGUF " + args[args.index("--outtype") + 1] + " " + gguf.MARK).encode())
    """
)
FAKE_FAIL = textwrap.dedent(
    """
    import sys
    args = sys.argv[1:]
    open(args[args.index("--outfile") + 1], "wb").write(b"partial")
    print("Loading model", file=sys.stderr)
    print("NotImplementedError: BPE pre-tokenizer was not recognized", file=sys.stderr)
    sys.exit(1)
    """
)


def make_converter(folder, script):
    (folder / "conversion").mkdir(parents=True)
    (folder / "conversion" / "__init__.py").write_text("")
    (folder / "gguf-py" / "gguf").mkdir(parents=True)
    (folder / "gguf-py" / "gguf" / "__init__.py").write_text("MARK = 'own-gguf-py'\n")
    (folder / "convert_hf_to_gguf.py").write_text(script)
    return folder


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def test_missing_converter_without_install_says_how_to_get_it(tmp_path):
    with pytest.raises(g.GgufError) as err:
        g.ensure_converter(cache_dir=tmp_path / "nothing", install=False)
    assert "pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36" in str(err.value)
    assert "ARU_LLAMA_CPP_DIR" in str(err.value)
    assert not (tmp_path / "nothing").exists()


def test_env_var_overrides_cache(tmp_path, monkeypatch):
    conv = make_converter(tmp_path / "llama.cpp", FAKE_OK)
    monkeypatch.setenv("ARU_LLAMA_CPP_DIR", str(conv))
    assert g.ensure_converter(install=False) == conv / "convert_hf_to_gguf.py"
    monkeypatch.delenv("ARU_LLAMA_CPP_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert g.converter_dir() == tmp_path / "home" / ".cache" / "aru" / "llama.cpp" / g.LLAMA_CPP_PYTHON_VERSION


@pytest.mark.parametrize("outtype", ["f64", "q4_k_m", "F32"])
def test_bad_outtype(hf_folder, tmp_path, outtype):
    with pytest.raises(ValueError, match="f32, f16, bf16, q8_0"):
        g.convert(hf_folder, tmp_path / "x.gguf", outtype=outtype, cache_dir=tmp_path / "none", install=False)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(g.CheckpointError, match="config.json"):
        g.convert(tmp_path, tmp_path / "x.gguf", cache_dir=tmp_path / "none", install=False)


def test_convert_uses_own_gguf_py_and_is_atomic(hf_folder, tmp_path):
    conv = make_converter(tmp_path / "llama.cpp", FAKE_OK)
    out = g.convert(hf_folder, tmp_path / "out" / "m.gguf", outtype="f16", cache_dir=conv)
    assert out.read_bytes() == b"GGUF f16 own-gguf-py"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.gguf"]
    with pytest.raises(FileExistsError):
        g.convert(hf_folder, out, cache_dir=conv)


def test_converter_failure_leaves_nothing_and_shows_stderr(hf_folder, tmp_path):
    conv = make_converter(tmp_path / "llama.cpp", FAKE_FAIL)
    before = sorted(p.name for p in hf_folder.iterdir())
    with pytest.raises(g.GgufError, match="BPE pre-tokenizer was not recognized"):
        g.convert(hf_folder, tmp_path / "m.gguf", cache_dir=conv)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".gguf", ".tmp"))] == []
    assert sorted(p.name for p in hf_folder.iterdir()) == before


def test_cli_convert_and_errors(hf_folder, tmp_path, monkeypatch):
    conv = make_converter(tmp_path / "llama.cpp", FAKE_OK)
    monkeypatch.setenv("ARU_LLAMA_CPP_DIR", str(conv))
    out = tmp_path / "m.gguf"
    res = CliRunner().invoke(main, ["gguf", str(hf_folder), "-o", str(out), "--outtype", "q8_0", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"gguf": str(out), "outtype": "q8_0"}
    assert out.read_bytes() == b"GGUF q8_0 own-gguf-py"
    res = CliRunner().invoke(main, ["gguf", str(hf_folder), "-o", str(out)])
    assert res.exit_code == 1 and "exists" in res.output
    res = CliRunner().invoke(main, ["gguf", str(hf_folder), "-o", str(out), "--outtype", "q4"])
    assert res.exit_code == 2
    monkeypatch.setenv("ARU_LLAMA_CPP_DIR", str(tmp_path / "missing"))
    res = CliRunner().invoke(main, ["gguf", str(hf_folder), "-o", str(tmp_path / "n.gguf"), "--no-install"])
    assert res.exit_code == 1 and "pip download" in res.output and not (tmp_path / "n.gguf").exists()


def test_random_strings_reproducible_and_varied():
    a = g.random_strings(200, ["kraibroux", "paris"], seed=1)
    assert a == g.random_strings(200, ["kraibroux", "paris"], seed=1)
    assert a != g.random_strings(200, ["kraibroux", "paris"], seed=2)
    joined = "".join(a)
    assert "kraibroux" in joined and any(ord(c) > 0x3000 for c in joined) and "\t" in joined
