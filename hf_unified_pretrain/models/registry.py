"""The one method registry: one `MethodEntry` per pre-training method, read by everything that lists methods.

Readers: Auto registration (`register_all`, run when `hf_unified_pretrain` is imported), the top-level exports of
`hf_unified_pretrain`, the command line (`list`, `convert`, `card`, `reconstruct`), the release cards
(`model_cards/render_release_cards.py`), `image_processor_for(config)` and the tests (`tests/registry_helpers.py`).

Adding a method is one folder `hf_unified_pretrain/models/<name>/` (its `__init__.py` exports the classes named in
the entry and lists its public names in `__all__`) plus one `MethodEntry` appended to `_ENTRIES` below; nothing else
needs editing. This module imports nothing heavy: classes are named here and imported on first use.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

# Roles a method can fill, in the order `list` prints them; the values are the Auto classes they register with.
ROLES = ("config", "model", "pretraining", "backbone", "classification", "image_processor")
_AUTO_MODEL_CLASSES = {
    "model": "AutoModel",
    "pretraining": "AutoModelForPreTraining",
    "backbone": "AutoBackbone",
    "classification": "AutoModelForImageClassification",
}


@dataclass(frozen=True)
class CardInfo:
    """What a model card says about a method (paper, description, citation, tags, licence of its weights)."""

    name: str
    paper_title: str
    paper_url: str
    venue: str
    description: str
    citation: str
    tags: tuple[str, ...] = ()
    license: str = "apache-2.0"
    # How the weights were trained, as the card's summary says it ("A base iTPN model <training>, packaged ...") and
    # as Hub tags; `objective_terms` = (config loss-weight field, what the term learns from, supervision tag) for
    # methods whose terms are optional: the card then lists the terms switched on in the checkpoint's config.
    training: str = "pre-trained with self-supervision"
    supervision: tuple[str, ...] = ("self-supervised",)
    objective_terms: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Release:
    """One released size, rendered into `model_cards/<name>/README.md` by `model_cards/render_release_cards.py`.

    Attributes:
        name: Folder / Hub repository name, e.g. "itpn-base-pixel".
        preset: Name for the config class' `from_preset`.
        size: Human label of the size, e.g. "base (pixel target)".
        role: Which class of the entry the card describes ("pretraining", "model", ...).
        results: (metric, value) pairs shown in the card's results table.
        notes: Extra limitations printed in the card.
        teacher: Teacher the method distils from, when it has one.
    """

    name: str
    preset: str
    size: str
    role: str = "pretraining"
    results: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    teacher: str | None = None


@dataclass(frozen=True)
class MethodEntry:
    """One pre-training method.

    Attributes:
        name: Command-line and card name, e.g. "itpn" (also the folder name under `models/` by default).
        module: Package exporting the classes, e.g. "hf_unified_pretrain.models.itpn".
        config / model / pretraining / backbone / classification / image_processor: Class names exported by
            `module`; None when the method has no such class (it is then not registered with that Auto class).
        converter: Module of the original-checkpoint converter (`main(argv)`, `config_from_original`,
            `convert_state_dict`; see `hf_unified_pretrain.conversion`), or None.
        presets: Name of the `{preset: config kwargs}` dict exported by `module` (the config's `from_preset` reads it).
        test_preset: The smallest preset, used by registry-parametrised tests and examples.
        card: Paper, description, citation and licence for model cards.
        releases: Released sizes with their cards.
    """

    name: str
    module: str
    config: str
    model: str
    pretraining: str | None = None
    backbone: str | None = None
    classification: str | None = None
    image_processor: str | None = None
    converter: str | None = None
    presets: str | None = None
    test_preset: str | None = None
    card: CardInfo | None = None
    releases: tuple[Release, ...] = field(default=())

    def class_names(self) -> dict[str, str]:
        """`{role: class name}` for every role the method fills."""
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}

    def load(self, role_or_name: str) -> Any:
        """Imports a class of the method by role ("config", "pretraining", ...) or by exported name."""
        name = getattr(self, role_or_name, None) if role_or_name in ROLES else role_or_name
        if name is None:
            raise ValueError(f"Method {self.name!r} has no {role_or_name} class.")
        return getattr(importlib.import_module(self.module), name)

    def preset_names(self) -> list[str]:
        """Names accepted by the config's `from_preset` (empty without presets)."""
        if self.presets is None:
            return []
        return list(getattr(importlib.import_module(self.module), self.presets))


# Release tables of the entries below (authors' numbers, labelled as such).
_REPORTED = "reported by the original authors for the original weights; not re-measured here"
# MVP and M3I released no weights: the paper's figure is the authors' own model, not a checkpoint anyone can load
_PAPER_ONLY = (
    "reported in the paper for the authors' model, whose weights were never released; a checkpoint trained with "
    "this package has not been evaluated on it"
)
_ITPN_NOTES = (
    "The original iTPN repository states no licence: check the terms of the original weights before redistribution.",
    (
        "Detection numbers come from Mask R-CNN, which transformers does not have; with `build_head_model` the "
        "backbone plugs into UperNet, Mask2Former, DETR and Deformable-DETR instead."
    ),
)
_CLIP_B16 = "openai/clip-vit-base-patch16 (vision tower)"


def _itpn_release(name: str, size: str, results: dict[str, str], **kwargs: Any) -> Release:
    return Release(
        name=name,
        preset=name,
        size=size,
        results=tuple((metric, f"{value} ({_REPORTED})") for metric, value in results.items()),
        notes=_ITPN_NOTES,
        **kwargs,
    )


_ITPN_RELEASES = (
    _itpn_release(
        "itpn-base-pixel",
        "base (pixel target)",
        {
            "ImageNet-1k fine-tune top-1 (400 / 1600 ep)": "85.1 / 85.5",
            "COCO Mask R-CNN 1x box / mask AP": "53.0 / 46.5",
            "ADE20K UperNet mIoU": "53.5",
        },
    ),
    _itpn_release(
        "itpn-base-clip",
        "base (CLIP-B/16 target)",
        {
            "ImageNet-1k fine-tune top-1 (300 / 800 ep)": "85.9 / 86.2",
            "COCO Mask R-CNN 1x box / mask AP": "53.2 / 46.6",
            "ADE20K UperNet mIoU": "54.7",
        },
        teacher=_CLIP_B16,
    ),
    _itpn_release(
        "itpn-large-pixel",
        "large (pixel target)",
        {
            "ImageNet-1k fine-tune top-1 (400 / 1600 ep)": "86.3 / 86.7",
            "COCO Mask R-CNN 1x box / mask AP": "55.6 / 48.6",
            "ADE20K UperNet mIoU": "56.1",
        },
    ),
    _itpn_release(
        "itpn-large-clip",
        "large (CLIP-L/14 target)",
        {
            "ImageNet-1k fine-tune top-1": "87.8",
            "COCO Mask R-CNN 1x box / mask AP": "55.2 / 48.2",
            "ADE20K UperNet mIoU": "57.7",
        },
        teacher=_CLIP_B16,
    ),
    # Fast-iTPN releases are classifiers/backbones without a pyramid: their card describes the bare encoder.
    _itpn_release("fast-itpn-tiny", "Fast-iTPN tiny", {"ImageNet-1k fine-tune top-1 (224 px)": "85.1"}, role="model"),
    _itpn_release(
        "fast-itpn-small", "Fast-iTPN small", {"ImageNet-1k fine-tune top-1 (224 px)": "86.4"}, role="model"
    ),
    _itpn_release("fast-itpn-base", "Fast-iTPN base", {"ImageNet-1k fine-tune top-1 (224 px)": "87.4"}, role="model"),
    _itpn_release(
        "fast-itpn-large", "Fast-iTPN large", {"ImageNet-1k fine-tune top-1 (640 px)": "89.5"}, role="model"
    ),
)
_MVP_NO_WEIGHTS = "MVP's authors released neither code nor weights: this card describes our implementation"
_MVP_RELEASES = (
    Release(
        name="mvp-base",
        preset="base",
        size="base (ViT-B/16, CLIP-B/16 teacher)",
        results=(
            ("ImageNet-1k fine-tune top-1", f"84.4 ({_PAPER_ONLY})"),
            ("COCO Cascade Mask R-CNN 3x box / mask AP", f"53.5 / 46.3 ({_PAPER_ONLY})"),
            ("ADE20K UperNet mIoU", f"52.4 ({_PAPER_ONLY})"),
        ),
        notes=(
            (
                f"{_MVP_NO_WEIGHTS} (target and loss chosen as the README explains); train it with "
                "training_scripts/run_mvp.py."
            ),
        ),
        teacher=_CLIP_B16,
    ),
    Release(
        name="mvp-large",
        preset="large",
        size="large (ViT-L/16, CLIP-B/16 teacher)",
        results=(("ImageNet-1k fine-tune top-1", f"86.3 ({_PAPER_ONLY})"),),
        notes=(f"{_MVP_NO_WEIGHTS}.",),
        teacher=_CLIP_B16,
    ),
)

# Card texts of the methods being added (MultiMAE, M3I, AMDIM): their entries take `card=<NAME>_CARD`.
MULTIMAE_CARD = CardInfo(
    name="MultiMAE",
    paper_title="MultiMAE: Multi-modal Multi-task Masked Autoencoders",
    paper_url="https://arxiv.org/abs/2204.01678",
    venue="ECCV 2022",
    description=(
        "MultiMAE extends masked autoencoding to several input modalities (RGB, depth, semantic segmentation). "
        "A shared ViT encoder sees a small set of visible patches drawn across all modalities (the split between "
        "modalities follows a Dirichlet distribution), and one light decoder per modality reconstructs each of "
        "them, so the encoder learns to fuse modalities and to predict one from the others."
    ),
    citation=(
        "@inproceedings{bachmann2022multimae,\n"
        "  title     = {{MultiMAE}: Multi-modal Multi-task Masked Autoencoders},\n"
        "  author    = {Bachmann, Roman and Mizrahi, David and Atanov, Andrei and Zamir, Amir},\n"
        "  booktitle = {European Conference on Computer Vision (ECCV)},\n"
        "  year      = {2022}\n"
        "}"
    ),
    tags=("masked-image-modeling", "multi-modal", "vision-transformer"),
)

M3I_CARD = CardInfo(
    name="M3I",
    paper_title="Towards All-in-one Pre-training via Maximizing Multi-modal Mutual Information",
    paper_url="https://arxiv.org/abs/2211.09807",
    venue="CVPR 2023",
    description=(
        "M3I pre-training views supervised, image-text and self-supervised pre-training as maximising the mutual "
        "information between a representation of the input and a target representation, and trains these "
        "objectives jointly in a single stage instead of a multi-stage pipeline."
    ),
    citation=(
        "@inproceedings{su2023towards,\n"
        "  title     = {Towards All-in-one Pre-training via Maximizing Multi-modal Mutual Information},\n"
        "  author    = {Su, Weijie and Zhu, Xizhou and Tao, Chenxin and Lu, Lewei and Li, Bin and Huang, Gao and\n"
        "               Qiao, Yu and Wang, Xiaogang and Zhou, Jie and Dai, Jifeng},\n"
        "  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
        "  year      = {2023}\n"
        "}"
    ),
    tags=("mutual-information", "multi-modal", "masked-image-modeling"),
    training="pre-trained with M3I's multi-input, multi-target objective",
    supervision=("multi-target",),
    objective_terms=(
        (
            "intra_view_loss_weight",
            "the same view's dense features from an EMA teacher (self-supervised)",
            "self-supervised",
        ),
        (
            "inter_view_loss_weight",
            "the other view's dense features from an EMA teacher (self-supervised)",
            "self-supervised",
        ),
        ("classification_loss_weight", "category labels (supervised)", "supervised"),
        (
            "image_text_loss_weight",
            "paired captions through a frozen text encoder (weakly supervised)",
            "weakly-supervised",
        ),
    ),
)

AMDIM_CARD = CardInfo(
    name="AMDIM",
    paper_title="Learning Representations by Maximizing Mutual Information Across Views",
    paper_url="https://arxiv.org/abs/1906.00910",
    venue="NeurIPS 2019",
    description=(
        "AMDIM (Augmented Multiscale Deep InfoMax) learns image features by maximising the mutual information "
        "between representations of two augmented views of the same image, comparing global and local features "
        "across several scales of a convolutional encoder with a noise-contrastive (NCE) objective."
    ),
    citation=(
        "@inproceedings{bachman2019learning,\n"
        "  title     = {Learning Representations by Maximizing Mutual Information Across Views},\n"
        "  author    = {Bachman, Philip and Hjelm, R Devon and Buchwalter, William},\n"
        "  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},\n"
        "  year      = {2019}\n"
        "}"
    ),
    tags=("contrastive-learning", "mutual-information", "convolutional"),
    license="mit",  # amdim-public is MIT-licensed
)
_AMDIM_NOTES = (
    (
        "Released by the authors as `amdim_ndf*_rkhs*_rd10.pth` (an Azure blob linked from the amdim-public "
        "README); `hf-unified-pretrain convert amdim --checkpoint <file>.pth --output_dir <dir>` converts them."
    ),
    "Linear accuracy is the authors' evaluation with the online classifiers retrained on the frozen encoder.",
)
_AMDIM_RELEASES = (
    Release(
        name="amdim-medium-in128",
        preset="medium",
        size="medium (128 px, ndf 256, n_rkhs 2048, depth 10)",
        results=(("ImageNet linear top-1 (128 px)", f"67+ ({_REPORTED})"),),
        notes=_AMDIM_NOTES,
    ),
    Release(
        name="amdim-large-in128",
        preset="large",
        size="large (128 px, ndf 320, n_rkhs 2560, depth 10)",
        results=(
            ("ImageNet linear top-1 (128 px)", f"68.1 ({_REPORTED})"),
            ("Places205 linear top-1", f"55.0 ({_REPORTED})"),
        ),
        notes=_AMDIM_NOTES,
    ),
)


# InternImage (the backbone M3I pre-trains): sizes as released by OpenGVLab/InternImage (MIT licence).
INTERNIMAGE_CARD = CardInfo(
    name="InternImage",
    paper_title="InternImage: Exploring Large-Scale Vision Foundation Models with Deformable Convolutions",
    paper_url="https://arxiv.org/abs/2211.05778",
    venue="CVPR 2023",
    description=(
        "InternImage is a hierarchical convolutional backbone whose token mixer is DCNv3, a deformable convolution "
        "with shared projection weights, multiple groups and softmax-normalised modulation over the sampling points, "
        "which gives convolutions the long-range, input-dependent aggregation of attention. Its largest size "
        "(InternImage-H) was pre-trained with M3I. This implementation runs DCNv3 in pure PyTorch (no compiled "
        "extension)."
    ),
    citation=(
        "@inproceedings{wang2023internimage,\n"
        "  title     = {InternImage: Exploring Large-Scale Vision Foundation Models with Deformable Convolutions},\n"
        "  author    = {Wang, Wenhai and Dai, Jifeng and Chen, Zhe and Huang, Zhenhang and Li, Zhiqi and Zhu, Xizhou "
        "and\n"
        "               Hu, Xiaowei and Lu, Tong and Lu, Lewei and Li, Hongsheng and Wang, Xiaogang and Qiao, Yu},\n"
        "  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
        "  year      = {2023}\n"
        "}"
    ),
    tags=("deformable-convolution", "dcnv3", "convolutional-backbone", "image-classification"),
    license="mit",
    training=(
        "trained with supervised image classification on ImageNet (the largest sizes fine-tuned after a large-scale "
        "pre-training stage)"
    ),
    supervision=("supervised",),
)


def _internimage_release(name: str, size: str, checkpoint: str, top1: str, resolution: int) -> Release:
    return Release(
        name=name,
        preset=f"internimage-{name.split('-')[1]}",
        size=size,
        role="classification",
        results=(("ImageNet-1k top-1 (%)", f"{top1} at {resolution} px ({_REPORTED})"),),
        notes=(
            (
                f"Expects the original checkpoint `{checkpoint}` (https://huggingface.co/OpenGVLab/InternImage), or "
                "the matching remote-code repository on the Hub (`model.`-prefixed keys), converted with "
                "`hf-unified-pretrain convert internimage --checkpoint <file> --output_dir <dir>` (pass the size's "
                "architecture fields with `--set` when the file stores no constructor arguments)."
            ),
            "The original weights are MIT-licensed (OpenGVLab/InternImage).",
            (
                "Detection numbers of the paper come from Mask R-CNN / Cascade / DINO, which transformers does not "
                "have; with `build_head_model` the backbone plugs into UperNet, Mask2Former, DETR and "
                "Deformable-DETR instead."
            ),
        ),
    )


_INTERNIMAGE_RELEASES = (
    _internimage_release("internimage-t-1k-224", "T (IN-1k, 224 px)", "internimage_t_1k_224.pth", "83.5", 224),
    _internimage_release("internimage-s-1k-224", "S (IN-1k, 224 px)", "internimage_s_1k_224.pth", "84.2", 224),
    _internimage_release("internimage-b-1k-224", "B (IN-1k, 224 px)", "internimage_b_1k_224.pth", "84.9", 224),
    _internimage_release(
        "internimage-l-22kto1k-384", "L (IN-22k → IN-1k, 384 px)", "internimage_l_22kto1k_384.pth", "87.7", 384
    ),
    _internimage_release(
        "internimage-xl-22kto1k-384", "XL (IN-22k → IN-1k, 384 px)", "internimage_xl_22kto1k_384.pth", "88.0", 384
    ),
    _internimage_release(
        "internimage-h-22kto1k-640",
        "H (M3I joint 427M → IN-22k → IN-1k, 640 px)",
        "internimage_h_22kto1k_640.pth",
        "89.6",
        640,
    ),
    _internimage_release(
        "internimage-g-22kto1k-512",
        "G (joint 427M → IN-22k → IN-1k, 512 px)",
        "internimage_g_22kto1k_512.pth",
        "90.1",
        512,
    ),
)


_ENTRIES: list[MethodEntry] = [
    MethodEntry(
        name="itpn",
        module="hf_unified_pretrain.models.itpn",
        config="ITPNConfig",
        model="ITPNModel",
        pretraining="ITPNForPreTraining",
        backbone="ITPNBackbone",
        classification="ITPNForImageClassification",
        image_processor="ITPNImageProcessor",
        converter="hf_unified_pretrain.models.itpn.convert_itpn_original_to_hf",
        presets="ITPN_PRESETS",
        test_preset="itpn-tiny-test",
        card=CardInfo(
            name="iTPN",
            paper_title="Integrally Pre-Trained Transformer Pyramid Networks",
            paper_url="https://arxiv.org/abs/2211.12735",
            venue="CVPR 2023",
            description=(
                "iTPN pre-trains a hierarchical vision transformer (HiViT) together with the feature pyramid that "
                "detection and segmentation heads use: masked image modeling on the backbone is complemented by "
                "masked feature modeling on the pyramid levels, so the neck is pre-trained instead of starting from "
                "random weights at fine-tuning time. Targets are either normalised pixels or the features of a frozen "
                "CLIP teacher."
            ),
            citation=(
                "@inproceedings{tian2023integrally,\n"
                "  title     = {Integrally Pre-Trained Transformer Pyramid Networks},\n"
                "  author    = {Tian, Yunjie and Xie, Lingxi and Wang, Zhaozhi and Wei, Longhui and Zhang, Xiaopeng and\n"
                "               Jiao, Jianbin and Wang, Yaowei and Tian, Qi and Ye, Qixiang},\n"
                "  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition "
                "(CVPR)},\n"
                "  year      = {2023}\n"
                "}"
            ),
            tags=("masked-image-modeling", "hierarchical-vision-transformer", "feature-pyramid"),
            # The original repository states no licence.
            license="other",
        ),
        releases=_ITPN_RELEASES,
    ),
    MethodEntry(
        name="mvp",
        module="hf_unified_pretrain.models.mvp",
        config="MVPConfig",
        model="MVPModel",
        pretraining="MVPForPreTraining",
        backbone="MVPBackbone",
        classification="MVPForImageClassification",
        image_processor="MVPImageProcessor",
        converter="hf_unified_pretrain.models.mvp.convert_mvp_original_to_hf",
        presets="MVP_PRESETS",
        test_preset="tiny",
        card=CardInfo(
            name="MVP",
            paper_title="MVP: Multimodality-guided Visual Pre-training",
            paper_url="https://arxiv.org/abs/2203.05175",
            venue="ECCV 2022",
            description=(
                "MVP keeps BEiT's masked image modeling recipe (ViT student, block-wise masking) but takes the "
                "targets from a frozen CLIP image encoder: the student predicts CLIP's patch features at the masked "
                "positions, so the semantics CLIP learnt from image-text pairs guide the visual pre-training."
            ),
            citation=(
                "@inproceedings{wei2022mvp,\n"
                "  title     = {{MVP}: Multimodality-guided Visual Pre-training},\n"
                "  author    = {Wei, Longhui and Xie, Lingxi and Zhou, Wengang and Li, Houqiang and Tian, Qi},\n"
                "  booktitle = {European Conference on Computer Vision (ECCV)},\n"
                "  year      = {2022}\n"
                "}"
            ),
            tags=("masked-image-modeling", "feature-distillation", "clip-teacher", "vision-transformer"),
        ),
        releases=_MVP_RELEASES,
    ),
    MethodEntry(
        name="internimage",
        module="hf_unified_pretrain.models.internimage",
        config="InternImageConfig",
        model="InternImageModel",
        backbone="InternImageBackbone",
        classification="InternImageForImageClassification",
        image_processor="InternImageImageProcessor",
        converter="hf_unified_pretrain.models.internimage.convert_internimage_original_to_hf",
        presets="INTERNIMAGE_PRESETS",
        test_preset="tiny",
        card=INTERNIMAGE_CARD,
        releases=_INTERNIMAGE_RELEASES,
    ),
    MethodEntry(
        name="amdim",
        module="hf_unified_pretrain.models.amdim",
        config="AMDIMConfig",
        model="AMDIMModel",
        pretraining="AMDIMForPreTraining",
        backbone="AMDIMBackbone",
        classification="AMDIMForImageClassification",
        image_processor="AMDIMImageProcessor",
        converter="hf_unified_pretrain.models.amdim.convert_amdim_original_to_hf",
        presets="AMDIM_PRESETS",
        test_preset="tiny",
        card=AMDIM_CARD,
        releases=_AMDIM_RELEASES,
    ),
    MethodEntry(
        name="multimae",
        module="hf_unified_pretrain.models.multimae",
        config="MultiMAEConfig",
        model="MultiMAEModel",
        pretraining="MultiMAEForPreTraining",
        backbone="MultiMAEBackbone",
        classification="MultiMAEForImageClassification",
        image_processor="MultiMAEImageProcessor",
        converter="hf_unified_pretrain.models.multimae.convert_multimae_original_to_hf",
        presets="MULTIMAE_PRESETS",
        test_preset="tiny",
        # The released MultiMAE weights are CC BY-NC 4.0 (non-commercial); converted weights inherit that licence.
        card=CardInfo(**{**MULTIMAE_CARD.__dict__, "license": "cc-by-nc-4.0"}),
        releases=(
            Release(
                name="multimae-base",
                preset="base",
                size="base (ViT-B/16; RGB + depth + semseg inputs, 98 of 3x196 tokens visible, 1600 epochs)",
                results=(
                    ("ImageNet-1k fine-tune top-1", f"83.3 ({_REPORTED})"),
                    ("ADE20K semantic segmentation mIoU (RGB)", f"46.2 ({_REPORTED})"),
                    ("NYUv2 depth delta1", f"86.4 ({_REPORTED})"),
                ),
                notes=(
                    (
                        "Weights: `multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth` (with the four "
                        "pre-training decoders) or its timm export, converted with `hf-unified-pretrain convert "
                        "multimae`; licence CC BY-NC 4.0 (non-commercial use only), as the original weights."
                    ),
                    (
                        "Pseudo labels: depth from Omnidata DPT and COCO semantic maps from Mask2Former in the "
                        "original; `hf-unified-pretrain pseudo-label` produces them with any local HF models."
                    ),
                ),
            ),
        ),
    ),
    MethodEntry(
        name="m3i",
        module="hf_unified_pretrain.models.m3i",
        config="M3IConfig",
        model="M3IModel",
        pretraining="M3IForPreTraining",
        # no image processor of its own: `image_processor_for(config)` uses the backbone's, sized to config.image_size
        presets="M3I_PRESETS",
        test_preset="tiny",
        card=M3I_CARD,
        releases=(
            Release(
                name="m3i-internimage-h",
                preset="internimage-h",
                size="huge (InternImage-H backbone, 1.08 B parameters)",
                results=(
                    ("ImageNet-1k fine-tune top-1 (640 px)", f"89.6 ({_PAPER_ONLY})"),
                    ("COCO test-dev box AP (DINO)", f"65.4 ({_PAPER_ONLY})"),
                    ("ADE20K mIoU (Mask2Former, multi-scale)", f"62.9 ({_PAPER_ONLY})"),
                ),
                notes=(
                    (
                        "M3I's own code and pre-training checkpoint were never released; the backbone it produced is "
                        "published as InternImage-H (`internimage_h_jointto22k_384`, see the internimage cards). "
                        "This implementation follows the paper, with the dense terms taken from SiameseIM (same "
                        "authors; the UniGrad loss matches its fixture at atol 1e-5)."
                    ),
                    (
                        "After pre-training, `M3IForPreTraining.save_backbone(folder)` writes the backbone alone; "
                        "`InternImageBackbone.from_pretrained(folder)` loads it."
                    ),
                ),
            ),
        ),
    ),
    # New methods: append one MethodEntry here.
]


def _by_name(entries: list[MethodEntry]) -> dict[str, MethodEntry]:
    by_name: dict[str, MethodEntry] = {}
    for entry in entries:
        if entry.name in by_name:
            raise ValueError(f"Two registry entries are named {entry.name!r}; method names must be unique.")
        by_name[entry.name] = entry
    return by_name


METHODS: dict[str, MethodEntry] = _by_name(_ENTRIES)


def get_method(name: str) -> MethodEntry:
    """The entry of a registered method; a clear error naming the registered ones otherwise."""
    if name not in METHODS:
        raise KeyError(f"Unknown method {name!r}; registered methods: {', '.join(METHODS)}.")
    return METHODS[name]


def method_for_config(config_or_model_type: Any) -> MethodEntry:
    """The entry whose config class has this `model_type` (a config instance/class or the string)."""
    model_type = getattr(config_or_model_type, "model_type", config_or_model_type)
    for entry in METHODS.values():
        if entry.load("config").model_type == model_type:
            return entry
    raise KeyError(f"No registered method has model_type {model_type!r} (registered: {', '.join(METHODS)}).")


def exported_names(entry: MethodEntry) -> list[str]:
    """The public names of a method package (its `__all__`), read from the source without importing it."""
    return _static_all(entry.module)


_ALL_PATTERN = re.compile(r"^__all__\s*(?::[^=\n]*)?=\s*(\[[^\]]*\]|\([^)]*\))", re.MULTILINE)


def _static_all(module: str) -> list[str]:
    """`__all__` of a module or package, read from its source without importing it (listing names stays cheap)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None:
        return []
    origin = spec.origin
    if origin is None or not origin.endswith(".py"):
        return list(getattr(importlib.import_module(module), "__all__", []))
    with open(origin, encoding="utf-8") as source:
        text = source.read()
    match = _ALL_PATTERN.search(text)
    # Only a literal `__all__ = [...]` is read: importing the module instead would defeat the lazy exports.
    return list(ast.literal_eval(match.group(1))) if match else []


def register_all() -> None:
    """Registers every method's config, models and image processor with the transformers Auto classes.

    Uses `exist_ok=True`, so calling it again (or reloading the package) is harmless.
    """
    import transformers

    for entry in METHODS.values():
        config_class = entry.load("config")
        transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for role, auto_name in _AUTO_MODEL_CLASSES.items():
            if getattr(entry, role) is not None:
                getattr(transformers, auto_name).register(config_class, entry.load(role), exist_ok=True)
        if entry.image_processor is not None:
            processors = {"pil": entry.load("image_processor")}
            transformers.AutoImageProcessor.register(config_class, image_processor_classes=processors, exist_ok=True)


def _size_of(config: Any) -> tuple[int, int]:
    size = config.image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def fit_image_processor(processor: Any, config: Any) -> Any:
    """Sets a processor's resize (and center-crop) sizes so it outputs exactly `config.image_size` pixels.

    Processors that resize then center-crop keep their class' resize/crop ratio (256 -> 224 becomes 73 -> 64 for a
    64-pixel model); the others resize straight to the model's size. Normalisation and every other setting is kept.

    Args:
        processor: An image processor instance (e.g. loaded from a checkpoint or built with defaults).
        config: The model config (`image_size`: int or (height, width)).

    Returns:
        The same processor, changed in place.
    """
    height, width = _size_of(config)
    class_crop = getattr(type(processor), "crop_size", None) or {}
    class_resize = getattr(type(processor), "size", None) or {}
    if getattr(processor, "do_center_crop", False) and class_crop:
        processor.crop_size = {"height": height, "width": width}
        if "shortest_edge" in class_resize:
            ratio = class_resize["shortest_edge"] / min(class_crop["height"], class_crop["width"])
            processor.size = {"shortest_edge": max(round(min(height, width) * ratio), max(height, width))}
        else:
            processor.size = {"height": height, "width": width}
    else:
        processor.size = {"height": height, "width": width}
    return processor


def image_processor_for(config: Any, processor_class: type | None = None, **kwargs: Any) -> Any:
    """A new image processor of the config's method producing exactly the input `config` expects.

    Every checkpoint writer (converters, run scripts, the CLI) saves this processor, so `AutoImageProcessor` and
    `pipeline("image-feature-extraction", ...)` feed the model its own resolution.

    Args:
        config: A config of a registered method (or any config with `image_size`, given `processor_class`).
        processor_class: Processor class to build; default: the registered one of the config's method, or of its
            backbone (`config.backbone_config`) for methods without their own (M3I), sized to `config.image_size`.
        kwargs: Constructor arguments (e.g. `image_mean`, `image_std` of a converted checkpoint).

    Returns:
        The processor, sized by `fit_image_processor`.
    """
    processor_class = processor_class or image_processor_class_for(config)
    return fit_image_processor(processor_class(**kwargs), config)


def image_processor_class_for(config: Any) -> type:
    """The image processor class of a config's method; a method without one of its own (M3I) uses its backbone's.

    Args:
        config: A config of a registered method.

    Returns:
        The processor class (e.g. `InternImageImageProcessor` for an M3I config with an InternImage backbone).
    """
    entry = method_for_config(config)
    if entry.image_processor is not None:
        return entry.load("image_processor")
    backbone_config = getattr(config, "backbone_config", None)
    if backbone_config is None:
        raise ValueError(
            f"Method {entry.name!r} has no image processor class and its config has no `backbone_config` to take "
            "one from: pass `processor_class=`."
        )
    return image_processor_class_for(backbone_config)


__all__ = [
    "METHODS",
    "ROLES",
    "CardInfo",
    "MethodEntry",
    "Release",
    "exported_names",
    "fit_image_processor",
    "get_method",
    "image_processor_class_for",
    "image_processor_for",
    "method_for_config",
    "register_all",
]
