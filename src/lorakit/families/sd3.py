"""SD 3.5 medium / large: sd3_train_network.py with networks.lora_sd3, a checkpoint (MMDiT +
VAE) and three text-encoder files, block swap over alike joint blocks.

Sources: sd-scripts 48d368fa (`sd3_train_network.py`, `library/sd3_models.py` — its
`blocks_to_swap <= num_blocks - 2` assert — and `networks/lora_sd3.py`); MMDiT 2.24 B (medium)
and 8.06 B (large) parameters plus the `pos_embed` buffer, counted on the random-weight
checkpoints built on the GPU machine (shared/docs/gpu-runs.md).
"""

from __future__ import annotations

from lorakit.families.arch import (
    CLIP_G_PARAMS,
    CLIP_G_TE_LINEARS,
    CLIP_L_PROJ_PARAMS,
    CLIP_L_TE_LINEARS,
    T5XXL_PARAMS,
    Arch,
    Linear,
)
from lorakit.families.base import Estimator, ModelFamily, ModelFile, OptionFlag, Synth, uniform_swap
from lorakit.families.comfy import CHECKPOINT, FamilyGraph, Loader

SD3_VAE_PARAMS = 83_819_683  # 16-channel VAE

# ---------------------------------------------------------------------------------------------
# SD 3.5 MMDiT: hidden = 64·depth; every Linear in a SingleDiTBlock is adapted (networks.lora_sd3)
_SD3_CONTEXT_TOKENS = 77 + 256  # CLIP (77) and T5 (256) tokens joined


def _mmdit(depth: int, attn2_blocks: int, pos_embed_max: int) -> tuple[int, tuple[Linear, ...]]:
    d = 64 * depth
    img = 1e6 / 16**2  # patch 2 on a 1/8 latent: one token per 16x16 pixels
    ctx = float(_SD3_CONTEXT_TOKENS)
    linears: list[Linear] = []

    def block(tokens: float, n: int, *, pre_only: bool = False, attn2: bool = False) -> None:
        if n == 0:
            return
        linears.append(Linear(d, 3 * d, tokens, n))  # attn.qkv
        if pre_only:
            linears.append(Linear(d, 2 * d, tokens, n))  # adaLN_modulation (2 mods)
            return
        linears.append(Linear(d, d, tokens, n))  # attn.proj
        linears.append(Linear(d, 4 * d, tokens, n))  # mlp.fc1
        linears.append(Linear(4 * d, d, tokens, n))  # mlp.fc2
        linears.append(Linear(d, (9 if attn2 else 6) * d, tokens, n))  # adaLN_modulation
        if attn2:
            linears.append(Linear(d, 3 * d, tokens, n))  # attn2.qkv
            linears.append(Linear(d, d, tokens, n))  # attn2.proj

    block(img, attn2_blocks, attn2=True)  # x_blocks with the extra self-attention (3.5 medium)
    block(img, depth - attn2_blocks)
    block(ctx, depth - 1)  # context blocks: text tokens, counted as if at 1 megapixel (tiny either way)
    block(ctx, 1, pre_only=True)
    # Embedders and final layer (not adapted) + the pos_embed buffer, which lives on the GPU too.
    block_params = sum(x.weight for x in linears)
    extra = (
        4096 * d  # context_embedder
        + (256 * d + d * d)  # t_embedder
        + (2048 * d + d * d)  # y_embedder
        + (16 * 4 * d)  # x_embedder (patch 2, 16 channels)
        + (d * 2 * d + d * 64)  # final layer
        + pos_embed_max**2 * d  # pos_embed buffer
    )
    return block_params + extra, tuple(linears)


_MEDIUM_PARAMS, _MEDIUM_LINEARS = _mmdit(24, 13, 384)
_LARGE_PARAMS, _LARGE_LINEARS = _mmdit(38, 0, 192)

_SD3_TES = (("clip_l", CLIP_L_PROJ_PARAMS), ("clip_g", CLIP_G_PARAMS), ("t5xxl", T5XXL_PARAMS))

_MEDIUM = Arch(
    family="sd3.5-medium",
    denoiser_params=_MEDIUM_PARAMS,
    vae_params=SD3_VAE_PARAMS,
    text_encoder_params=_SD3_TES,
    trainable_text_encoders=("clip_l", "clip_g"),
    linears=_MEDIUM_LINEARS,
    convs=(),
    te_linears=CLIP_L_TE_LINEARS + CLIP_G_TE_LINEARS,
    depth=24,
    latent_channels=16,
    attentions=((24, 1e6 / 16**2, _SD3_CONTEXT_TOKENS, 24), (24, 1e6 / 16**2, 0, 13)),
)
_LARGE = Arch(
    family="sd3.5-large",
    denoiser_params=_LARGE_PARAMS,
    vae_params=SD3_VAE_PARAMS,
    text_encoder_params=_SD3_TES,
    trainable_text_encoders=("clip_l", "clip_g"),
    linears=_LARGE_LINEARS,
    convs=(),
    te_linears=CLIP_L_TE_LINEARS + CLIP_G_TE_LINEARS,
    depth=38,
    latent_channels=16,
    attentions=((38, 1e6 / 16**2, _SD3_CONTEXT_TOKENS, 38),),
)


_FILES = (
    ModelFile("checkpoint", "pretrained_model_name_or_path", True),
    ModelFile("clip_l", "clip_l", True),
    ModelFile("clip_g", "clip_g", True),
    ModelFile("t5xxl", "t5xxl", True),
    ModelFile("vae", "vae", False),
)
_COMFY = FamilyGraph(
    (
        CHECKPOINT,
        Loader(
            "TripleCLIPLoader",
            "text_encoders",
            ("clip_name1", "clip_name2", "clip_name3"),
            ("clip_l", "clip_g", "t5xxl"),
            {"CLIP": 0},
            optional=True,  # a checkpoint with the encoders inside needs none
        ),
    ),
    "EmptySD3LatentImage",
    4.5,
    "euler",
    "sgm_uniform",
)
_LYCORIS = frozenset({"locon", "loha", "lokr", "dylora", "ia3", "glora", "diag-oft"})


def _sd35(name: str, display: str, arch: Arch, act_gib_per_mpix: float, words: tuple[str, ...]) -> ModelFamily:
    variant = words[-1]  # "medium" / "large": the synth layout
    return ModelFamily(
        name=name,
        display=display,
        line="SD 3.5",
        script="sd3_train_network.py",
        lora_module="networks.lora_sd3",
        lycoris_kinds=_LYCORIS,
        model_files=_FILES,
        option_flags=(OptionFlag("training.blocks_to_swap", "blocks_to_swap", switch=False),),
        arch=arch,
        estimator=Estimator(act_gib_per_mpix=act_gib_per_mpix, linear_flop_share=0.85),
        synth=Synth(builder="mmdit-split-encoders", t5_tokenizer=True, variant=variant),
        comfy=_COMFY,
        denoiser_kind="mmdit",
        denoiser_label="MMDiT",
        swap=uniform_swap(arch),
        checkpoint_word=variant,
        measurement_words=words,
        companions_problem="SD 3.5 needs all three text encoders",
        companions_fix="set model.clip_l, model.clip_g and model.t5xxl to the encoder .safetensors files",
    )


SD35_MEDIUM = _sd35("sd3.5-medium", "SD3.5 M", _MEDIUM, 11.0, ("sd35-medium", "sd3.5m", "sd3.5_medium", "medium"))
SD35_LARGE = _sd35("sd3.5-large", "SD3.5 L", _LARGE, 22.0, ("sd35-large", "sd3.5l", "sd3.5_large", "large"))
