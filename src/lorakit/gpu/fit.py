# Over ~400 lines because: the pure fit over one option space (no NVML: gpu/guard.precheck feeds it).
"""Does a config fit a GPU, and what is the cheapest change that makes it fit (or run fastest)?

Verdict, with the estimator's ±10 % accuracy as the margin (``MARGIN``):

- ``fits``: estimate × 1.10 ≤ budget — fits even if the estimate is 10 % low;
- ``tight``: estimate × 0.90 ≤ budget < estimate × 1.10 — inside the estimator's error: may fit;
- ``does-not-fit``: budget < estimate × 0.90 — clearly does not fit (``lorakit train`` refuses).

Suggestions: every combination of the memory savers below is estimated; those that fit are kept
when no smaller set of the same changes fits too, and ranked by throughput cost (the images/s
lost, from the speed model in ``lorakit.gpu.throughput``). A lower resolution changes what the LoRA
learns, so it is ranked after the changes that keep the training the same, and only listed when
nothing else fits or when it costs less speed than the best of those. Savers: turn on
gradient checkpointing, lower the batch (same image visits), 8-bit optimizer states, full_bf16,
fp8 base, block swap (SD 3.5), cache latents / text-encoder outputs, lower resolution.

Batch changes keep the image visits (epochs) the same: steps scale by old/new batch (max_steps
and warmup_steps too, when set). Learning-rate rule: Adam-family, Lion and Adafactor with a fixed
LR: LR × √(new batch / old batch); SGD: LR × new/old (linear); Prodigy and DAdaptation (adaptive):
unchanged — they find the step size themselves.

Speed fit (``fastest``): every combination of batch size (1…64), gradient checkpointing,
precision (fp16 → bf16 where the card has it), full_bf16, fp8 base, latents in memory instead of
on disk and dataloader workers is estimated; of those that fit, the one with the highest expected
images/s (``lorakit.gpu.throughput``, which extrapolates with a stated uncertainty rather than
refusing; a batch beyond the measured ones counts at the pessimistic end of its extra
uncertainty, so a measured config is not displaced by a guess that is only a little faster) wins;
within 2 % of the best the smallest batch wins, then the fewest changes (it changes
the training least). Multi-concept datasets stay at batch 1: balanced multi-concept training wants
batch 1.
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lorakit import families
from lorakit.dataset.plan import StepsMath
from lorakit.gpu.estimate import (
    ADAPTIVE_OPTIMIZERS,
    Estimate,
    TrainShape,
    estimate,
)
from lorakit.gpu.throughput import SpeedModel, SpeedTable, load_speed_table

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec
    from lorakit.dataset.plan import DatasetPlan
    from lorakit.errors import ConfigError
    from lorakit.gpu.cards import Card
    from lorakit.gpu.nvml import GpuInfo

Verdict = Literal["fits", "tight", "does-not-fit", "skipped"]
MARGIN = 0.10
FASTEST_TIE = 0.02
FASTEST_BATCHES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64)
LOWER_RESOLUTIONS = (896, 768, 640, 512)
MAX_SUGGESTIONS = 5  # changes that keep the training the same
MAX_RESULT_CHANGING = 2  # lower resolutions, listed after those
EIGHT_BIT_OF = {"adamw": "adamw8bit", "lion": "lion8bit"}


def verdict(estimate_gib: float, budget_gib: float) -> Verdict:
    if estimate_gib * (1 + MARGIN) <= budget_gib:
        return "fits"
    if estimate_gib * (1 - MARGIN) <= budget_gib:
        return "tight"
    return "does-not-fit"


@dataclass(frozen=True)
class Budget:
    """How much GPU memory the run may use, and where that figure comes from."""

    gib: float
    source: str  # words: "GPU 0 (NVIDIA H200): free memory" or "--vram 24 GiB"
    gpu_name: str | None = None
    total_gib: float | None = None
    gpu: GpuInfo | None = None

    @classmethod
    def from_gpu(cls, info: GpuInfo) -> Budget:
        return cls(
            info.free_gib,
            f"GPU {info.index} ({info.name}): {info.free_gib:.1f} GiB free of {info.total_gib:.1f} GiB",
            info.name,
            info.total_gib,
            info,
        )

    @classmethod
    def from_vram(cls, gib: float, gpu_name: str | None = None) -> Budget:
        return cls(gib, f"--vram {gib:g} GiB" + (f" ({gpu_name})" if gpu_name else ""), gpu_name, gib)

    @classmethod
    def on_gpu(cls, gib: float, info: GpuInfo) -> Budget:
        """``--vram X`` on a machine with a GPU: a budget on this GPU (its speed data)."""
        gib = min(gib, info.free_gib)
        return cls(
            gib,
            f"--vram {gib:g} GiB on GPU {info.index} ({info.name}, {info.free_gib:.1f} GiB free)",
            info.name,
            info.total_gib,
            info,
        )

    @classmethod
    def for_card(cls, card: Card, gib: float | None = None) -> Budget:
        """``--card NAME`` (and ``--vram X``): another card, by the card table."""
        if gib is None:
            return cls(
                card.usable_gib,
                f"--card {card.name}: {card.usable_gib:.1f} GiB ({card.memory_gib:.1f} GiB less the CUDA context)",
                card.name,
                card.memory_gib,
            )
        return cls(gib, f"--vram {gib:g} GiB on a {card.name}", card.name, card.memory_gib)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gib": round(self.gib, 2), "source": self.source}
        if self.gpu is not None:
            out["gpu"] = self.gpu.to_json()
        return out


@dataclass(frozen=True)
class RunFacts:
    """What the changes need beyond the memory shape: LRs, schedule length, the dataset."""

    optimizer: str = "adamw8bit"
    lr: float = 1e-4
    unet_lr: float | None = None
    text_encoder_lr: float | None = None
    warmup_steps: int = 0
    epochs: int | None = 10
    max_steps: int | None = None
    visits_per_epoch: int | None = None  # images × repeats, None when no dataset was given
    concepts: int | None = None
    shuffle_caption: bool = False
    n_gpus: int = 1  # data-parallel GPUs: each takes a batch per step


def run_facts(spec: TrainSpec, dataset: DatasetPlan | None = None) -> RunFacts:
    o, t = spec.optimizer, spec.training
    return RunFacts(
        optimizer=o.name,
        lr=o.lr,
        unet_lr=o.unet_lr,
        text_encoder_lr=o.text_encoder_lr,
        warmup_steps=o.warmup_steps,
        epochs=t.epochs,
        max_steps=t.max_steps,
        # what one epoch feeds the model: regularization samples count like train samples
        visits_per_epoch=dataset.samples_per_epoch if dataset is not None else None,
        concepts=len([c for c in dataset.concepts if c.images]) if dataset is not None else None,
        shuffle_caption=t.shuffle_caption,
        n_gpus=len(t.gpus or [0]),
    )


def lr_rule(optimizer: str) -> str:
    if optimizer in ADAPTIVE_OPTIMIZERS:
        return f"{optimizer} is adaptive: the LR stays as it is"
    if optimizer == "sgd":
        return "SGD: LR × new batch / old batch (linear rule)"
    return "LR × √(new batch / old batch) (square-root rule for Adam-type optimizers)"


def lr_factor(optimizer: str, old_batch: int, new_batch: int) -> float:
    if optimizer in ADAPTIVE_OPTIMIZERS or old_batch == new_batch:
        return 1.0
    if optimizer == "sgd":
        return new_batch / old_batch
    return math.sqrt(new_batch / old_batch)


def _fmt_lr(x: float) -> float:
    return float(f"{x:.3g}")


# TrainShape attribute → the spec key it comes from (tests/core/test_optimizer_table.py checks
# every entry against TrainShape and the schema)
SHAPE_SPEC_KEYS: dict[str, str] = {
    "gradient_checkpointing": "training.gradient_checkpointing",
    "full_bf16": "training.full_bf16",
    "fp8_base": "training.fp8_base",
    "cache_latents": "training.cache_latents",
    "cache_text_encoder_outputs": "training.cache_text_encoder_outputs",
    "optimizer": "optimizer.name",
    "blocks_to_swap": "training.blocks_to_swap",
    "precision": "training.precision",
    "latents_on_disk": "training.cache_latents_to_disk",
    "dataloader_workers": "training.dataloader_workers",
}


def setting_changes(old: TrainShape, new: TrainShape, facts: RunFacts) -> dict[str, Any]:
    """The spec keys (for --set / --apply) that turn ``old`` into ``new``, LR and steps included."""
    out: dict[str, Any] = {}
    for attr, key in SHAPE_SPEC_KEYS.items():
        if getattr(old, attr) != getattr(new, attr):
            out[key] = getattr(new, attr)
    if (old.width, old.height) != (new.width, new.height):
        out["training.resolution"] = new.width if new.width == new.height else [new.width, new.height]
    if old.batch_size != new.batch_size:
        out["training.batch_size"] = new.batch_size
        f = lr_factor(facts.optimizer, old.batch_size, new.batch_size)
        if f != 1.0:
            out["optimizer.lr"] = _fmt_lr(facts.lr * f)
            if facts.unet_lr is not None:
                out["optimizer.unet_lr"] = _fmt_lr(facts.unet_lr * f)
            if facts.text_encoder_lr:
                out["optimizer.text_encoder_lr"] = _fmt_lr(facts.text_encoder_lr * f)
        scale = old.batch_size / new.batch_size
        if facts.max_steps is not None:
            out["training.max_steps"] = max(1, math.ceil(facts.max_steps * scale))
        if facts.warmup_steps:
            out["optimizer.warmup_steps"] = max(1, round(facts.warmup_steps * scale))
    return out


def describe_changes(old: TrainShape, new: TrainShape, facts: RunFacts) -> list[str]:
    words: list[str] = []
    if new.gradient_checkpointing != old.gradient_checkpointing:
        words.append("gradient checkpointing " + ("on" if new.gradient_checkpointing else "off"))
    if new.batch_size != old.batch_size:
        f = lr_factor(facts.optimizer, old.batch_size, new.batch_size)
        lr = "" if f == 1.0 else f", LR {facts.lr:g} → {_fmt_lr(facts.lr * f):g}"
        words.append(f"batch {old.batch_size} → {new.batch_size} (same image visits{lr})")
    if new.optimizer != old.optimizer:
        words.append(f"optimizer {old.optimizer} → {new.optimizer} (8-bit states)")
    if new.precision != old.precision:
        words.append(f"precision {old.precision} → {new.precision}")
    if new.full_bf16 != old.full_bf16:
        words.append("full_bf16 " + ("on" if new.full_bf16 else "off"))
    if new.fp8_base != old.fp8_base:
        words.append("fp8 base model " + ("on" if new.fp8_base else "off"))
    if new.blocks_to_swap != old.blocks_to_swap:
        words.append(f"swap {new.blocks_to_swap} of {families.get(new.family).arch.depth} blocks to the CPU")
    if new.cache_latents != old.cache_latents:
        words.append("cache latents (no colour/crop augmentation)")
    if new.cache_text_encoder_outputs != old.cache_text_encoder_outputs:
        words.append("cache text-encoder outputs")
    if new.latents_on_disk != old.latents_on_disk:
        words.append("cached latents " + ("on disk" if new.latents_on_disk else "kept in memory (not on disk)"))
    if new.dataloader_workers != old.dataloader_workers:
        words.append(f"dataloader workers {old.dataloader_workers} → {new.dataloader_workers}")
    if (new.width, new.height) != (old.width, old.height):
        words.append(f"resolution {old.width}x{old.height} → {new.width}x{new.height} (changes what the LoRA learns)")
    return words


@dataclass(frozen=True)
class Option:
    """One candidate config: its estimate, verdict and speed."""

    shape: TrainShape
    changes: dict[str, Any]
    words: tuple[str, ...]
    estimate_gib: float
    peak_phase: str
    verdict: Verdict
    images_per_s: float
    throughput_cost: float  # share of images/s lost vs the current config (negative: faster)
    changes_result: bool  # lower resolution: a different training, not the same one cheaper
    uncertainty: float = 0.0  # relative uncertainty of images_per_s (the speed model's)

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "words": list(self.words),
            "estimate_gib": round(self.estimate_gib, 2),
            "peak_phase": self.peak_phase,
            "verdict": self.verdict,
            "images_per_s": round(self.images_per_s, 2),
            "throughput_cost": round(self.throughput_cost, 3),
            "changes_result": self.changes_result,
            "uncertainty": round(self.uncertainty, 2),
        }

    def overrides(self) -> list[str]:
        """The changes as ``key=value`` overrides (what ``--set`` takes, PlanRequest.overrides)."""
        return [f"{k}={_yaml_scalar(v)}" for k, v in self.changes.items()]

    def set_args(self) -> list[str]:
        """The changes as command-line arguments: ``["--set", "key=value", ...]``."""
        return [arg for o in self.overrides() for arg in ("--set", o)]

    def set_text(self) -> str:
        """``set_args`` shell-quoted: safe to paste."""
        return shlex.join(self.set_args())


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True)
class SpeedPlan:
    """The fastest config that fits, against the current one."""

    option: Option
    current_images_per_s: float
    current_fits: bool
    steps_before: int | None
    steps_after: int | None
    seconds_before: float | None
    seconds_after: float | None
    visits: int | None
    lr_rule: str
    notes: tuple[str, ...] = ()

    @property
    def speedup(self) -> float:
        return self.option.images_per_s / self.current_images_per_s

    def to_json(self) -> dict[str, Any]:
        return {
            **self.option.to_json(),
            "current_images_per_s": round(self.current_images_per_s, 2),
            "current_fits": self.current_fits,
            "speedup": round(self.speedup, 2),
            "steps_before": self.steps_before,
            "steps_after": self.steps_after,
            "seconds_before": None if self.seconds_before is None else round(self.seconds_before),
            "seconds_after": None if self.seconds_after is None else round(self.seconds_after),
            "image_visits": self.visits,
            "lr_rule": self.lr_rule,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class FitReport:
    verdict: Verdict
    estimate: Estimate | None = None
    budget: Budget | None = None
    suggestions: tuple[Option, ...] = ()
    fastest: SpeedPlan | None = None
    speed_basis: str = ""
    current_images_per_s: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.verdict == "skipped"

    @property
    def blocking(self) -> bool:
        """Clearly does not fit: ``lorakit train`` refuses unless --force."""
        return self.verdict == "does-not-fit"

    def refusal(self) -> ConfigError | None:
        """The error ``lorakit train`` raises (exit 2) when the config clearly does not fit."""
        if not self.blocking or self.estimate is None or self.budget is None:
            return None
        from lorakit.errors import ConfigError

        lines = [
            f"the estimated peak GPU memory, {self.estimate.peak_gib:.1f} GiB ({self.estimate.peak.label}), "
            f"is far above what is available: {self.budget.source}"
        ]
        if self.suggestions:
            lines.append("cheapest changes that fit, by throughput cost:")
            for i, s in enumerate(self.suggestions, 1):
                lines.append(f"  {i}. {'; '.join(s.words)} → {s.estimate_gib:.1f} GiB  [{s.set_text()}]")
        fix = (
            "apply one of these (--set ..., or lorakit vram-check ... --apply fitted.yaml), "
            "or pass --force to launch anyway"
        )
        return ConfigError(["\n".join(lines)], fix=fix)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "margin": MARGIN,
            "budget": None if self.budget is None else self.budget.to_json(),
            "estimate": None if self.estimate is None else self.estimate.to_json(),
            "images_per_s": None if self.current_images_per_s is None else round(self.current_images_per_s, 2),
            "speed_basis": self.speed_basis,
            "suggestions": [s.to_json() for s in self.suggestions],
            "fastest": None if self.fastest is None else self.fastest.to_json(),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------


def _option(
    current: TrainShape,
    new: TrainShape,
    facts: RunFacts,
    budget: Budget,
    speed: SpeedModel,
    est: Callable[[TrainShape], Estimate] = estimate,
) -> Option:
    e = est(new)
    base_speed = speed.images_per_s(current)
    ips = speed.images_per_s(new)
    return Option(
        shape=new,
        changes=setting_changes(current, new, facts),
        words=tuple(describe_changes(current, new, facts)),
        estimate_gib=e.peak_gib,
        peak_phase=e.peak.name,
        verdict=verdict(e.peak_gib, budget.gib),
        images_per_s=ips,
        throughput_cost=1 - ips / base_speed,
        changes_result=(new.width, new.height) != (current.width, current.height),
        uncertainty=speed.uncertainty(new),
    )


def _axes(s: TrainShape, facts: RunFacts) -> list[list[dict[str, Any]]]:
    """Each memory saver as a list of alternatives (the first: leave as is)."""
    keep: dict[str, Any] = {}
    axes: list[list[dict[str, Any]]] = []
    if not s.gradient_checkpointing:
        axes.append([keep, {"gradient_checkpointing": True}])
    if s.batch_size > 1:
        lower: list[dict[str, Any]] = [keep]
        b = s.batch_size
        while b > 1:
            b = max(1, b // 2)
            lower.append({"batch_size": b})
        axes.append(lower)
    if s.optimizer in EIGHT_BIT_OF:
        axes.append([keep, {"optimizer": EIGHT_BIT_OF[s.optimizer]}])
    if s.precision == "bf16" and not s.full_bf16:
        axes.append([keep, {"full_bf16": True}])
    if s.precision != "fp32" and not s.fp8_base:
        axes.append([keep, {"fp8_base": True}])
    swap = families.get(s.family).swap
    if swap is not None:
        steps = [n for n in swap.steps() if n > s.blocks_to_swap]
        axes.append([keep, *({"blocks_to_swap": n} for n in steps)])
    if not s.cache_latents:
        axes.append([keep, {"cache_latents": True}])
    if not s.cache_text_encoder_outputs and s.unet_only and not facts.shuffle_caption:
        axes.append([keep, {"cache_text_encoder_outputs": True}])
    res = [r for r in LOWER_RESOLUTIONS if r < min(s.width, s.height)]
    if res:
        axes.append([keep, *({"width": r, "height": r} for r in res)])
    return axes


def _combos(s: TrainShape, facts: RunFacts) -> Iterable[TrainShape]:
    for picks in itertools.product(*_axes(s, facts)):
        changes: dict[str, Any] = {}
        for p in picks:
            changes |= p
        if changes:
            yield s.with_(**changes)


def _is_sub(small: dict[str, Any], big: dict[str, Any]) -> bool:
    return small != big and all(k in big and big[k] == v for k, v in small.items())


def suggestions(
    current: TrainShape, facts: RunFacts, budget: Budget, speed: SpeedModel, want: Verdict = "fits"
) -> list[Option]:
    opts = [_option(current, s, facts, budget, speed) for s in _combos(current, facts)]
    good = [o for o in opts if o.verdict == want]
    # keep minimal sets: drop an option when a subset of its changes already reaches the verdict
    raw = {id(o): _raw_changes(current, o.shape) for o in good}
    minimal = [o for o in good if not any(_is_sub(raw[id(p)], raw[id(o)]) for p in good)]
    # of options changing the same settings, keep the gentlest: the highest resolution, then the cheapest
    by_keys: dict[frozenset[str], Option] = {}
    for o in sorted(minimal, key=lambda o: (-min(o.shape.width, o.shape.height), o.throughput_cost)):
        by_keys.setdefault(frozenset(raw[id(o)]), o)
    minimal = list(by_keys.values())
    minimal.sort(key=lambda o: (o.changes_result, round(o.throughput_cost, 3), len(o.words), o.estimate_gib))
    same = [o for o in minimal if not o.changes_result][:MAX_SUGGESTIONS]
    different = [o for o in minimal if o.changes_result]
    if same:  # a lower resolution only when it costs less speed than keeping the training the same
        different = [o for o in different if o.throughput_cost < same[0].throughput_cost]
    return same + different[:MAX_RESULT_CHANGING]


def _raw_changes(old: TrainShape, new: TrainShape) -> dict[str, Any]:
    return {k: v for k, v in new.as_dict().items() if old.as_dict()[k] != v}


def _steps(facts: RunFacts, batch: int, old_batch: int) -> tuple[int | None, int | None]:
    """(steps, image visits) of the whole run at ``batch``, keeping the visits of ``old_batch``."""
    n = max(1, facts.n_gpus)
    if facts.max_steps is not None:  # the same image visits: max_steps scaled by the batch
        visits = facts.max_steps * old_batch * n
        return math.ceil(visits / (batch * n)), visits
    if facts.visits_per_epoch is not None and facts.epochs is not None:
        steps = StepsMath.compute(facts.visits_per_epoch, batch, facts.epochs, None, n)  # the one formula
        return steps.total_steps, facts.visits_per_epoch * facts.epochs
    return None, None


def _precisions(current: TrainShape, bf16_ok: bool) -> list[dict[str, Any]]:
    """precision / full_bf16 / fp8 base variants --fastest tries (fp32 stays fp32)."""
    if current.precision == "fp32":
        return [{}]
    out: list[dict[str, Any]] = [{"precision": current.precision, "full_bf16": current.full_bf16}]
    if bf16_ok:
        if current.precision != "bf16":
            out.append({"precision": "bf16", "full_bf16": False})
        out.append({"precision": "bf16", "full_bf16": True})
    return [p | {"fp8_base": f8} for p in out for f8 in (False, True)]


def _memory_key(s: TrainShape) -> TrainShape:
    """The settings that do not change memory, set to one value (estimates are shared)."""
    return s.with_(latents_on_disk=False, dataloader_workers=2)


def fastest(
    current: TrainShape, facts: RunFacts, budget: Budget, speed: SpeedModel, *, bf16_ok: bool = True
) -> SpeedPlan | None:
    notes: list[str] = []
    batches: Sequence[int] = FASTEST_BATCHES
    if facts.concepts is not None and facts.concepts > 1:
        batches = (1,)
        notes.append(
            f"the dataset has {facts.concepts} concepts: batch stays 1 (balanced multi-concept training wants batch 1)"
        )
    elif facts.visits_per_epoch is not None:
        capped = [b for b in batches if b <= max(1, facts.visits_per_epoch)]
        if len(capped) < len(batches):
            notes.append(f"batches above {facts.visits_per_epoch} (images × repeats per epoch) are not tried")
        batches = capped
    if facts.visits_per_epoch is None and facts.max_steps is None:
        notes.append("no dataset given (--data): time shown per 1000 image visits")
    latents = [current.latents_on_disk] + ([False] if current.latents_on_disk else [])
    workers = [current.dataloader_workers] + ([2] if current.dataloader_workers == 0 else [])
    swaps = {0, current.blocks_to_swap}
    family_swap = families.get(current.family).swap
    if family_swap is not None:  # block swap is what fits Flux / SD 3.5 on small cards
        swaps |= set(family_swap.steps())
    cache: dict[TrainShape, Estimate] = {}

    def est(s: TrainShape) -> Estimate:
        key = _memory_key(s)
        if key not in cache:
            cache[key] = estimate(key)
        return cache[key]

    options: list[Option] = []
    for b, gc, prec, swap, disk, nw in itertools.product(
        batches, (False, True), _precisions(current, bf16_ok), sorted(swaps), latents, workers
    ):
        shape = current.with_(
            batch_size=b,
            gradient_checkpointing=gc,
            blocks_to_swap=swap,
            latents_on_disk=disk,
            dataloader_workers=nw,
            **prec,
        )
        options.append(_option(current, shape, facts, budget, speed, est))
    fitting = [o for o in options if o.verdict == "fits"]
    if not fitting:
        return None

    def score(o: Option) -> float:  # extrapolated batches count at their pessimistic end
        return o.images_per_s * (1 - max(0.0, o.uncertainty - speed.spread))

    best = max(score(o) for o in fitting)
    near = [o for o in fitting if score(o) >= best * (1 - FASTEST_TIE)]
    choice = min(near, key=lambda o: (o.shape.batch_size, len(o.words), -o.images_per_s))
    if choice.shape.batch_size > speed.max_batch:
        notes.append(
            f"batch {choice.shape.batch_size} is beyond the batches measured for this speed model "
            f"(up to {speed.max_batch}): extrapolated, ±{choice.uncertainty:.0%}"
        )
    cur_ips = speed.images_per_s(current)
    steps_before, visits = _steps(facts, current.batch_size, current.batch_size)
    steps_after, _ = _steps(facts, choice.shape.batch_size, current.batch_size)
    if steps_before is not None and steps_after is not None:
        t_before: float | None = steps_before * speed.s_per_step(current)
        t_after: float | None = steps_after * speed.s_per_step(choice.shape)
    else:
        t_before = 1000 / cur_ips
        t_after = 1000 / choice.images_per_s
    cur_est = est(current).peak_gib
    return SpeedPlan(
        option=choice,
        current_images_per_s=cur_ips,
        current_fits=verdict(cur_est, budget.gib) == "fits",
        steps_before=steps_before,
        steps_after=steps_after,
        seconds_before=t_before,
        seconds_after=t_after,
        visits=visits,
        lr_rule=lr_rule(facts.optimizer),
        notes=tuple(notes),
    )


def check_fit(
    shape: TrainShape,
    budget: Budget,
    facts: RunFacts | None = None,
    *,
    want_fastest: bool = False,
    speed_table: SpeedTable | None = None,
) -> FitReport:
    """The whole answer for one config and one budget. Pure: GPU facts come in as ``budget``."""
    facts = facts or RunFacts(optimizer=shape.optimizer)
    table = speed_table or load_speed_table()
    speed, basis = table.model_for(budget.gpu_name, shape.family, budget.total_gib)
    from lorakit.gpu.cards import find

    card = find(budget.gpu_name)
    e = estimate(shape)
    v = verdict(e.peak_gib, budget.gib)
    notes = list(e.notes)
    sugg: list[Option] = []
    if v != "fits":
        sugg = suggestions(shape, facts, budget, speed)
        if not sugg:
            sugg = suggestions(shape, facts, budget, speed, want="tight")
            if sugg:
                notes.append("no change fits with the 10 % margin; these come within the estimator's error")
            else:
                notes.append("no combination of the memory savers fits this budget: it needs a GPU with more memory")
    plan = fastest(shape, facts, budget, speed, bf16_ok=card.bf16 if card else True) if want_fastest else None
    return FitReport(
        verdict=v,
        estimate=e,
        budget=budget,
        suggestions=tuple(sugg),
        fastest=plan,
        speed_basis=basis,
        current_images_per_s=speed.images_per_s(shape),
        notes=tuple(notes),
    )


def parse_vram(text: str) -> float:
    """'24GB', '24 GiB', '24g', '24576MiB', '24' → GiB. GB means GiB here: cards sold as
    "24 GB" have 24 GiB."""
    import re

    from lorakit.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = (m.group(2).lower() if m else "") or "gb"
    scale = {"g": 1.0, "gb": 1.0, "gib": 1.0, "m": 1 / 1024, "mb": 1 / 1024, "mib": 1 / 1024}.get(unit)
    if m is None or scale is None or float(m.group(1)) <= 0:
        raise ConfigError(
            [f"--vram {text}: expected a memory size like 24GB, 24GiB or 24576MiB"],
            fix="for example --vram 24GB (GB and GiB both mean GiB here, as cards are sold)",
        )
    return float(m.group(1)) * scale


__all__ = [
    "MARGIN",
    "Budget",
    "FitReport",
    "Option",
    "RunFacts",
    "SpeedPlan",
    "check_fit",
    "fastest",
    "lr_rule",
    "parse_vram",
    "run_facts",
    "suggestions",
    "verdict",
]
