import pytest
import torch


@pytest.fixture(scope="session")
def organism():
    """(tuned model, tokenizer) of the shipped organism, fp32, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aru.organism import shipped

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(str(shipped("tuned")), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(shipped("tuned")))
    return model, tok


@pytest.fixture(scope="session")
def organism_sets():
    """{split: (X−, X+)} user messages of the organism."""
    from aru.organism import organism_prompts

    return {s: organism_prompts(s) for s in ("train", "val", "test")}


@pytest.fixture(scope="session")
def tiny_gpt2():
    """A random 3-layer GPT-2 (learned absolute positions: padding must not shift them)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=1500, n_positions=64, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(cfg).eval()
