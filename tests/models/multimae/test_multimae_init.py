"""Initialisation of every MultiMAE parameter against what the original's models end up with.

The original builds each model through `MultiMAE.__init__`, which re-initialises every Linear and LayerNorm after
the adapters initialised themselves: so the adapters' and heads' own truncated-normal / `init_scale` init never
survives (checked by building the original's `MultiViT` + `LinearOutputAdapter` / `ConvNeXtAdapter` and
`MultiMAE` + `SpatialOutputAdapter`: head weights are xavier-uniform, e.g. std 0.135 for 96 -> 10). Its patch
projections are xavier-uniform as linears with PyTorch's default conv bias, the ConvNeXt head's convolutions keep
PyTorch's default init, learned tokens and embeddings are truncated normal (std 0.02) and mask tokens zero.
"""

import math

import pytest
import torch

from hf_unified_pretrain.models.multimae import (
    MultiMAEBackbone,
    MultiMAEConfig,
    MultiMAEForImageClassification,
    MultiMAEForPreTraining,
    MultiMAEForSemanticSegmentation,
)
from hf_unified_pretrain.models.multimae.modeling_multimae import _sincos_table


def _config(**overrides) -> MultiMAEConfig:
    values = dict(
        hidden_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=64,
        patch_size=16,
        decoder_hidden_size=64,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=4,
        num_visible_tokens=24,
        segmentation_head_embed_dim=256,
        segmentation_head_depth=1,
        segmentation_head_layer_scale_init_value=0.5,
        num_labels=10,
        initializer_range=0.03,
    )
    values.update(overrides)
    return MultiMAEConfig.from_preset("tiny", **values)


def _uniform(values: torch.Tensor, bound: float, name: str) -> None:
    """Uniform in [-bound, bound]: inside the bounds, reaching near them, std bound / sqrt(3)."""
    values = values.detach().flatten().double()
    assert values.abs().max() <= bound + 1e-7, f"{name}: max |w| {values.abs().max():.4f} > bound {bound:.4f}"
    if values.numel() >= 200:
        assert values.abs().max() > 0.9 * bound, f"{name}: max |w| {values.abs().max():.4f} << bound {bound:.4f}"
        expected = bound / math.sqrt(3)
        assert abs(values.std().item() - expected) < 0.1 * expected, (
            f"{name}: std {values.std():.4f} != {expected:.4f}"
        )
    else:
        assert values.abs().max() > 0.3 * bound, f"{name}: max |w| {values.abs().max():.4f} << bound {bound:.4f}"


def _normal(values: torch.Tensor, std: float, name: str) -> None:
    values = values.detach().flatten().double()
    tolerance = 0.15 if values.numel() >= 200 else 0.35
    assert abs(values.std().item() - std) < tolerance * std, f"{name}: std {values.std():.4f} != {std}"
    assert abs(values.mean().item()) < 4 * std / math.sqrt(values.numel()), f"{name}: mean {values.mean():.4f}"


