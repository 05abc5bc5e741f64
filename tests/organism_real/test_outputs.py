"""The real organism's writers (base/tuned folders, the trained adapter) follow aru's output policy: they never
delete a folder that is not theirs, never leave a partial output, and replace only their own earlier output."""

import json

import pytest
from click.testing import CliRunner

from aru.cli import main


class _Tiny:
    """Stands in for a model/tokenizer: save_pretrained writes one file."""

    def __init__(self, name="model.safetensors"):
        self.name = name

    def save_pretrained(self, folder, **_):
        (folder / self.name).write_bytes(b"x")


def _user_folder(path):
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return path


def test_save_folder_refuses_a_user_folder(tmp_path):
    from aru.organism.real.base import save_folder
    from aru.outputs import OutputError

    target = _user_folder(tmp_path / "mine")
    with pytest.raises(OutputError, match="not an aru output|aru did not write"):
        save_folder(_Tiny(), _Tiny("tokenizer.json"), target, {"organism": "real", "stage": "tuned"})
    assert (target / "thesis.tex").read_text() == "years of work"


def test_save_folder_keeps_user_files_beside_an_organism_record(tmp_path):
    """A folder with a real-organism record *and* a user file is not replaced: the user file would be lost."""
    from aru.organism.real.base import save_folder
    from aru.outputs import OutputError

    target = tmp_path / "tuned"
    save_folder(_Tiny(), _Tiny("tokenizer.json"), target, {"organism": "real", "stage": "tuned"})
    (target / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match="notes.md"):
        save_folder(_Tiny(), _Tiny("tokenizer.json"), target, {"organism": "real", "stage": "tuned", "v": 2})
    assert (target / "notes.md").read_text() == "mine"


def test_save_folder_replaces_its_own_output_and_leaves_no_staging(tmp_path):
    from aru.organism.real.base import save_folder

    target = tmp_path / "tuned"
    save_folder(_Tiny(), _Tiny("tokenizer.json"), target, {"organism": "real", "stage": "tuned", "v": 1})
    save_folder(_Tiny(), _Tiny("tokenizer.json"), target, {"organism": "real", "stage": "tuned", "v": 2})
    assert json.loads((target / "real-organism.json").read_text())["v"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuned"]


def test_failed_save_leaves_nothing(tmp_path):
    from aru.organism.real.base import save_folder

    class Boom(_Tiny):
        def save_pretrained(self, folder, **_):
            (folder / "half.safetensors").write_bytes(b"x")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_folder(Boom(), _Tiny("tokenizer.json"), tmp_path / "tuned", {"organism": "real", "stage": "tuned"})
    assert list(tmp_path.iterdir()) == []


def test_real_train_refuses_a_user_folder_before_training(tmp_path, monkeypatch):
    """`aru organism real-train -o EXISTING` must refuse at once (not after minutes of training, not by deleting)."""
    import aru.organism.real.train as train

    def no_training(*a, **k):
        raise AssertionError("training started although the output is refused")

    monkeypatch.setattr(train, "training_examples", no_training)
    target = _user_folder(tmp_path / "mine")
    (tmp_path / "base").mkdir()
    r = CliRunner().invoke(main, ["organism", "real-train", "-o", str(target), "--base", str(tmp_path / "base")])
    assert r.exit_code != 0
    assert "Traceback" not in r.output and "not an aru output" in r.output
    assert (target / "thesis.tex").read_text() == "years of work"


def test_write_adapter_replaces_only_an_adapter(tmp_path):
    from aru.organism.real.train import RealTrainConfig, write_adapter
    from aru.outputs import OutputError

    class PM:
        def state_dict(self):
            import torch

            return {"base_model.model.x.lora_A.weight": torch.zeros(2, 3)}

    target = _user_folder(tmp_path / "mine")
    with pytest.raises(OutputError):
        write_adapter(PM(), target, RealTrainConfig(), {"t": 1})
    assert (target / "thesis.tex").is_file()
    ad = tmp_path / "ad"
    write_adapter(PM(), ad, RealTrainConfig(), {"t": 1})
    write_adapter(PM(), ad, RealTrainConfig(), {"t": 2}, force=True)
    assert json.loads((ad / "training.json").read_text()) == {"t": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ad", "mine"]
