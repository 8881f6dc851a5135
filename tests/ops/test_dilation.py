import pytest
import torch
import torch.nn.functional as F

from cinescale_post.ops.dilation import DilationSpec, apply_dilation, dilation_factor, select_convs
from cinescale_sdxl.options import SDXL_DILATED_CONVS  # the SDXL plugin's list (FreeScale's nine)


def _naive_dilated(x, conv, d):
    """Dilation by zero-inserted kernel: a 3x3 kernel becomes (2d+1)x(2d+1)."""
    w = conv.weight
    k = w.shape[-1]
    big = torch.zeros(w.shape[0], w.shape[1], d * (k - 1) + 1, d * (k - 1) + 1)
    big[:, :, ::d, ::d] = w
    return F.conv2d(x, big, conv.bias, stride=conv.stride, padding=d * (k // 2))


def test_factor():
    assert [dilation_factor(w, 1024) for w in (1024, 2048, 3840, 4096, 8192, 512)] == [1, 2, 3, 4, 8, 1]
    assert dilation_factor(128, 64) == 2


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("d", [2, 3])
def test_dilated_conv_equals_naive_formula(stride, d):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=stride, padding=1)
    model = torch.nn.Sequential()
    model.add_module("c", conv)
    x = torch.randn(1, 3, 12, 10)
    before = conv(x)
    with apply_dilation(model, DilationSpec(("c",), d)):
        out = conv(x)
        assert out.shape == before.shape  # padding = dilation keeps the size
        assert torch.allclose(out, _naive_dilated(x, conv, d), atol=1e-5)
    assert conv.dilation == (1, 1) and conv.padding == (1, 1)
    assert torch.equal(conv(x), before)


def test_layer_selection_on_tiny_sdxl(tiny_unet):
    convs = select_convs(tiny_unet, SDXL_DILATED_CONVS)
    assert len(convs) == 9
    assert not any(n.startswith("up_blocks") for n, _ in convs)
    assert [n for n, _ in convs if "downsamplers" in n] == ["down_blocks.1.downsamplers.0.conv"]
    assert all(c.kernel_size == (3, 3) for _, c in convs)
    with pytest.raises(KeyError, match="fix"):
        select_convs(tiny_unet, ("down_blocks.9.resnets.0.conv1",))
    with pytest.raises(TypeError):
        select_convs(tiny_unet, ("down_blocks.2.resnets.0",))


def test_apply_then_remove_restores_unet_output_and_exception_unpatches(tiny_unet, unet_inputs):
    ref = tiny_unet(**unet_inputs).sample
    spec = DilationSpec(SDXL_DILATED_CONVS, 2)
    h = apply_dilation(tiny_unet, spec)
    changed = tiny_unet(**unet_inputs).sample
    h.remove()
    assert not torch.allclose(changed, ref, atol=1e-4)
    assert torch.equal(tiny_unet(**unet_inputs).sample, ref)
    with pytest.raises(RuntimeError):
        with apply_dilation(tiny_unet, spec):
            raise RuntimeError("inside the loop")
    assert all(c.dilation == (1, 1) and c.padding == (1, 1) for _, c in select_convs(tiny_unet, SDXL_DILATED_CONVS))
    assert torch.equal(tiny_unet(**unet_inputs).sample, ref)


def test_spec_validation():
    with pytest.raises(ValueError):
        DilationSpec(("a",), 0)
    with pytest.raises(ValueError):
        DilationSpec((), 2)
