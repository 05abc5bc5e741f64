from __future__ import annotations

import json

import huggingface_hub
import pytest
from click.testing import CliRunner
from fakehub import FakeHub
from huggingface_hub import ModelCard, ModelCardData

from aru.cli import main
from aru.errors import AruError, ProvenanceError
from aru.hub import build_model_card, push


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # plain LFS path
    with FakeHub() as h:
        yield h


def _check_card_metadata(text: str) -> ModelCardData:
    card = ModelCard(text)  # parses and validates the YAML header locally
    data = ModelCardData(**card.data.to_dict())
    assert data.base_model == "acme/tiny-chat"
    assert {"aru", "unlearning"} <= set(data.tags)
    assert data.library_name == "transformers"
    return data


def _assert_arrived(hub: FakeHub, out, repo_id, rev="main"):
    tree = hub.repos[repo_id]["files"][rev]
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(tree) == set(local)
    for name, data in local.items():
        assert tree[name] == data, name
    _check_card_metadata(tree["README.md"].decode())


def test_card_sections(aru_output):
    text = str(build_model_card(aru_output, repo_id="you/x"))
    _check_card_metadata(text)
    sha = json.loads((aru_output / "aru.json").read_text())["directions"]["sha256"]
    for needle in ["diff-of-means", "| edited | 0.04 | 0.12 |", "max_abs_dlogit", sha, "[push]", "untied"]:
        assert needle in text, needle


def test_card_says_what_is_absent(aru_output):
    rec = json.loads((aru_output / "aru.json").read_text())
    rec["extra"] = {}
    (aru_output / "aru.json").write_text(json.dumps(rec))
    text = str(build_model_card(aru_output))
    assert "No evaluation was recorded" in text and "No `aru verify` result" in text and "recipe: absent" in text


def test_push_roundtrip(aru_output, hub):
    res = push(aru_output, "you/tiny-unlearned", token="hf_test", endpoint=hub.endpoint, private=True)
    assert hub.tokens == {"hf_test"} and hub.repos["you/tiny-unlearned"]["private"]
    assert any("info/lfs/objects/batch" in c for c in hub.calls) and any(c.startswith("PUT") for c in hub.calls)
    assert res.commit_url.startswith(hub.endpoint) and res.method == "upload_folder" and hub.validated >= 1
    _assert_arrived(hub, aru_output, "you/tiny-unlearned")


def test_push_revision_and_env_token(aru_output, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    push(aru_output, "you/r", revision="v1", endpoint=hub.endpoint)
    assert hub.tokens == {"hf_env"}
    _assert_arrived(hub, aru_output, "you/r", rev="v1")


def test_large_folder_switch(aru_output, hub, monkeypatch):
    calls = []

    def fake_large(self, **kw):
        calls.append(kw)
        return self.upload_folder(repo_id=kw["repo_id"], folder_path=kw["folder_path"], repo_type="model")

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_large_folder", fake_large, raising=False)
    res = push(aru_output, "you/big", token="t", endpoint=hub.endpoint, large_folder_threshold=1000)
    assert res.method == "upload_large_folder" and len(calls) == 1
    _assert_arrived(hub, aru_output, "you/big")


def test_cli_push_json(aru_output, hub, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    import aru.hub

    orig = aru.hub.push
    monkeypatch.setattr(aru.hub, "push", lambda *a, **k: orig(*a, endpoint=hub.endpoint, **k))
    r = CliRunner().invoke(main, ["push", str(aru_output), "you/cli", "--token", "tok", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["commit_url"].startswith(hub.endpoint)
    _assert_arrived(hub, aru_output, "you/cli")


def test_dry_run_no_network_no_token(aru_output, monkeypatch):
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda *a, **k: pytest.fail("network"))
    before = sorted(p.name for p in aru_output.iterdir())
    r = CliRunner().invoke(main, ["push", str(aru_output), "you/x", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "model.safetensors" in r.output and "README.md" in r.output and "## Evaluation" in r.output
    assert sorted(p.name for p in aru_output.iterdir()) == before


def test_missing_token(aru_output, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(AruError, match="HF_TOKEN"):
        push(aru_output, "you/x", endpoint="http://127.0.0.1:9")
    r = CliRunner().invoke(main, ["push", str(aru_output), "you/x"])
    assert r.exit_code == 1 and "--token" in r.output


@pytest.mark.parametrize("bad", ["no spaces/x y", "a/b/c", "you/..x", "x--/"])
def test_malformed_repo_id(aru_output, bad):
    with pytest.raises(ValueError, match="Malformed repo id"):
        push(aru_output, bad, token="t", endpoint="http://127.0.0.1:9")


def test_not_an_aru_output(tiny_model, hub):
    with pytest.raises(ProvenanceError, match="not an aru output"):
        push(tiny_model, "you/x", token="t", endpoint=hub.endpoint)
    assert hub.calls == []


def test_tampered_shard(aru_output, hub):
    shard = aru_output / "model.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ProvenanceError, match="model.safetensors changed"):
        push(aru_output, "you/x", token="t", endpoint=hub.endpoint)
    assert hub.calls == [] and not (aru_output / "README.md").exists()


def test_hub_refusal_is_a_clear_error(aru_output, hub):
    hub.refuse = True
    with pytest.raises(AruError, match="refused the push.*you/x.*403"):
        push(aru_output, "you/x", token="t", endpoint=hub.endpoint)
    assert "you/x" not in hub.repos
