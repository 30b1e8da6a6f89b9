"""An iTPN segmentation backbone at 512 px from a 224 px pre-training checkpoint, inside UperNet with weights loaded."""

from __future__ import annotations

import torch

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.downstream import build_head_model
from hf_unified_pretrain.layers import interpolate_pos_embed, resize_relative_position_bias_table
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining


def test_seg_backbone_at_512_from_a_224_checkpoint_trains_inside_upernet(tmp_path):
    torch.manual_seed(0)
    # Tiny widths, CLIP-target layout: absolute position embeddings and a relative-position bias table per block.
    config = ITPNConfig.from_preset(
        "itpn-tiny-test",
        image_size=224,
        patch_size=16,
        pretraining_target="clip",
        use_relative_position_bias=True,
        backbone_layout="seg",
    )
    pretrained = ITPNForPreTraining(config)
    with torch.no_grad():  # tables start at zero: random values make the interpolation checkable
        for name, parameter in pretrained.named_parameters():
            if name.endswith(("position_embeddings", "relative_position_bias_table")):
                parameter.copy_(torch.randn(parameter.shape) * 0.1)
    pretrained.save_pretrained(tmp_path)

    model = build_head_model(
        "upernet",
        tmp_path,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        backbone_overrides={"image_size": 512},
        hidden_size=32,
        auxiliary_channels=16,
        num_labels=3,
    )
    backbone = model.backbone
    assert backbone.config.image_size == 512

    source = pretrained.state_dict()
    resized = []
    for key, value in backbone.state_dict().items():
        if key.endswith("embeddings.position_embeddings"):
            expected = interpolate_pos_embed(source[key], 14, 32, mode="bicubic")
        elif key.endswith("relative_position_bias_table"):
            expected = resize_relative_position_bias_table(source[key], 14, 32)
        else:
            torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=f"{key} not loaded")
            continue
        assert value.shape != source[key].shape
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=f"{key} not the interpolated table")
        resized.append(key)
    assert len(resized) == 1 + config.num_hidden_layers

    model.train()
    pixel_values = torch.randn(2, 3, 512, 512)
    labels = torch.randint(0, 3, (2, 512, 512))
    outputs = model(pixel_values=pixel_values, labels=labels)
    assert outputs.logits.shape == (2, 3, 512, 512)
    outputs.loss.backward()
    without_gradient = {name for name, p in backbone.named_parameters() if p.requires_grad and p.grad is None}
    assert without_gradient <= {"itpn.embeddings.mask_token"}  # only masked pre-training uses it
    tables = [backbone.get_parameter(key) for key in resized]
    assert all(table.grad is not None and table.grad.abs().sum() > 0 for table in tables)
