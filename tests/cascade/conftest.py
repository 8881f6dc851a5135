import pytest
import torch


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    from cinescale_post.testing_models import tiny_unet_backend

    return tiny_unet_backend(0)
