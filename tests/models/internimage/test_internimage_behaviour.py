"""InternImage behaviour: the backbone inside transformers heads (UperNet, Mask2Former, DETR, Deformable-DETR through
`build_head_model`: weights loaded, forward, backward, round trip), torch.compile, gradient checkpointing, training
signal to every parameter, presets of the released sizes, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

import hf_unified_pretrain  # noqa: F401  (registers the model types)
from hf_unified_pretrain.downstream import build_head_model
from hf_unified_pretrain.models.internimage import (
    InternImageBackbone,
    InternImageConfig,
    InternImageForImageClassification,
    InternImageModel,
)

from ...downstream.tiny_heads import TINY_HEAD_KWARGS

# invalid configs raise huggingface_hub's strict-dataclass error wrapping our ValueError (message kept)
CONFIG_ERROR = (ValueError, StrictDataclassClassValidationError)
STAGES = ["stage1", "stage2", "stage3", "stage4"]
# The stages each head reads; the heads themselves are the shared tiny ones.
HEAD_STAGES = {
    "upernet": STAGES,
    "mask2former": STAGES,
    "detr": ["stage4"],
    "deformable_detr": ["stage2", "stage3", "stage4"],
}
HEADS = {name: (stages, TINY_HEAD_KWARGS[name]) for name, stages in HEAD_STAGES.items()}


def _randomise_zero_initialised(model: torch.nn.Module) -> None:
    """DCNv3 offset/mask heads start at zero (fixed 3x3 averaging): give them values so sampling really deforms."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".dcn.offset." in name or ".dcn.mask." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def _labels(head: str, batch: int, size: int) -> dict:
    generator = torch.Generator().manual_seed(1)
    if head == "upernet":
        return {"labels": torch.randint(0, 3, (batch, size, size), generator=generator)}
    if head == "mask2former":
        return {
            "mask_labels": [(torch.rand(2, size, size, generator=generator) > 0.5).float() for _ in range(batch)],
            "class_labels": [torch.tensor([0, 2]) for _ in range(batch)],
        }
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.4]])
    return {"labels": [{"class_labels": torch.tensor([1]), "boxes": boxes} for _ in range(batch)]}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_backbone_in_head_loads_trains_and_round_trips(tmp_path, head):
    torch.manual_seed(0)
    pretrained = InternImageForImageClassification(InternImageConfig.from_preset("tiny", num_labels=5))
    _randomise_zero_initialised(pretrained)
    pretrained.save_pretrained(tmp_path / "pretrained")
    out_features, head_kwargs = HEADS[head]
    model = build_head_model(head, tmp_path / "pretrained", out_features=out_features, **head_kwargs)
    backbone = next(m for m in model.modules() if isinstance(m, InternImageBackbone))
    source = pretrained.state_dict()
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=f"{key} not loaded")

    pixel_values = torch.randn(2, 3, 64, 64)
    model.train()
    outputs = model(pixel_values=pixel_values, **_labels(head, 2, 64))
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    # every stage output feeds the next stage, so even a stage-4-only head (DETR) trains the whole backbone
    without_grad = [name for name, parameter in backbone.named_parameters() if parameter.grad is None]
    assert not without_grad, without_grad

    model.eval()
    logits_name = "class_queries_logits" if head == "mask2former" else "logits"
    with torch.no_grad():
        expected = getattr(model(pixel_values=pixel_values), logits_name)
    model.save_pretrained(tmp_path / "head")
    reloaded = type(model).from_pretrained(tmp_path / "head").eval()
    with torch.no_grad():
        torch.testing.assert_close(getattr(reloaded(pixel_values=pixel_values), logits_name), expected)


def test_torch_compile_of_the_backbone_matches_eager():
    torch.manual_seed(0)
    model = InternImageBackbone(InternImageConfig.from_preset("tiny", out_features=STAGES)).eval()
    _randomise_zero_initialised(model)
    pixel_values = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad():
        expected = model(pixel_values).feature_maps
        actual = compiled(pixel_values).feature_maps
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layout", ["pre_norm", "post_norm", "res_post_norm"])
def test_every_parameter_learns_and_checkpointing_gives_the_same_gradients(layout):
    from .internimage_model_tester import LAYOUTS

    config = InternImageConfig.from_preset("tiny", num_labels=4, **LAYOUTS[layout])
    torch.manual_seed(0)
    model = InternImageForImageClassification(config).train()
    _randomise_zero_initialised(model)
    pixel_values, labels = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    model(pixel_values, labels=labels).loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert sorted(grads) == sorted(name for name, _ in model.named_parameters())
    assert all(g.abs().sum() > 0 for name, g in grads.items()), [n for n, g in grads.items() if g.abs().sum() == 0]

    model.zero_grad()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.modules() if hasattr(layer, "gradient_checkpointing"))
    model(pixel_values, labels=labels).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, grads[name], atol=1e-6, rtol=1e-5)


def test_presets_build_the_released_sizes():
    expected_millions = {"internimage-t": 29.9, "internimage-s": 50.1, "internimage-b": 97.5}
    for name, millions in expected_millions.items():
        with torch.device("meta"):
            model = InternImageForImageClassification(InternImageConfig.from_preset(name, num_labels=1000))
        assert abs(model.num_parameters() / 1e6 - millions) < 0.5, (name, model.num_parameters())
    h = InternImageConfig.from_preset("h")
    assert (h.dw_kernel_size, h.res_post_norm, h.center_feature_scale, h.use_clip_projector) == (5, True, True, True)
    g = InternImageConfig.from_preset("internimage-g")
    assert g.post_norm and g.has_stage_norm and g.level2_post_norm_block_ids == [5, 11, 17, 23, 29, 35, 41, 47]
    with pytest.raises(ValueError, match="Unknown InternImage preset"):
        InternImageConfig.from_preset("internimage-q")


def test_bad_input_errors_name_the_fix():
    model = InternImageModel(InternImageConfig.from_preset("tiny")).eval()
    with pytest.raises(ValueError, match="has 1 channels but the model expects 3"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="smaller than 32x32.*resize or pad"):
        model(torch.randn(1, 3, 64, 24))
    with pytest.raises(ValueError, match="shape \\(batch_size, num_channels, height, width\\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        model(torch.randn(1, 3, 64, 64), output_hiden_states=True)
    with pytest.raises(CONFIG_ERROR, match=r"groups\[2\]=5 does not divide stage 3's width 64"):
        InternImageConfig.from_preset("tiny", groups=[1, 2, 5, 8])
    with pytest.raises(CONFIG_ERROR, match="one entry per stage"):
        InternImageConfig.from_preset("tiny", groups=[1, 2, 4])
    with pytest.raises(CONFIG_ERROR, match="level2_post_norm_block_ids"):
        InternImageConfig.from_preset("tiny", level2_post_norm=True, level2_post_norm_block_ids=[7])
