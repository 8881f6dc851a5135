import pytest
import torch


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    from ..tiny_unet import tiny_unet_model

    return tiny_unet_model(0)
