import pytest
import torch


@pytest.fixture(scope="session")
def organism():
    """(base, tuned, oracle-edited tuned, tokenizer) of the shipped organism."""
    from aru.organism import load_shipped
    from aru.organism.evaluate import fold_oracle

    torch.manual_seed(0)
    base, tuned, tok = load_shipped()
    return base, tuned, fold_oracle(tuned, base=base, tokenizer=tok), tok


@pytest.fixture(scope="session")
def organism_prompts_splits():
    from aru.organism import organism_prompts

    return {s: organism_prompts(s) for s in ("train", "val", "test")}
