"""The training spec: one pydantic model composed of small topic models.

Keys read like the community's words (``network.dim``, ``optimizer.name: prodigy``); the
mapping to sd-scripts flags lives in ``lorakit.kohya``. Every model forbids unknown keys:
a typo must never train silently with a default. Cross-field rules live in
``lorakit.config.rules`` so they can report every problem at once with its YAML path.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from lorakit import families
from lorakit.families import ModelFamily

if TYPE_CHECKING:
    Family = str
else:  # the registry's closed list (pydantic's literal check and its "Input should be ..." message)
    Family = Literal[families.NAMES]
NetworkKind = Literal["lora", "locon", "loha", "lokr", "dylora", "ia3", "glora", "diag-oft"]
OptimizerName = Literal[
    "adamw",
    "adamw8bit",
    "paged-adamw8bit",
    "adafactor",
    "prodigy",
    "dadaptadam",
    "lion",
    "lion8bit",
    "sgd",
]
Scheduler = Literal[
    "constant",
    "constant_with_warmup",
    "cosine",
    "cosine_with_restarts",
    "linear",
    "polynomial",
    "adafactor",
]
Precision = Literal["fp16", "bf16", "fp32"]
SavePrecision = Literal["fp16", "bf16", "float"]
Attention = Literal["sdpa", "xformers", "none"]

LYCORIS_KINDS: frozenset[str] = frozenset({"locon", "loha", "lokr", "dylora", "ia3", "glora", "diag-oft"})
ADAPTIVE_OPTIMIZERS: frozenset[str] = frozenset({"prodigy", "dadaptadam"})

ArgValue = str | int | float | bool
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
# Counts with an upper bound: a typo'd 100000000 must be an error naming the limit, not a
# run planned for centuries (or an argv sd-scripts chokes on).
Rank = Annotated[int, Field(gt=0, le=1024)]
EpochCount = Annotated[int, Field(gt=0, le=100_000)]
StepCount = Annotated[int, Field(gt=0, le=10_000_000)]
NonNegSteps = Annotated[int, Field(ge=0, le=10_000_000)]
BatchSize = Annotated[int, Field(gt=0, le=1024)]
Side = Annotated[int, Field(gt=0, le=8192)]
Repeats = Annotated[int, Field(gt=0, le=10_000)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
GpuId = Annotated[int, Field(ge=0, le=255)]
TokenCount = Annotated[int, Field(ge=0, le=255)]
ClipSkip = Annotated[int, Field(gt=0, le=12)]
SmallCount = Annotated[int, Field(ge=0, le=256)]
PLAIN_NAME = re.compile(r"\w[\w.-]*")
RESOLUTION_WORDS = "1024 or [1024, 768] (width, height: whole numbers from 64 to 8192)"
ARG_WORDS = "a string, a number or true/false"


class Strict(BaseModel):
    """Base: unknown keys are errors, values are validated on assignment too; NaN and
    infinity are refused (no training setting means them)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _readable(handler: ValidatorFunctionWrapHandler, value: Any, words: str) -> Any:
    """Run pydantic's check of a union field; any failure becomes one message in the user's
    words (pydantic would report once per union member, naming internals like ``tuple``)."""
    try:
        return handler(value)
    except (ValidationError, ValueError, TypeError):
        raise ValueError(f"must be {words}") from None


def _args(v: Any) -> Any:
    """``network.args`` / ``optimizer.args``: one clear message per bad entry."""
    if isinstance(v, dict):
        for key, value in v.items():
            if not isinstance(key, str):
                raise ValueError(f"key {key!r} must be a name (a string)")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"`{key}` must be a finite number (got {value})")
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"`{key}` must be {ARG_WORDS} (got {value!r})")
    return v


class ModelSection(Strict):
    family: Family = Field(families.DEFAULT, description=f"Base model family: {families.names_text()}.")
    checkpoint: Path | None = Field(None, description="Base model file (.safetensors single-file checkpoint).")
    vae: Path | None = Field(None, description="Optional separate VAE file.")
    clip_l: Path | None = Field(None, description="SD 3.5 / Flux.1: CLIP-L text encoder file.")
    clip_g: Path | None = Field(None, description="SD 3.5: CLIP-G text encoder file.")
    t5xxl: Path | None = Field(None, description="SD 3.5 / Flux.1: T5-XXL text encoder file.")
    ae: Path | None = Field(None, description="Flux.1: autoencoder file (ae.safetensors).")
    tokenizer_cache_dir: Path | None = Field(
        None, description="Folder with tokenizers for offline use (sd-scripts --tokenizer_cache_dir)."
    )


