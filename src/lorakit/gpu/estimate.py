# Over ~400 lines because: the VRAM model: one formula per memory term, kept together so the terms add up in one place.
"""Peak GPU memory of an sd-scripts LoRA run, phase by phase, from a physical model.

sd-scripts runs in phases and frees the GPU between them (sd-scripts 48d368fa, train_network.py
and its SDXL / SD3 subclasses):

1. ``cache latents``: only the VAE is on the GPU (fp32 with no_half_vae), encoding one image at a
   time (``--vae_batch_size`` 1).
2. ``cache text-encoder outputs``: the denoiser and VAE are moved to the CPU, the text encoders come
   in, in the 16-bit training dtype. For SD 3.5 that is T5-XXL: 4.76 B parameters, 8.9 GiB.
3. ``training``: the frozen denoiser (16-bit, or fp8 with fp8_base, minus the blocks swapped to the
   CPU), the text encoders and VAE when their outputs are not cached, the network (fp32, or bf16
   with full_bf16), its optimizer states, and the activations of one step.

The peak of a run is the largest phase. Every phase also carries the CUDA context and the caching
allocator's overhead.

Counted from parameters (see ``lorakit.families.arch``): weights, LoRA parameters, gradients and
optimizer states. Gradients only exist after the backward pass has freed the activations (sd-scripts
zeroes them with ``set_to_none``), so a step needs ``max(activations, gradients)`` beside the rest.

Fitted to measurements (``gpu/data/vram_coefficients.json``, written by ``lorakit.gpu.calibrate``):
the overhead constant, the activations of one image per megapixel without gradient checkpointing
for each family, and the share of them that gradient checkpointing keeps (one for U-Nets, one for
MMDiTs). Activations scale with batch × pixels (SDPA/xformers attention is linear in tokens).

Not measured yet, modelled from how the code works (each says so in the estimate's notes):
fp8_base (autocast keeps a 16-bit copy of each upcast weight for the backward pass unless gradient
checkpointing recomputes it), LyCORIS (rebuilds each adapted weight every forward pass),
attention: none (stores the tokens² attention matrices), uncached latents, and text-encoder training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit import families
from lorakit.config.schema import ADAPTIVE_OPTIMIZERS as SCHEMA_ADAPTIVE
from lorakit.families.arch import Arch

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec

GIB = 1024**3
DATA_DIR = Path(__file__).parent / "data"
COEFFICIENTS_FILE = DATA_DIR / "vram_coefficients.json"

LYCORIS_KINDS = frozenset({"locon", "loha", "lokr", "dylora", "ia3", "glora", "diag-oft"})
# LyCORIS parameters relative to a LoRA of the same rank on the same layers (LoHa: two pairs of
# low-rank factors; LoKr/iA3/OFT: far fewer). Rough: their share of memory is small either way.
NETWORK_PARAM_FACTOR: dict[str, float] = {
    "lora": 1.0,
    "locon": 1.0,
    "dylora": 1.0,
    "loha": 2.0,
    "glora": 2.0,
    "lokr": 0.1,
    "diag-oft": 0.1,
    "ia3": 0.01,
}
EIGHT_BIT_OPTIMIZERS = frozenset({"adamw8bit", "paged-adamw8bit", "lion8bit"})
ADAPTIVE_OPTIMIZERS = SCHEMA_ADAPTIVE  # the schema's one set (tests/core/test_optimizer_table.py)

# Optimizer state per trainable parameter, in units of the parameter's own size (fp32 → 4 bytes),
# except 8-bit states, given in bytes. Adafactor keeps a factored second moment (rows + columns).
_STATE_SLOTS: dict[str, float] = {
    "adamw": 2,  # exp_avg, exp_avg_sq
    "prodigy": 4,  # exp_avg, exp_avg_sq, s, p0
    "dadaptadam": 3,  # exp_avg, exp_avg_sq, s
    "lion": 1,
    "sgd": 0,
}
_STATE_BYTES_8BIT: dict[str, float] = {"adamw8bit": 2.0, "paged-adamw8bit": 2.0, "lion8bit": 1.0}

# Physical constants that no measurement has pinned yet (stated in docs/vram.md).
# 16-bit VAE encoder working set per image per megapixel (×2 in fp32). From the grid's fp8 row,
# whose set-up peak (5.67 GiB) is its latent-caching phase: fp32 VAE encoding one 1024² image.
VAE_ENCODE_GIB_PER_MPIX = 2.13
TE_CACHE_ACT_GIB = 0.1  # text encoders' working set while caching (77/256 tokens, no grad)
TE_TRAIN_ACT_GIB_PER_IMAGE = 0.15  # CLIP-L + CLIP-G activations kept for backward, per image
GC_KEEPS_ONE_BLOCK = 0.1  # with GC only the block being recomputed holds rebuilt/upcast weights


@dataclass(frozen=True)
class TrainShape:
    """The settings that decide GPU memory and speed (a view of a TrainSpec)."""

    family: str = families.DEFAULT
    width: int = 1024
    height: int = 1024
    batch_size: int = 1
    network_kind: str = "lora"
    dim: int = 32
    conv_dim: int | None = None
    optimizer: str = "adamw8bit"
    precision: str = "bf16"
    full_bf16: bool = False
    fp8_base: bool = False
    gradient_checkpointing: bool = False
    cache_latents: bool = True
    cache_text_encoder_outputs: bool = False
    unet_only: bool = False
    no_half_vae: bool = False
    attention: str = "sdpa"
    blocks_to_swap: int = 0
    latents_on_disk: bool = False  # speed only (cache_latents_to_disk)
    dataloader_workers: int = 2  # speed only (max_data_loader_n_workers)

    @property
    def mpix(self) -> float:
        return self.width * self.height / 1e6

    def with_(self, **changes: Any) -> TrainShape:
        return replace(self, **changes)

    def describe(self) -> str:
        net = f"{self.network_kind} rank {self.dim}" + (f"/conv {self.conv_dim}" if self.conv_dim else "")
        bits = [
            self.family,
            f"{self.width}x{self.height}",
            f"batch {self.batch_size}",
            "GC" if self.gradient_checkpointing else "no GC",
            self.precision + (" full_bf16" if self.full_bf16 else "") + (" fp8 base" if self.fp8_base else ""),
            net,
            self.optimizer,
        ]
        if self.blocks_to_swap:
            bits.append(f"{self.blocks_to_swap} blocks swapped")
        caches = [
            n for n, on in (("latents", self.cache_latents), ("TE outputs", self.cache_text_encoder_outputs)) if on
        ]
        bits.append("cached " + " + ".join(caches) if caches else "nothing cached")
        if not self.unet_only:
            bits.append("text encoders trained")
        return " · ".join(bits)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shape_from_spec(spec: TrainSpec) -> TrainShape:
    t, n = spec.training, spec.network
    w, h = t.size
    return TrainShape(
        family=spec.model.family,
        width=w,
        height=h,
        batch_size=t.batch_size,
        network_kind=n.kind,
        dim=n.dim,
        conv_dim=n.conv_dim,
        optimizer=spec.optimizer.name,
        precision=t.precision,
        full_bf16=t.full_bf16,
        fp8_base=t.fp8_base,
        gradient_checkpointing=t.gradient_checkpointing,
        cache_latents=t.cache_latents,
        cache_text_encoder_outputs=t.cache_text_encoder_outputs,
        unet_only=t.unet_only,
        no_half_vae=t.no_half_vae,
        attention=t.attention,
        blocks_to_swap=t.blocks_to_swap or 0,
        latents_on_disk=t.cache_latents and t.cache_latents_to_disk,
        dataloader_workers=t.dataloader_workers,
    )


# ---------------------------------------------------------------------------------------------
# Coefficients (fitted; stored as data)


@dataclass(frozen=True)
class Coefficients:
    overhead_gib: float  # CUDA context + allocator reserve, in every phase
    act_gib_per_mpix: dict[str, float]  # family → activations of one image per megapixel, no GC, 16-bit
    gc_keep: dict[str, float]  # "unet" / "mmdit" → share of those activations kept with GC
    grad_overlap: float = 0.5  # share of the gradients already alive at the step's activation peak
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def activation(self, family: str, gc: bool) -> float:
        a = self.act_gib_per_mpix.get(family, families.get(family).estimator.act_gib_per_mpix)
        return a * self.gc_keep[denoiser_kind(family)] if gc else a

    def as_vector(self) -> list[float]:
        return [
            self.overhead_gib,
            *(self.act_gib_per_mpix.get(f, families.get(f).estimator.act_gib_per_mpix) for f in FAMILIES),
            *(self.gc_keep[k] for k in DENOISER_KINDS),
            self.grad_overlap,
        ]

    @classmethod
    def from_vector(cls, v: list[float], meta: dict[str, Any] | None = None) -> Coefficients:
        n = len(FAMILIES)
        return cls(
            overhead_gib=v[0],
            act_gib_per_mpix=dict(zip(FAMILIES, v[1 : 1 + n], strict=True)),
            gc_keep=dict(zip(DENOISER_KINDS, v[1 + n : 1 + n + len(DENOISER_KINDS)], strict=True)),
            grad_overlap=v[1 + n + len(DENOISER_KINDS)],
            meta=meta or {},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.meta,
            "coefficients": {
                "overhead_gib": round(self.overhead_gib, 4),
                "act_gib_per_mpix": {k: round(v, 4) for k, v in self.act_gib_per_mpix.items()},
                "gc_keep": {k: round(v, 4) for k, v in self.gc_keep.items()},
                "grad_overlap": round(self.grad_overlap, 4),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Coefficients:
        c = data["coefficients"]
        meta = {k: v for k, v in data.items() if k != "coefficients"}
        return cls(
            float(c["overhead_gib"]),
            dict(c["act_gib_per_mpix"]),
            dict(c["gc_keep"]),
            float(c.get("grad_overlap", PRIOR_GRAD_OVERLAP)),
            meta,
        )


FAMILIES: tuple[str, ...] = families.NAMES
DENOISER_KINDS: tuple[str, ...] = ("unet", "mmdit")

# Starting point of the fit and the fallback if the data file is missing: read off the
# field-notes tables by hand (SDXL ~10 GiB per 1024² image without GC, ~1.4 with).
PRIOR_GRAD_OVERLAP = 0.5
PRIOR = Coefficients(
    overhead_gib=0.6,
    act_gib_per_mpix={f.name: f.estimator.act_gib_per_mpix for f in families.FAMILIES.values()},
    gc_keep={"unet": 0.14, "mmdit": 0.08},
    grad_overlap=PRIOR_GRAD_OVERLAP,
    meta={"source": "prior: hand-read from docs/field-notes.md"},
)


def denoiser_kind(family: str) -> str:
    return families.get(family).denoiser_kind


_COEFF_CACHE: dict[Path, Coefficients] = {}


def load_coefficients(path: Path | None = None) -> Coefficients:
    path = path or COEFFICIENTS_FILE
    if path not in _COEFF_CACHE:
        try:
            _COEFF_CACHE[path] = Coefficients.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return PRIOR
    return _COEFF_CACHE[path]


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Part:
    key: str  # stable id (JSON)
    label: str  # words for people
    gib: float
    group: str  # weights | network | activations | overhead


@dataclass(frozen=True)
class Phase:
    name: str  # cache_latents | cache_text_encoders | training
    label: str
    parts: tuple[Part, ...]

    @property
    def gib(self) -> float:
        return sum(p.gib for p in self.parts)

    def group(self, group: str) -> float:
        return sum(p.gib for p in self.parts if p.group == group)


@dataclass(frozen=True)
class Estimate:
    shape: TrainShape
    phases: tuple[Phase, ...]
    notes: tuple[str, ...] = ()

    @property
    def peak(self) -> Phase:
        return max(self.phases, key=lambda p: p.gib)

    @property
    def peak_gib(self) -> float:
        return self.peak.gib

    @property
    def training(self) -> Phase:
        return next(p for p in self.phases if p.name == "training")

    @property
    def setup_gib(self) -> float:
        """Peak before the first step: the caching phases, or the training phase's resident part."""
        t = self.training
        return max([p.gib for p in self.phases if p.name != "training"] + [t.gib - t.group("activations")])

    def breakdown(self) -> dict[str, float]:
        """The training phase by group, and the largest caching phase."""
        t = self.training
        caching = [p.gib for p in self.phases if p.name != "training"]
        return {
            "weights": round(t.group("weights"), 2),
            "network_optimizer": round(t.group("network"), 2),
            "activations": round(t.group("activations"), 2),
            "overhead": round(t.group("overhead"), 2),
            "training_phase": round(t.gib, 2),
            "caching_phase": round(max(caching), 2) if caching else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_gib": round(self.peak_gib, 2),
            "peak_phase": self.peak.name,
            "config": self.shape.as_dict(),
            "breakdown": self.breakdown(),
            "phases": [
                {
                    "name": p.name,
                    "label": p.label,
                    "gib": round(p.gib, 2),
                    "parts": {part.key: round(part.gib, 3) for part in p.parts},
                }
                for p in self.phases
            ],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Terms:
    """The estimate with the fitted coefficients left out: what calibration needs."""

    fixed: dict[str, list[Part]]  # phase → parts not depending on coefficients (overhead excluded)
    act_unit: float  # denoiser activations in GiB per (GiB-per-megapixel coefficient)
    gc: bool
    other_act: list[Part]  # activation-like parts added to the denoiser's
    grads: float  # GiB of gradients (all alive at the end of backward, some during it)
    vae_encode: float  # per-step VAE encode working set (uncached latents)
    notes: list[str]


def _bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def network_params(s: TrainShape, a: Arch) -> float:
    p = s.dim * a.lora_io * NETWORK_PARAM_FACTOR.get(s.network_kind, 1.0)
    if s.conv_dim:
        p += s.conv_dim * a.conv_io * NETWORK_PARAM_FACTOR.get(s.network_kind, 1.0)
    if not s.unet_only:
        p += s.dim * a.te_lora_io
    return p


def optimizer_state_bytes(optimizer: str, params: float, param_bytes: int, dim: int) -> float:
    if optimizer in _STATE_BYTES_8BIT:
        return params * _STATE_BYTES_8BIT[optimizer]
    if optimizer == "adafactor":
        # factored second moment: rows + columns of each (rank × fan) matrix, i.e. params / rank each
        return 2 * params / max(dim, 1) * 4
    return params * _STATE_SLOTS.get(optimizer, 2) * param_bytes


@lru_cache(maxsize=4096)
def _terms(s: TrainShape) -> _Terms:
    fam = families.get(s.family)
    a = fam.arch
    wb = _bytes(s.precision)
    base_b = 1 if s.fp8_base else wb
    vae_b = 4 if (s.no_half_vae or s.precision == "fp32") else 2
    notes: list[str] = []
    fixed: dict[str, list[Part]] = {}

    def gib(n_bytes: float) -> float:
        return n_bytes / GIB

    vae_encode_one = VAE_ENCODE_GIB_PER_MPIX * s.mpix * vae_b / 2
    if s.cache_latents:
        fixed["cache_latents"] = [
            Part("vae_weights", f"VAE ({'fp32' if vae_b == 4 else '16-bit'})", gib(a.vae_params * vae_b), "weights"),
            Part("vae_encode", "VAE encode, one image", vae_encode_one, "activations"),
        ]
    te_total = sum(p for _, p in a.text_encoder_params)
    if s.cache_text_encoder_outputs:
        names = " + ".join(n for n, _ in a.text_encoder_params)
        fixed["cache_text_encoders"] = [
            Part("text_encoders", f"text encoders {names} (16-bit)", gib(te_total * wb), "weights"),
            Part("encode", "encoding captions", TE_CACHE_ACT_GIB, "activations"),
        ]
        if "t5xxl" in dict(a.text_encoder_params):
            notes.append("caching text-encoder outputs puts T5-XXL (8.9 GiB in 16-bit) on the GPU for a while")

    train: list[Part] = []
    swapped, swapped_params = 0, 0.0
    if s.blocks_to_swap and fam.swap is not None:
        swapped = fam.swap.blocks(s.blocks_to_swap)
        swapped_params = fam.swap.params(swapped)
    elif s.blocks_to_swap:
        notes.append(f"blocks_to_swap is ignored: sd-scripts cannot swap {s.family} blocks")
    resident = a.denoiser_params - swapped_params
    label = fam.denoiser_label
    dtype = "fp8" if s.fp8_base else ("fp32" if wb == 4 else "16-bit")
    extra = f", {swapped} of {a.depth} blocks on the CPU" if swapped else ""
    train.append(Part("denoiser_weights", f"{label} ({dtype}{extra})", gib(resident * base_b), "weights"))
    if not s.cache_text_encoder_outputs:
        te_b = 1 if s.fp8_base else wb
        train.append(Part("text_encoder_weights", "text encoders on the GPU", gib(te_total * te_b), "weights"))
    if not s.cache_latents:
        train.append(Part("vae_weights", "VAE on the GPU (latents not cached)", gib(a.vae_params * vae_b), "weights"))

    params = network_params(s, a)
    pb = 2 if s.full_bf16 else 4
    train.append(Part("network_params", f"network: {params / 1e6:.0f} M params", gib(params * pb), "network"))
    states = optimizer_state_bytes(s.optimizer, params, pb, s.dim)
    train.append(Part("optimizer_states", f"{s.optimizer} states", gib(states), "network"))
    grads = gib(params * pb)

    act_scale = s.batch_size * s.mpix * (wb / 2)
    other: list[Part] = []
    keep = 1.0
    if s.gradient_checkpointing:
        keep = GC_KEEPS_ONE_BLOCK
    bottleneck = a.lora_token_width * s.dim * 2 * s.batch_size * s.mpix * (wb / 2)
    if s.conv_dim:
        bottleneck += sum(c.token_width for c in a.convs) * s.conv_dim * 2 * s.batch_size * s.mpix
    if bottleneck:
        other.append(
            Part("lora_bottleneck", "LoRA down-projections kept for backward", gib(bottleneck) * keep, "activations")
        )
    if s.network_kind in LYCORIS_KINDS:
        rebuilt = (a.adapted_weight + (a.conv_weight if s.conv_dim else 0)) * wb
        other.append(
            Part("lycoris_rebuilt", "LyCORIS rebuilt weights kept for backward", gib(rebuilt) * keep, "activations")
        )
        notes.append("LyCORIS: rebuilt-weight memory is modelled from the code and one field-notes run (LoCon)")
    if s.fp8_base:
        upcast = resident * wb
        other.append(
            Part("fp8_upcast", "16-bit copies of fp8 weights kept for backward", gib(upcast) * keep, "activations")
        )
        notes.append(
            "fp8_base: not measured here; without gradient checkpointing autocast keeps a 16-bit copy of each "
            "fp8 weight for the backward pass, so fp8 saves memory mainly together with GC"
        )
    if s.attention == "none":
        quad = 0.0
        for heads, tok_per_mpix, extra_tok, layers in a.attentions:
            t = tok_per_mpix * s.mpix + extra_tok
            quad += layers * heads * t * t * wb * 2  # scores + probabilities
        other.append(
            Part(
                "attention_matrices",
                "attention matrices (attention: none)",
                gib(quad * s.batch_size) * keep,
                "activations",
            )
        )
        notes.append("attention: none stores tokens² attention matrices; use sdpa")
    if not s.unet_only:
        other.append(
            Part(
                "text_encoder_act", "text-encoder activations", TE_TRAIN_ACT_GIB_PER_IMAGE * s.batch_size, "activations"
            )
        )
    vae_encode = vae_encode_one * s.batch_size if not s.cache_latents else 0.0
    fixed["training"] = train
    return _Terms(fixed, act_scale, s.gradient_checkpointing, other, grads, vae_encode, notes)


PHASE_LABELS = {
    "cache_latents": "caching latents (VAE)",
    "cache_text_encoders": "caching text-encoder outputs",
    "training": "training",
}


def estimate(shape: TrainShape, coefficients: Coefficients | None = None) -> Estimate:
    c = coefficients or load_coefficients()
    t = _terms(shape)
    phases: list[Phase] = []
    overhead = Part("overhead", "CUDA context + allocator", c.overhead_gib, "overhead")
    for name in ("cache_latents", "cache_text_encoders"):
        if name in t.fixed:
            phases.append(Phase(name, PHASE_LABELS[name], (*t.fixed[name], overhead)))
    den = t.act_unit * c.activation(shape.family, t.gc)
    label = "activations" + (" (gradient checkpointing)" if t.gc else "")
    act_parts = [Part("denoiser_act", label, den, "activations"), *t.other_act]
    if t.grads:
        act_parts.append(Part("gradients", "gradients alive during backward", c.grad_overlap * t.grads, "activations"))
    act_sum = sum(p.gib for p in act_parts)
    step = max(act_sum, t.grads, t.vae_encode)
    if step > act_sum:  # all gradients (end of backward) or the VAE encode set the step's peak instead
        key, text = (
            ("gradients", "gradients (end of backward)") if t.grads >= t.vae_encode else ("vae_encode", "VAE encode")
        )
        act_parts = [Part(key, text, step, "activations")]
    phases.append(Phase("training", PHASE_LABELS["training"], (*t.fixed["training"], *act_parts, overhead)))
    return Estimate(shape, tuple(phases), tuple(t.notes))


def predict_peak(shape: TrainShape, coefficients: Coefficients) -> float:
    return estimate(shape, coefficients).peak_gib
