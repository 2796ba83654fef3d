"""The shape of the architecture facts a family gives the VRAM and speed models (``Arch``,
``Linear``), and the parts families share (text encoders, token counts). Pure arithmetic, no
torch. Each family file builds its own ``Arch`` from these (families/sdxl.py, families/sd3.py).

Sources: sd-scripts 48d368fa (`networks/lora.py`, `networks/lora_sd3.py`) and the random-weight
checkpoints built on the GPU machine (shared/docs/gpu-runs.md).
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Frozen text encoders several families load (parameters, counted once)
CLIP_L_PARAMS = 123_060_480  # CLIP ViT-L/14 text model
CLIP_L_PROJ_PARAMS = CLIP_L_PARAMS + 768 * 768  # SD 3.5 loads it with the text projection
CLIP_G_PARAMS = 694_659_840  # OpenCLIP bigG text model with projection
T5XXL_PARAMS = 4_762_310_656  # T5 v1.1 XXL encoder: 4.76 B (9.5 GB in fp16/bf16)


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
        """Parameters of one block, for families whose blocks are alike (the joint blocks hold
        nearly all of the MMDiT); a family with unlike blocks gives its own ``Swap.params``."""
        return sum(layer.weight for layer in self.linears) / self.depth if self.depth else 0.0


def tok(downscale: int) -> float:
    """Tokens per megapixel for a feature map at 1/(8·downscale) of the image side."""
    return 1e6 / (8 * downscale) ** 2


def clip_layers(width: int, layers: int, mlp: int) -> list[Linear]:
    """The adapted linears of a CLIP text model (77 tokens)."""
    return [
        Linear(width, width, 77, 4 * layers),  # q, k, v, out_proj
        Linear(width, mlp, 77, layers),
        Linear(mlp, width, 77, layers),
    ]


CLIP_L_TE_LINEARS = tuple(clip_layers(768, 12, 3072))
CLIP_G_TE_LINEARS = tuple(clip_layers(1280, 32, 5120))
