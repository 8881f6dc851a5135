import pytest
import torch


@pytest.fixture(scope="session")
def tiny_components():
    torch.set_num_threads(1)
    from cinescale_sdxl.tiny import build_tiny_sdxl

    return build_tiny_sdxl(0, text_encoders=False)


@pytest.fixture
def tiny_unet(tiny_components):
    return tiny_components["unet"]


@pytest.fixture
def unet_inputs():
    from cinescale_sdxl.tiny import tiny_prompt_embeds

    g = torch.Generator().manual_seed(3)
    pe, pooled = tiny_prompt_embeds(1)
    return dict(sample=torch.randn(1, 4, 16, 16, generator=g), timestep=torch.tensor(500.0),
                encoder_hidden_states=pe,
                added_cond_kwargs={"text_embeds": pooled, "time_ids": torch.tensor([[128.0, 128, 0, 0, 128, 128]])})
