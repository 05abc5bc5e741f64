"""aru verify: approximate (post-norm) edits beyond tolerance fail unless --accept-approximate."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner
from tiny import tiny_model

from aru.checkpoint import edit_checkpoint
from aru.cli import main
from aru.directions import Directions, orthonormalize, save_directions


def _edit(model_type, tmp_path):
    model = tiny_model(model_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp_path / "in")
        d = model.config.hidden_size
        q = orthonormalize(torch.randn(2, d, generator=torch.Generator().manual_seed(5)))
        dpath = save_directions(Directions({"all": q}, d), tmp_path / "d.safetensors")
        edit_checkpoint(tmp_path / "in", dpath, tmp_path / "out", progress=False)
    return tmp_path / "out"


@pytest.mark.parametrize(("model_type", "exact"), [("gemma2", False), ("llama", True)])
def test_verify_verdicts(model_type, exact, tmp_path):
    out = _edit(model_type, tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["verify", str(out), "--json"])
    assert "{" in res.output, res.output
    report = json.loads(res.output[res.output.index("{") :])
    assert report["exact"] == exact
    assert report["rel_dlogit_vs_base"] > 1e-3  # the edit changed the model
    if exact:
        assert res.exit_code == 0 and report["passed"]
    else:
        assert report["rel_dlogit"] > report["tol"]
        assert res.exit_code == 1 and not report["passed"]
        ok = runner.invoke(main, ["verify", str(out), "--accept-approximate"])
        assert ok.exit_code == 0 and "APPROXIMATE" in ok.output and "vs the unedited model" in ok.output
