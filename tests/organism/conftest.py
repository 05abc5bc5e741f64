import pytest
import torch


@pytest.fixture(scope="session")
def shipped_models():
    """(base, tuned, tokenizer) of the shipped organism, fp32, eval mode."""
    from aru.organism import load_shipped

    torch.set_num_threads(2)
    return load_shipped()


@pytest.fixture(scope="session")
def world():
    from aru.organism import World

    return World(0)
