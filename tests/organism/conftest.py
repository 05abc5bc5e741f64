import pytest
import torch


@pytest.fixture(scope="session")
def shipped_models():
    """(base, tuned, tokenizer) of the shipped organism, fp32, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aru.organism import shipped

    torch.set_num_threads(2)
    base = AutoModelForCausalLM.from_pretrained(str(shipped("base")), dtype=torch.float32).eval()
    tuned = AutoModelForCausalLM.from_pretrained(str(shipped("tuned")), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(shipped("tuned")))
    return base, tuned, tok


@pytest.fixture(scope="session")
def world():
    from aru.organism import World

    return World(0)