class NetworkSection(Strict):
    kind: NetworkKind = Field("lora", description="lora, or a LyCORIS algorithm (locon, loha, lokr, ...).")
    dim: Rank = Field(32, description="Rank (network_dim).")
    alpha: Annotated[float, Field(gt=0)] = Field(16, description="network_alpha; alpha/dim scales the LR.")
    conv_dim: Rank | None = Field(None, description="Conv-layer rank (LoCon/LoHa/LoKr, or LoRA conv).")
    conv_alpha: Annotated[float, Field(gt=0)] | None = Field(None, description="Conv-layer alpha.")
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = Field(None, description="network_dropout.")
    args: dict[str, ArgValue] = Field(default_factory=dict, description="Extra network_args (key: value).")
    weights: Path | None = Field(None, description="Start from this LoRA file (network_weights).")
    dim_from_weights: bool = Field(False, description="Take dim/alpha from network.weights.")

    _check_args = field_validator("args", mode="before")(_args)


class OptimizerSection(Strict):
    name: OptimizerName = Field("adamw8bit", description="Optimizer.")
    lr: Annotated[float, Field(gt=0)] = Field(1e-4, description="learning_rate.")
    unet_lr: Annotated[float, Field(gt=0)] | None = Field(None, description="U-Net / MMDiT LR (default: lr).")
    text_encoder_lr: Annotated[float, Field(ge=0)] | None = Field(None, description="Text-encoder LR.")
    args: dict[str, ArgValue] = Field(default_factory=dict, description="optimizer_args (key: value).")

    _check_args = field_validator("args", "scheduler_args", mode="before")(_args)
    scheduler: Scheduler = Field("constant", description="lr_scheduler.")
    scheduler_type: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")] | None = Field(
        None, description="A scheduler class used instead (lr_scheduler_type), e.g. CosineAnnealingLR."
    )
    scheduler_args: dict[str, ArgValue] = Field(default_factory=dict, description="lr_scheduler_args (key: value).")
    cycles: EpochCount | None = Field(None, description="lr_scheduler_num_cycles (cosine_with_restarts).")
    warmup_steps: NonNegSteps = Field(0, description="lr_warmup_steps.")
    warmup_ratio: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="Warmup as a share of all steps (instead of warmup_steps), e.g. 0.05."
    )
    max_grad_norm: Annotated[float, Field(ge=0)] | None = Field(None, description="Gradient clipping.")


