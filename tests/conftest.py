import pytest
import torch

from pfvg_core.model import PFVGModel

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny PFVG model (packed DiT + SemanticPack + encoders + codec). Do not mutate: use fresh_model."""
    return PFVGModel.build("tiny", seed=0)


@pytest.fixture
def fresh_model():
    return PFVGModel.build("tiny", seed=0)


@pytest.fixture
def start_latent():
    g = torch.Generator().manual_seed(123)
    return torch.randn(1, 4, 1, 16, 16, generator=g)