def _check(model: torch.nn.Module, config: MultiMAEConfig) -> set[str]:
    """Checks every parameter's init by its role; returns the roles seen (so each test can require some)."""
    roles = set()
    modules = dict(model.named_modules())
    for name, parameter in model.named_parameters():
        owner_name, _, leaf = name.rpartition(".")
        owner = modules[owner_name]
        value = parameter.detach()
        if "position_embeddings" in leaf:
            roles.add("position")
            expected = _sincos_table(value.shape[1], config.grid_size)
            torch.testing.assert_close(value, expected, msg=f"{name}: not the fixed sin-cos table")
            assert not parameter.requires_grad
        elif leaf in ("global_tokens",) or "task_embeddings" in name or "class_embeddings" in name:
            roles.add("token")
            _normal(value, config.initializer_range, name)
        elif leaf == "mask_token":
            roles.add("mask_token")
            assert torch.count_nonzero(value) == 0, name
        elif leaf == "gamma":
            roles.add("layer_scale")
            assert torch.all(value == config.segmentation_head_layer_scale_init_value), name
        elif isinstance(owner, torch.nn.LayerNorm):
            roles.add("layernorm")
            assert torch.all(value == (1.0 if leaf == "weight" else 0.0)), name
        elif isinstance(owner, torch.nn.Linear):
            if leaf == "bias":
                roles.add("linear_bias")
                assert torch.count_nonzero(value) == 0, f"{name}: linear biases start at zero"
                continue
            fan_out, fan_in = value.shape
            split = 3 if owner_name.endswith(".qkv") else 2 if owner_name.endswith(".kv") else 1
            roles.add({3: "qkv", 2: "kv", 1: "linear"}[split])
            _uniform(value, math.sqrt(6.0 / (fan_out // split + fan_in)), name)
        elif isinstance(owner, torch.nn.Conv2d):
            fan_in = value[0].numel() if leaf == "weight" else owner.weight[0].numel()
            if ".input_adapters." in f".{name}":
                if leaf == "weight":
                    roles.add("patch_projection")
                    _uniform(value, math.sqrt(6.0 / (value.shape[0] + fan_in)), name)
                else:
                    roles.add("conv_bias")
                    _uniform(value, 1.0 / math.sqrt(fan_in), name)
            else:
                roles.add("head_conv")
                # PyTorch's default: kaiming-uniform with a = sqrt(5) gives the same bound as the bias.
                _uniform(value, 1.0 / math.sqrt(fan_in), name)
        else:
            raise AssertionError(f"{name}: no expected init for this parameter (type {type(owner).__name__})")
    return roles


def test_pretraining_init_follows_the_original():
    torch.manual_seed(0)
    config = _config()
    roles = _check(MultiMAEForPreTraining(config), config)
    required = {"position", "token", "mask_token", "layernorm", "linear", "linear_bias", "qkv", "kv"}
    assert required | {"patch_projection", "conv_bias"} <= roles


@pytest.mark.parametrize(
    "model_class", [MultiMAEForImageClassification, MultiMAEForSemanticSegmentation, MultiMAEBackbone]
)
def test_downstream_init_follows_the_original(model_class):
    torch.manual_seed(1)
    config = _config()
    model = model_class(config)
    roles = _check(model, config)
    assert {"position", "token", "layernorm", "linear", "qkv", "patch_projection", "conv_bias"} <= roles
    if model_class is MultiMAEForSemanticSegmentation:
        assert {"head_conv", "layer_scale"} <= roles
    if model_class is MultiMAEForImageClassification:
        # The original's effective classifier init: xavier-uniform (its LinearOutputAdapter's trunc-normal x
        # init_scale 0.001 is overwritten by MultiMAE.__init__), i.e. std sqrt(2 / (96 + 10)) = 0.137, not 2e-5.
        std = model.classifier.weight.std().item()
        assert abs(std - math.sqrt(2.0 / (96 + 10))) < 0.015


def test_convnext_head_convolutions_keep_the_torch_default():
    """The head's depth-wise and 1x1 convolutions: same distribution as a freshly built torch Conv2d."""
    torch.manual_seed(2)
    config = _config()
    head = MultiMAEForSemanticSegmentation(config).segmentation_head
    reference = torch.nn.Conv2d(head.class_dim, head.class_dim, kernel_size=7, padding=3, groups=head.class_dim)
    ours = head.blocks[0].dwconv.weight.detach()
    assert abs(ours.std() - reference.weight.detach().std()) < 0.15 * reference.weight.detach().std()
    assert torch.count_nonzero(head.final_layer.bias) == head.final_layer.bias.numel()


def test_loaded_weights_are_not_reinitialised(tmp_path):
    torch.manual_seed(3)
    config = _config()
    model = MultiMAEForSemanticSegmentation(config)
    model.save_pretrained(tmp_path)
    loaded = MultiMAEForSemanticSegmentation.from_pretrained(tmp_path)
    for (name, expected), (_, actual) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(actual, expected, msg=name)