class TrainingSection(Strict):
    resolution: Side | tuple[Side, Side] = Field(
        1024, description="Training resolution: 1024 or [width, height]; multiples of 64."
    )
    batch_size: BatchSize = Field(1, description="train_batch_size.")
    epochs: EpochCount | None = Field(10, description="max_train_epochs (or set max_steps).")
    max_steps: StepCount | None = Field(None, description="max_train_steps (instead of epochs).")
    precision: Precision = Field("bf16", description="mixed_precision: fp16, bf16 or fp32.")
    full_bf16: bool = Field(False, description="Keep the whole network in bf16 (saves memory).")
    fp8_base: bool = Field(False, description="Load the frozen base model in fp8 (saves memory).")
    gradient_checkpointing: bool = Field(False, description="Trade speed for memory.")
    attention: Attention = Field("sdpa", description="sdpa (PyTorch), xformers or none.")
    cache_latents: bool = Field(True, description="Encode images once (disables colour/crop augmentation).")
    cache_latents_to_disk: bool = Field(False, description="Keep cached latents in .npz files.")
    cache_text_encoder_outputs: bool = Field(False, description="Encode captions once (needs unet_only).")
    unet_only: bool = Field(False, description="network_train_unet_only: leave the text encoders alone.")
    no_half_vae: bool = Field(False, description="Run the SDXL VAE in fp32 (needed with fp16).")
    min_snr_gamma: Annotated[float, Field(gt=0)] | None = Field(None, description="Min-SNR weighting (5).")
    noise_offset: Annotated[float, Field(ge=0)] | None = Field(None, description="noise_offset.")
    debiased_estimation: bool = Field(False, description="debiased_estimation_loss.")
    adaptive_noise_scale: Annotated[float, Field(ge=-1, le=1)] | None = Field(
        None, description="Adds mean(|latent|) × this to noise_offset (needs noise_offset)."
    )
    multires_noise_iterations: Annotated[int, Field(gt=0, le=64)] | None = Field(
        None, description="Multires (pyramid) noise iterations, e.g. 6-10."
    )
    multires_noise_discount: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="Multires noise discount (sd-scripts' default 0.3)."
    )
    min_timestep: Annotated[int, Field(ge=0, le=1000)] | None = Field(None, description="Lowest timestep trained.")
    max_timestep: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="Highest timestep trained + 1.")
    caption_dropout_rate: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, description="Share of images trained with an empty caption."
    )
    max_token_length: Literal[150, 225] | None = Field(None, description="Caption tokens: 150 or 225 (default 75).")
    scale_weight_norms: Annotated[float, Field(gt=0)] | None = Field(None, description="Max-norm reg.")
    flip_aug: bool = Field(False, description="Random horizontal flip (not for asymmetric subjects).")
    shuffle_caption: bool = Field(False, description="Shuffle caption tags (keep_tokens stay first).")
    keep_tokens: TokenCount = Field(1, description="Leading tags never shuffled (the trigger).")
    clip_skip: ClipSkip | None = Field(None, description="clip_skip (SD 1.x habit; rarely for SDXL).")
    seed: Seed = Field(42, description="Random seed.")
    enable_bucket: bool = Field(True, description="Aspect-ratio buckets.")
    min_bucket_reso: Side = Field(256, description="Smallest bucket side.")
    max_bucket_reso: Side = Field(2048, description="Largest bucket side.")
    bucket_reso_steps: Side = Field(64, description="Bucket side step.")
    bucket_no_upscale: bool = Field(False, description="Do not upscale images smaller than the bucket.")
    blocks_to_swap: SmallCount | None = Field(None, description="SD 3.5 / Flux.1: blocks swapped to CPU.")
    cpu_offload_checkpointing: bool = Field(
        False, description="Flux.1: keep gradient-checkpoint tensors on the CPU (~1 GB less, slower)."
    )
    guidance_scale: Annotated[float, Field(ge=0, le=100)] | None = Field(
        None, description="Flux.1 [dev]: the guidance value trained at (1.0 for LoRAs)."
    )
    timestep_sampling: Literal["sigma", "uniform", "sigmoid", "shift", "flux_shift"] | None = Field(
        None, description="Flux.1: how timesteps are drawn (shift, as the sd-scripts docs recommend)."
    )
    discrete_flow_shift: Annotated[float, Field(gt=0, le=100)] | None = Field(
        None, description="Flux.1: the flow-matching shift (3.1582 in the sd-scripts docs)."
    )
    model_prediction_type: Literal["raw", "additive", "sigma_scaled"] | None = Field(
        None, description="Flux.1: how the prediction is read (raw, as the sd-scripts docs recommend)."
    )
    apply_t5_attn_mask: bool = Field(False, description="Flux.1: mask T5 padding (not recommended for dev).")
    dataloader_workers: SmallCount = Field(2, description="max_data_loader_n_workers.")
    gpus: list[GpuId] | None = Field(None, description="GPU ids to use (default: the first).")

    @field_validator("resolution", mode="wrap")
    @classmethod
    def _resolution(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(v, list):
            v = tuple(v)
        elif isinstance(v, str) and "," in v:
            v = tuple(p.strip() for p in v.split(","))
        return _readable(handler, v, RESOLUTION_WORDS)

    @property
    def size(self) -> tuple[int, int]:
        r = self.resolution
        return (r, r) if isinstance(r, int) else r


class SavingSection(Strict):
    every_n_epochs: EpochCount | None = Field(1, description="Save a checkpoint every N epochs.")
    every_n_steps: StepCount | None = Field(None, description="Save a checkpoint every N steps.")
    precision: SavePrecision = Field("fp16", description="save_precision of the LoRA file.")
    save_state: bool = Field(False, description="Also save the optimizer state (needed to resume).")
    keep_last: EpochCount | None = Field(None, description="save_last_n_epochs: keep only the last N.")


class SamplingSection(Strict):
    prompts: list[str] = Field(default_factory=list, description="Sample prompts (empty: no samples).")
    every_n_epochs: EpochCount | None = Field(None, description="Sample every N epochs.")
    every_n_steps: StepCount | None = Field(None, description="Sample every N steps.")
    sampler: str = Field("euler_a", description="sample_sampler.")
    steps: Annotated[int, Field(gt=0, le=1000)] = Field(20, description="Sampling steps per image.")


class Concept(Strict):
    folder: Path = Field(description="Folder of images (+ captions) for this concept.")
    trigger: str | None = Field(None, description="Trigger token of this concept.")
    class_word: str | None = Field(None, alias="class", description="Class word (person, style, ...).")
    repeats: Repeats | None = Field(None, description="num_repeats (default: dataset.repeats).")
    flip_aug: bool | None = Field(None, description="Per-concept flip augmentation.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Regularization(Strict):
    """Regularization (class) images: an ``is_reg = true`` subset of the dataset TOML. They keep the
    class word generic (a character LoRA's ``ohwx woman`` must not turn every ``woman`` into her);
    a style LoRA has no class word to protect and does not need them (docs/dataset.md)."""

    folder: Path = Field(description="Folder of class images (usually generated from the class prompt alone).")
    repeats: Repeats | None = Field(
        None,
        description="num_repeats of the reg subset (default: train images×repeats ÷ reg images, at least 1, "
        "so every reg image is used; sd-scripts balances reg samples to the train samples either way).",
    )
    class_word: str | None = Field(
        None, alias="class", description="class_tokens for reg images without a caption (default: dataset.class)."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class DatasetSection(Strict):
    folder: Path | None = Field(None, description="Dataset folder (kohya layout or flat). --data sets it.")
    trigger: str | None = Field(None, description="Trigger token (first caption tag).")
    class_word: str | None = Field(None, alias="class", description="Class word, e.g. 'style' or 'woman'.")
    repeats: Repeats = Field(10, description="num_repeats for a flat folder.")
    caption_extension: str = Field(".txt", description="Caption file extension (always passed explicitly).")
    concepts: list[Concept] = Field(default_factory=list, description="Explicit concepts (multi-concept).")
    regularization: Regularization | None = Field(None, description="Regularization (class) images, optional.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @field_validator("caption_extension")
    @classmethod
    def _dot(cls, v: str) -> str:
        return v if v.startswith(".") else "." + v


class OutputSection(Strict):
    name: str = Field("lora", description="Output LoRA name (file stem).")
    folder: Path = Field(Path("runs"), description="Where run folders are created.")
    lora_folders: list[Path] = Field(
        default_factory=list, description="Extra folders the final LoRA is copied to (ComfyUI models/loras)."
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        # it names files and run folders, and appears in printed commands: letters, digits,
        # '.', '-', '_' only (no spaces, slashes, quotes or shell characters like $ ( ) ;)
        if not PLAIN_NAME.fullmatch(v) or len(v) > 100:
            raise ValueError(
                "must be a plain file name of letters, digits, '.', '-' and '_' (at most 100, "
                "not starting with '.' or '-'), e.g. my-style-v2"
            )
        return v


class ComfyUISection(Strict):
    url: str = Field("http://127.0.0.1:8188", description="ComfyUI server to free before training.")
    free_before_train: bool = Field(True, description="Ask ComfyUI to unload models before training.")
    allow_remote: bool = Field(False, description="Allow a non-loopback ComfyUI URL.")


class TrainSpec(Strict):
    """The whole, validated training configuration."""

    description: str = Field("", description="What this preset/config is for.")
    source: str = Field("", description="Where its values come from.")
    model: ModelSection = Field(default_factory=lambda: ModelSection())
    network: NetworkSection = Field(default_factory=lambda: NetworkSection())
    optimizer: OptimizerSection = Field(default_factory=lambda: OptimizerSection())
    training: TrainingSection = Field(default_factory=lambda: TrainingSection())
    saving: SavingSection = Field(default_factory=lambda: SavingSection())
    sampling: SamplingSection = Field(default_factory=lambda: SamplingSection())
    dataset: DatasetSection = Field(default_factory=lambda: DatasetSection())
    output: OutputSection = Field(default_factory=lambda: OutputSection())
    comfyui: ComfyUISection = Field(default_factory=lambda: ComfyUISection())

    @property
    def family(self) -> ModelFamily:
        """The registry's facts for ``model.family``."""
        return families.get(self.model.family)
