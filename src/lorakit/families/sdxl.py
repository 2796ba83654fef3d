"""SDXL: sdxl_train_network.py with networks.lora, one checkpoint file (U-Net, CLIP-L, CLIP-G,
VAE), a U-Net with conv layers, no block swap.

Sources: sd-scripts 48d368fa (`sdxl_train_network.py`, `library/sdxl_original_unet.py`,
`networks/lora.py`); U-Net 2.57 B parameters counted on the random-weight checkpoint built on the
GPU machine (shared/docs/gpu-runs.md).
"""

from __future__ import annotations

from lorakit.families.arch import (
    CLIP_G_PARAMS,
    CLIP_G_TE_LINEARS,
    CLIP_L_PARAMS,
    CLIP_L_TE_LINEARS,
    Arch,
    Linear,
    tok,
)
from lorakit.families.base import Estimator, ModelFamily, ModelFile, OptionFlag, Synth
from lorakit.families.comfy import CHECKPOINT, FamilyGraph

SDXL_UNET_PARAMS = 2_567_463_684
SDXL_VAE_PARAMS = 83_653_863

# ---------------------------------------------------------------------------------------------
# SDXL U-Net: Transformer2DModel layers (networks.lora's default targets)
_SDXL_CTX = 2048  # CLIP-L 768 + CLIP-G 1280 hidden states


def _sdxl_transformer(dim: int, blocks: int, t2d_modules: int, tokens: float) -> list[Linear]:
    """`blocks` BasicTransformerBlocks of width `dim` in `t2d_modules` Transformer2DModels."""
    per_block = [
        Linear(dim, dim, tokens, 4),  # attn1 to_q, to_k, to_v, to_out
        Linear(dim, dim, tokens, 2),  # attn2 to_q, to_out
        Linear(_SDXL_CTX, dim, 77, 2),  # attn2 to_k, to_v (on the 77 text tokens)
        Linear(dim, 8 * dim, tokens, 1),  # ff.net.0.proj (GEGLU)
        Linear(4 * dim, dim, tokens, 1),  # ff.net.2
    ]
    out = [Linear(x.fan_in, x.fan_out, x.tokens_per_mpix, x.count * blocks) for x in per_block]
    out.append(Linear(dim, dim, tokens, 2 * t2d_modules))  # proj_in, proj_out (linear projection)
    return out


_SDXL_LINEARS = tuple(
    _sdxl_transformer(640, 10, 5, tok(2))  # 2 down + 3 up Transformer2DModels, depth 2
    + _sdxl_transformer(1280, 60, 6, tok(4))  # 2 down + 1 mid + 3 up, depth 10
)


def _sdxl_convs() -> tuple[Linear, ...]:
    """3x3 convs of the ResnetBlock2D / Downsample2D / Upsample2D modules (conv_dim targets)."""
    convs: list[tuple[int, int, int]] = []  # (in, out, downscale)

    def resnet(cin: int, cout: int, s: int) -> None:
        convs.append((cin, cout, s))
        convs.append((cout, cout, s))

    for _ in range(2):
        resnet(320, 320, 1)
    convs.append((320, 320, 1))  # downsample
    resnet(320, 640, 2)
    resnet(640, 640, 2)
    convs.append((640, 640, 2))
    resnet(640, 1280, 4)
    resnet(1280, 1280, 4)
    resnet(1280, 1280, 4)  # mid
    resnet(1280, 1280, 4)
    for cin in (2560, 2560, 1920):
        resnet(cin, 1280, 4)
    convs.append((1280, 1280, 2))  # upsample conv runs after the 2x interpolation
    for cin in (1920, 1280, 960):
        resnet(cin, 640, 2)
    convs.append((640, 640, 1))
    for cin in (960, 640, 640):
        resnet(cin, 320, 1)
    return tuple(Linear(cin * 9, cout, tok(s)) for cin, cout, s in convs)


_ARCH = Arch(
    family="sdxl",
    denoiser_params=SDXL_UNET_PARAMS,
    vae_params=SDXL_VAE_PARAMS,
    text_encoder_params=(("clip_l", CLIP_L_PARAMS), ("clip_g", CLIP_G_PARAMS)),
    trainable_text_encoders=("clip_l", "clip_g"),
    linears=_SDXL_LINEARS,
    convs=_sdxl_convs(),
    te_linears=CLIP_L_TE_LINEARS + CLIP_G_TE_LINEARS,
    depth=0,
    latent_channels=4,
    attentions=((10, tok(2), 0, 10), (20, tok(4), 0, 60)),
)


SDXL = ModelFamily(
    name="sdxl",
    display="SDXL",
    line="SDXL",
    script="sdxl_train_network.py",
    lora_module="networks.lora",
    lycoris_kinds=frozenset({"locon", "loha", "lokr", "dylora", "ia3", "glora", "diag-oft"}),
    model_files=(ModelFile("checkpoint", "pretrained_model_name_or_path", True), ModelFile("vae", "vae", False)),
    option_flags=(OptionFlag("training.no_half_vae", "no_half_vae", switch=True),),
    arch=_ARCH,
    estimator=Estimator(act_gib_per_mpix=9.6, linear_flop_share=0.64),  # SDXL: 4.15 of 6.45 TFLOP/MP in adapted linears
    synth=Synth(builder="single-file-unet", t5_tokenizer=False),
    comfy=FamilyGraph((CHECKPOINT,), "EmptyLatentImage", 6.0, "euler", "normal"),
    denoiser_kind="unet",
    denoiser_label="U-Net",
    conv_lora=True,
    fp16_vae_nan=True,
)
