"""Feature extraction from iTPN, MVP and MultiMAE tiny configs: pooling layouts, shapes, determinism, Auto loading."""

from __future__ import annotations

import pytest
import torch

from hf_unified_pretrain.evaluation import (
    extract_features,
    load_feature_model,
    pool_tokens,
    pooled_outputs,
    suffix_token_count,
)
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining
from hf_unified_pretrain.models.multimae import MultiMAEConfig, MultiMAEForPreTraining
from hf_unified_pretrain.models.mvp import MVPConfig, MVPForPreTraining


def test_pool_tokens_layouts_hand_computed():
    tokens = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # (B, L, C)
    torch.testing.assert_close(pool_tokens(tokens), torch.tensor([[2.0, 3.0], [8.0, 9.0]]))
    # Prefix token left out: mean of tokens 1 and 2 only.
    torch.testing.assert_close(pool_tokens(tokens, num_prefix_tokens=1), torch.tensor([[3.0, 4.0], [9.0, 10.0]]))
    maps = torch.arange(1 * 2 * 2 * 3, dtype=torch.float32).reshape(1, 2, 2, 3)  # (B, C, H, W)
    torch.testing.assert_close(pool_tokens(maps), torch.tensor([[2.5, 8.5]]))
    patch_layout = torch.ones(1, 4, 2, 2, 5) * torch.arange(5.0)  # (B, L, s, s, C)
    torch.testing.assert_close(pool_tokens(patch_layout), torch.arange(5.0)[None])
    with pytest.raises(ValueError, match="Cannot pool"):
        pool_tokens(torch.ones(2))


def test_pooled_outputs_skip_prefix_tokens_and_attentions():
    hidden = torch.tensor([[[100.0], [1.0], [3.0]]])  # [CLS] + 2 patches
    outputs = {
        "last_hidden_state": hidden,
        "pooler_output": torch.tensor([[7.0]]),
        "hidden_states": (hidden, 2 * hidden),
        "attentions": (torch.ones(1, 1, 3, 3),),
    }
    assert list(pooled_outputs(outputs, num_patches=2)) == ["pooled"]
    features = pooled_outputs(outputs, intermediate=True, num_patches=2)
    assert sorted(features) == ["hidden_states.0", "hidden_states.1", "pooled", "pooler_output"]
    assert features["pooled"].item() == 2.0 and features["hidden_states.1"].item() == 4.0
    assert features["pooler_output"].item() == 7.0
    with pytest.raises(ValueError, match="no `last_hidden_state`"):
        pooled_outputs({"logits": torch.ones(1, 2)})


def test_pool_tokens_leaves_out_trailing_tokens():
    tokens = torch.tensor([[[100.0], [1.0], [3.0], [8.0], [-50.0]]])  # [CLS], 3 patches, a trailing global token
    torch.testing.assert_close(pool_tokens(tokens, 1, 1), torch.tensor([[4.0]]))
    torch.testing.assert_close(pool_tokens(tokens, num_suffix_tokens=2), torch.tensor([[104.0 / 3]]))
    with pytest.raises(ValueError, match="at least one patch token"):
        pool_tokens(tokens, 3, 2)
    with pytest.raises(ValueError, match="at least one patch token"):
        pool_tokens(tokens, -1)


def test_pooled_outputs_split_other_tokens_between_front_and_back():
    # 1 leading + 2 patches + 2 trailing tokens; the embeddings output here has no extra tokens at all.
    hidden = torch.tensor([[[100.0], [1.0], [3.0], [-50.0], [-70.0]]])
    outputs = {"last_hidden_state": hidden, "hidden_states": (torch.tensor([[[5.0], [7.0]]]), hidden)}
    features = pooled_outputs(outputs, intermediate=True, num_patches=2, num_suffix_tokens=2)
    assert features["pooled"].item() == 2.0 and features["hidden_states.1"].item() == 2.0
    assert features["hidden_states.0"].item() == 6.0
    # More trailing tokens declared than the sequence holds beyond its patches: only the extra ones are dropped.
    assert pooled_outputs({"last_hidden_state": hidden[:, 1:4]}, num_patches=2, num_suffix_tokens=3)["pooled"] == 2.0
    # Without a declared suffix every extra token counts as a prefix (ViT's [CLS] first layout).
    assert pooled_outputs({"last_hidden_state": hidden}, num_patches=2)["pooled"].item() == -60.0


