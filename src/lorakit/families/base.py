"""What one model family is: the facts lorakit's rooms ask the registry for instead of testing
a family's name. A family file (families/sdxl.py, families/sd3.py) builds one ``ModelFamily``
(or several that share a file: SD 3.5 medium and large) and families/__init__.py registers it.

Stdlib only: config/ (the schema's closed list, the rules), synth/ (which builder, which
tokenizers; it runs in the trainer's Python) and every room above import this package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorakit.families.arch import Arch
from lorakit.families.comfy import FamilyGraph


@dataclass(frozen=True)
class ModelFile:
    """One model file the family loads: the config key ``model.<key>`` and its sd-scripts flag."""

    key: str  # a key of the schema's `model` section
    flag: str  # sd-scripts flag, without --
    required: bool  # a real run needs it; a dry run shows `<model.key>` in its place


@dataclass(frozen=True)
class OptionFlag:
    """A launch flag only this family takes, set from a config key."""

    key: str  # "section.key" of the schema (e.g. "training.blocks_to_swap")
    flag: str  # sd-scripts flag, without --
    switch: bool  # True: `--flag` when the value is true; False: `--flag=value` when it is set and not 0


@dataclass(frozen=True)
class Swap:
    """sd-scripts' ``--blocks_to_swap`` for this family: the most blocks it accepts and the
    parameters N swapped blocks move to the CPU (a function, since blocks may differ in size)."""

    max_blocks: int
    params: Callable[[int], float]  # N (already ≤ max_blocks) → parameters on the CPU
    conflicts: tuple[str, ...] = ()  # keys of the `training` section sd-scripts refuses together with a swap

    def blocks(self, requested: int) -> int:
        """The blocks actually swapped for a request (sd-scripts' limit applied)."""
        return max(0, min(requested, self.max_blocks))

    def steps(self) -> list[int]:
        """The swap counts vram-check's suggestions and --fastest try: every 4 blocks, and the most."""
        return sorted({*range(4, self.max_blocks + 1, 4), self.max_blocks})


def uniform_swap(arch: Arch, *, keep: int = 2, conflicts: tuple[str, ...] = ()) -> Swap:
    """Swap for alike blocks: sd-scripts asserts ``blocks_to_swap <= depth - keep``."""
    return Swap(arch.depth - keep, lambda n: n * arch.block_params, conflicts)


@dataclass(frozen=True)
class Synth:
    """What ``lorakit synth-model`` builds for the family (lorakit/synth/build.py)."""

    builder: str  # a key of synth.build.BUILDERS
    t5_tokenizer: bool  # the tokenizer cache also needs a T5 tokenizer
    variant: str = ""  # which of the builder's layouts (SD 3.5: "medium", "large")
    options: frozenset[str] = frozenset()  # builder options it takes: "blocks" (reduced depth), "fp8"


@dataclass(frozen=True)
class Estimator:
    """Starting values of the VRAM and speed models (fitted values live in gpu/data/)."""

    act_gib_per_mpix: float  # activations of one image per megapixel, no GC, 16-bit (prior)
    linear_flop_share: float  # share of the forward FLOPs in the adapted linears


@dataclass(frozen=True)
class ModelFamily:
    """Everything lorakit knows about one model family. The rest of the code asks for these
    fields; it never compares a family's name."""

    name: str  # the `model.family` value
    display: str  # short name in tables ("SDXL", "SD3.5 M")
    line: str  # the model line in messages ("SDXL", "SD 3.5")
    script: str  # sd-scripts training script
    lora_module: str  # network module for `network.kind: lora`
    lycoris_kinds: frozenset[str]  # LyCORIS algorithms known to work (lycoris.kohya)
    model_files: tuple[ModelFile, ...]  # in argv order; the first is `checkpoint`
    arch: Arch
    estimator: Estimator
    synth: Synth
    comfy: FamilyGraph | None  # the graph `lorakit try` renders with (None: no workflow yet)
    denoiser_kind: str  # a key of the estimator's gc_keep coefficients ("unet", "mmdit")
    denoiser_label: str  # in the estimate's parts ("U-Net", "MMDiT")
    option_flags: tuple[OptionFlag, ...] = ()  # after the model files, in argv order
    fixed_flags: tuple[tuple[str, str | None], ...] = ()  # always passed (flag, value or None for a switch)
    swap: Swap | None = None  # None: sd-scripts cannot swap this family's blocks
    conv_lora: bool = False  # network.conv_dim adapts conv layers (else it is ignored, with a hint)
    fp16_vae_nan: bool = False  # its VAE overflows in fp16 unless training.no_half_vae
    lora_rank_check: bool = True  # the saved LoRA's down-projections all have rank network.dim
    checkpoint_word: str = ""  # in a checkpoint's file name, picks it among families sharing its script
    measurement_words: tuple[str, ...] = ()  # other spellings of the name in measurement rows
    companions_problem: str = ""  # message when some required files besides the checkpoint are missing
    companions_fix: str = ""

    @property
    def companions(self) -> tuple[ModelFile, ...]:
        """Required files other than the checkpoint (text encoders, an autoencoder)."""
        return tuple(f for f in self.model_files[1:] if f.required)

    def file_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.model_files)
