"""models.config_checks: the shared range rules, each naming the config class and the field."""

from types import SimpleNamespace

import pytest

from hf_unified_pretrain.models.config_checks import check_field_ranges


def config(**fields):
    values = dict(image_size=(32, 48), patch_size=8, hidden_size=16, num_hidden_layers=2, mlp_ratio=4.0,
                  drop_path_rate=0.1, initializer_range=0.0, decoder_depth=None)  # fmt: skip
    return SimpleNamespace(**{**values, **fields})


def test_valid_values_pass_and_missing_or_none_fields_are_skipped():
    check_field_ranges(config(), at_least_one=("decoder_depth", "not_a_field"))


@pytest.mark.parametrize(
    "fields,kwargs,message",
    [
        ({"num_hidden_layers": 0}, {}, "num_hidden_layers must be at least 1, got 0"),
        ({"image_size": (32, 0)}, {}, r"image_size must be at least 1, got \(32, 0\)"),
        ({"mlp_ratio": 0.0}, {}, "mlp_ratio must be > 0"),
        ({"drop_path_rate": 1.0}, {}, r"drop_path_rate must lie in \[0, 1\)"),
        ({"initializer_range": -0.02}, {}, "initializer_range must be >= 0"),
        ({"decoder_depth": -1}, {"at_least_one": ("decoder_depth",)}, "decoder_depth must be at least 1, got -1"),
        ({"hidden_size": True}, {}, "hidden_size must be at least 1, got True"),  # a bool is not a size
    ],
)
def test_each_rule_names_the_class_and_field(fields, kwargs, message):
    with pytest.raises(ValueError, match=rf"SimpleNamespace\.{message}"):
        check_field_ranges(config(**fields), **kwargs)
