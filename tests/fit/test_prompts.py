import json

import pytest

from aru.prompts import format_prompts, load_prompts, post_instruction_length, split_prompts, tokenize_formatted


def test_load_formats(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\n  two  \nthree\n")
    assert load_prompts(tmp_path / "a.txt") == ["one", "two", "three"]
    (tmp_path / "a.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n" + json.dumps({"prompt": "y"}) + "\n")
    assert load_prompts(tmp_path / "a.jsonl") == ["x", "y"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"q": "x", "instruction": "z"}) + "\n")
    assert load_prompts(tmp_path / "b.jsonl", field="q") == ["x"]
    assert load_prompts(tmp_path / "b.jsonl") == ["z"]
    (tmp_path / "a.json").write_text(json.dumps(["p", "q"]))
    assert load_prompts(tmp_path / "a.json") == ["p", "q"]
    (tmp_path / "a.csv").write_text('id,goal\n1,"hello, world"\n2,bye\n')
    assert load_prompts(tmp_path / "a.csv") == ["hello, world", "bye"]
    assert load_prompts(tmp_path / "a.csv", column="id") == ["1", "2"]


def test_load_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.txt.*contains no prompts"):
        load_prompts(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_prompts(tmp_path / "missing.txt")
    (tmp_path / "a.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no column.*--column"):
        load_prompts(tmp_path / "a.csv")
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(ValueError, match="--field"):
        load_prompts(tmp_path / "a.jsonl")
    (tmp_path / "a.parquet").write_text("")
    with pytest.raises(ValueError, match="suffix"):
        load_prompts(tmp_path / "a.parquet")


def test_hub_file_uses_hf_hub_download(tmp_path, monkeypatch):
    import huggingface_hub

    (tmp_path / "data.jsonl").write_text('{"prompt": "hub prompt"}\n')
    calls = []

    def fake(repo_id, filename, repo_type=None, revision=None):
        calls.append((repo_id, filename, repo_type, revision))
        return str(tmp_path / "data.jsonl")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    assert load_prompts("hf://datasets/org/name/sub/data.jsonl", revision="v1") == ["hub prompt"]
    assert calls == [("org/name", "sub/data.jsonl", "dataset", "v1")]


def test_split_deterministic_disjoint():
    p = [f"p{i}" for i in range(101)]
    a, b = split_prompts(p, seed=3), split_prompts(p, seed=3)
    assert a == b
    assert sorted(a.train + a.val + a.test) == sorted(p)
    assert (len(a.train), len(a.val), len(a.test)) == (61, 20, 20)
    assert split_prompts(p, seed=4).train != a.train
    with pytest.raises(ValueError, match="sum"):
        split_prompts(p, fractions=(0.5, 0.2, 0.2))


def test_format_chat_and_raw(organism):
    _, tok = organism
    out = format_prompts(tok, ["hi there"], system="be nice")
    assert out == ["<s><|system|> be nice<|user|> hi there<|assistant|>"]
    ids = tokenize_formatted(tok, out)[0]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    raw = format_prompts(tok, ["hi there"], raw=True)
    assert raw == ["hi there"]
    assert post_instruction_length(tok) == 1


def test_no_chat_template_is_clear(organism):
    from copy import copy

    _, tok = organism
    t = copy(tok)
    t.chat_template = None
    with pytest.raises(ValueError, match="no chat template.*raw=True.*--raw"):
        format_prompts(t, ["x"])
