import pytest
import torch


@pytest.fixture(scope="session")
def organism():
    """(base, tuned, tokenizer) of the shipped organism, fp32, eval mode."""
    from aru.organism import load_shipped

    torch.set_num_threads(2)
    return load_shipped()


@pytest.fixture(scope="session")
def tiny_llama(organism):
    """A tiny random Llama sharing the organism's tokenizer (vocab 1500): random weights, generic code paths."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1500,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    return LlamaForCausalLM(cfg).eval()