def test_multimae_pooled_is_the_mean_patch_token_without_its_trailing_global_token():
    config = MultiMAEConfig.from_preset("tiny", num_global_tokens=2).select_modalities(["rgb"])
    assert suffix_token_count(config) == 2 and suffix_token_count(ITPNConfig.from_preset("itpn-tiny-test")) == 0
    model = MultiMAEForPreTraining(config).eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outputs = model.base_model(pixel_values=pixels, output_hidden_states=True)
    tokens = outputs.last_hidden_state
    assert tokens.shape[1] == 16 + 2  # 4x4 patches, then the global tokens
    features = extract_features(model, pixels, intermediate=True)
    torch.testing.assert_close(features["pooled"], tokens[:, :16].mean(dim=1))
    assert not torch.allclose(features["pooled"], tokens[:, 2:].mean(dim=1), atol=1e-4)  # the old prefix reading
    for index, hidden in enumerate(outputs.hidden_states):
        torch.testing.assert_close(features[f"hidden_states.{index}"], hidden[:, :16].mean(dim=1))


def _itpn():
    return ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test"))


def _mvp():
    return MVPForPreTraining(MVPConfig.from_preset("tiny"))


# (model, expected feature widths) for the tiny presets at 32 px.
CASES = {
    "itpn": (
        _itpn,
        {
            "pooled": 32,
            **{f"hidden_states.{i}": 32 for i in range(3)},  # stage-3 input + 2 blocks
            "stage_features.0": 8,
            "stage_features.1": 16,
            "stage_features.2": 32,
            **{f"pyramid_features.{i}": 16 for i in range(3)},
        },
    ),
    "mvp": (_mvp, {"pooled": 32, **{f"hidden_states.{i}": 32 for i in range(3)}}),  # embeddings + 2 blocks
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shapes_determinism_and_train_mode(name):
    build, widths = CASES[name]
    model = build().train()
    pixels = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    state = torch.random.get_rng_state()
    features = extract_features(model, pixels, batch_size=2, intermediate=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # no random numbers drawn
    assert model.training  # mode restored
    assert {key: tuple(value.shape) for key, value in features.items()} == {
        key: (5, width) for key, width in widths.items()
    }
    assert all(value.dtype == torch.float32 and value.device.type == "cpu" for value in features.values())
    # Same features whatever the batching; images differ, so rows differ.
    whole = extract_features(model, pixels, batch_size=5, intermediate=True)
    for key in features:
        torch.testing.assert_close(features[key], whole[key], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(features["pooled"][0], features["pooled"][1])
    # Without `intermediate` only the final pooled feature.
    assert list(extract_features(model, pixels, batch_size=4)) == ["pooled"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooled_is_the_mean_patch_token_and_batches_may_be_dicts(name):
    build, _ = CASES[name]
    model = build().eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = model.base_model(pixel_values=pixels).last_hidden_state
    expected = tokens[:, tokens.shape[1] - 16 :].mean(dim=1)  # 4x4 patches; MVP's [CLS] left out
    loader = [{"pixel_values": pixels[:2], "labels": torch.zeros(2)}, {"pixel_values": pixels[2:]}]
    torch.testing.assert_close(extract_features(model, loader)["pooled"], expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_features_through_auto_model_match_the_pretraining_model(name, tmp_path):
    build, _ = CASES[name]
    model = build().eval()
    model.save_pretrained(tmp_path)
    loaded = load_feature_model(tmp_path)
    assert type(loaded).__name__ == type(model.base_model).__name__
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ours, theirs = (
        extract_features(model, pixels, intermediate=True),
        extract_features(loaded, pixels, intermediate=True),
    )
    assert set(theirs) - set(ours) <= {"pooler_output"}  # AutoModel may build a pooler the head model has not
    for key, value in ours.items():
        torch.testing.assert_close(theirs[key], value, rtol=1e-5, atol=1e-5)
