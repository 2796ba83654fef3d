"""Architecture facts the VRAM estimator counts with: parameter counts of the frozen models and
the shapes of the layers a LoRA adapts. Pure arithmetic, no torch.

Sources: sd-scripts 48d368fa (`library/sdxl_original_unet.py`, `library/sd3_models.py`,
`networks/lora.py`, `networks/lora_sd3.py`) and the random-weight checkpoints built on the GPU
machine (shared/docs/gpu-runs.md: SDXL U-Net 2.57 B parameters; SD 3.5 medium 2.24 B and large
8.06 B MMDiT parameters, plus the `pos_embed` buffer that also sits on the GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Frozen models (parameters, counted once)
SDXL_UNET_PARAMS = 2_567_463_684
SDXL_VAE_PARAMS = 83_653_863
CLIP_L_PARAMS = 123_060_480  # CLIP ViT-L/14 text model
CLIP_L_PROJ_PARAMS = CLIP_L_PARAMS + 768 * 768  # SD 3.5 loads it with the text projection
CLIP_G_PARAMS = 694_659_840  # OpenCLIP bigG text model with projection
T5XXL_PARAMS = 4_762_310_656  # T5 v1.1 XXL encoder: 4.76 B (9.5 GB in fp16/bf16)
SD3_VAE_PARAMS = 83_819_683  # 16-channel VAE


@dataclass(frozen=True)
class Linear:
    """One adapted layer: a LoRA of rank r on it has r·(fan_in + fan_out) parameters."""

    fan_in: int
    fan_out: int
    tokens_per_mpix: float  # tokens per image per megapixel (text-token layers: their token count)
    count: int = 1

    @property
    def io(self) -> int:
        return (self.fan_in + self.fan_out) * self.count

    @property
    def weight(self) -> int:
        return self.fan_in * self.fan_out * self.count

    @property
    def token_width(self) -> float:
        return self.tokens_per_mpix * self.count


@dataclass(frozen=True)
class Arch:
    """What the estimator needs to know about one model family."""

    family: str
    denoiser_params: int  # U-Net / MMDiT parameters + buffers that go to the GPU
    vae_params: int
    text_encoder_params: tuple[tuple[str, int], ...]  # (name, params) of every text encoder
    trainable_text_encoders: tuple[str, ...]  # encoders a LoRA adapts when unet_only is false
    linears: tuple[Linear, ...]  # layers networks.lora(_sd3) adapts in the denoiser
    convs: tuple[Linear, ...]  # 3x3 convs a conv_dim LoRA/LoCon adapts (fan_in = in·9)
    te_linears: tuple[Linear, ...]  # layers adapted in the trainable text encoders
    depth: int  # blocks (for block swap); 0 when sd-scripts cannot swap
    latent_channels: int
    # self-attention layers: (heads, image tokens per megapixel, text tokens joined, layers)
    attentions: tuple[tuple[int, float, int, int], ...] = ()

    @property
    def lora_io(self) -> int:
        """Σ(fan_in + fan_out) over the adapted denoiser layers: LoRA params = rank × this."""
        return sum(layer.io for layer in self.linears)

    @property
    def conv_io(self) -> int:
        return sum(layer.io for layer in self.convs)

    @property
    def te_lora_io(self) -> int:
        return sum(layer.io for layer in self.te_linears)

    @property
    def adapted_weight(self) -> int:
        """Frozen parameters inside adapted layers (what LyCORIS rebuilds each forward pass)."""
        return sum(layer.weight for layer in self.linears)

    @property
    def conv_weight(self) -> int:
        return sum(layer.weight for layer in self.convs)

    @property
    def lora_token_width(self) -> float:
        """Σ tokens-per-megapixel over adapted layers: rank × this × bytes = LoRA bottleneck activations."""
        return sum(layer.token_width for layer in self.linears)

    @property
    def block_params(self) -> float:
        """Parameters of one swappable block (the joint blocks hold nearly all of the MMDiT)."""
        return sum(layer.weight for layer in self.linears) / self.depth if self.depth else 0.0


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


def _tok(downscale: int) -> float:
    """Tokens per megapixel for a feature map at 1/(8·downscale) of the image side."""
    return 1e6 / (8 * downscale) ** 2


_SDXL_LINEARS = tuple(
    _sdxl_transformer(640, 10, 5, _tok(2))  # 2 down + 3 up Transformer2DModels, depth 2
    + _sdxl_transformer(1280, 60, 6, _tok(4))  # 2 down + 1 mid + 3 up, depth 10
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
    return tuple(Linear(cin * 9, cout, _tok(s)) for cin, cout, s in convs)


def _clip_layers(width: int, layers: int, mlp: int) -> list[Linear]:
    return [
        Linear(width, width, 77, 4 * layers),  # q, k, v, out_proj
        Linear(width, mlp, 77, layers),
        Linear(mlp, width, 77, layers),
    ]


_CLIP_TE_LINEARS = tuple(_clip_layers(768, 12, 3072) + _clip_layers(1280, 32, 5120))

SDXL = Arch(
    family="sdxl",
    denoiser_params=SDXL_UNET_PARAMS,
    vae_params=SDXL_VAE_PARAMS,
    text_encoder_params=(("clip_l", CLIP_L_PARAMS), ("clip_g", CLIP_G_PARAMS)),
    trainable_text_encoders=("clip_l", "clip_g"),
    linears=_SDXL_LINEARS,
    convs=_sdxl_convs(),
    te_linears=_CLIP_TE_LINEARS,
    depth=0,
    latent_channels=4,
    attentions=((10, _tok(2), 0, 10), (20, _tok(4), 0, 60)),
)


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

SD35_MEDIUM = Arch(
    family="sd3.5-medium",
    denoiser_params=_MEDIUM_PARAMS,
    vae_params=SD3_VAE_PARAMS,
    text_encoder_params=_SD3_TES,
    trainable_text_encoders=("clip_l", "clip_g"),
    linears=_MEDIUM_LINEARS,
    convs=(),
    te_linears=_CLIP_TE_LINEARS,
    depth=24,
    latent_channels=16,
    attentions=((24, 1e6 / 16**2, _SD3_CONTEXT_TOKENS, 24), (24, 1e6 / 16**2, 0, 13)),
)
SD35_LARGE = Arch(
    family="sd3.5-large",
    denoiser_params=_LARGE_PARAMS,
    vae_params=SD3_VAE_PARAMS,
    text_encoder_params=_SD3_TES,
    trainable_text_encoders=("clip_l", "clip_g"),
    linears=_LARGE_LINEARS,
    convs=(),
    te_linears=_CLIP_TE_LINEARS,
    depth=38,
    latent_channels=16,
    attentions=((38, 1e6 / 16**2, _SD3_CONTEXT_TOKENS, 38),),
)

ARCHS: dict[str, Arch] = {a.family: a for a in (SDXL, SD35_MEDIUM, SD35_LARGE)}


def arch(family: str) -> Arch:
    try:
        return ARCHS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(ARCHS)})") from None
