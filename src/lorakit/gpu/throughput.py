"""Speed model: seconds per training step of a config on any card, from the measured curves.
Over ~400 lines because it is one model: the formula, its fit on the measured rows and the card carry.

One formula for every card (docs/speed-model.md has the derivation and its error on the
measured points)::

    s/step = c0 + extras + batch × work(config) × τ(card) × (ρ with GC, else 1)

- ``c0``: the per-step cost batching spreads (launches, Python, optimizer step, host syncs);
  fitted on the reference card (the H200) and taken as the same on every card (it is host time).
- ``work``: one image's work relative to SDXL 1024², LoRA rank 128: megapixels (plus a quadratic
  attention share ``ATTN_SHARE``) × (2·base FLOPs + 3·LoRA FLOPs of this rank) / the same at
  rank 128, LoRA FLOPs from the adapted layers of the family's ``Arch`` (lorakit/families/).
- ``τ(card)``: seconds per unit of work. Fitted on a card with curves of its own; carried from the
  reference to any other card by published compute and bandwidth:
  ``τ_ref × (α·TFLOPS_ref/TFLOPS + (1−α)·BW_ref/BW) × κ``, α = ``COMPUTE_SHARE``; κ = 1 for
  data-centre cards, and for GeForce/workstation cards the factor that makes the formula meet
  the community figures (RTX 3090 SDXL bs 1, ``field_notes_measurements.json``).
- ``ρ``: gradient checkpointing's recompute factor (fitted).
- ``extras``: fp8 base (cast kernels per module + one read/write of the base weights per pass),
  LyCORIS networks (the weight rebuild measured once, carried by bandwidth), data loading
  without workers (per image, more from disk), fp32 (×2 on the image term).
  Precision fp16 vs bf16 and full_bf16 count as equal: the H200 measured them within noise.

Every answer carries a relative uncertainty instead of a refusal: the fit's scatter (at least the
run-to-run noise, ``RUN_NOISE``) on a measured card, more on carried cards (``±20 %`` anchored,
``±35 %`` not), plus ``±5 %`` per doubling of the batch beyond the measured ones.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lorakit import families
from lorakit.gpu.cards import Card, find, nearest_by_memory, reference
from lorakit.gpu.estimate import DATA_DIR, TrainShape
from lorakit.gpu.measurements import Measurement, load_all, load_file

SPEED_FILE = DATA_DIR / "speed_measurements.json"

REF_MPIX = 1024 * 1024 / 1e6
REF_RANK = 128
ATTN_SHARE = 0.2  # share of SDXL's per-image work at 1024² that grows with tokens² (attention)
COMPUTE_SHARE = 0.85  # α: share of the per-image time that scales with tensor TFLOPS (the rest: bandwidth)
DEFAULT_GC_RATIO = 1.3
FP32_SLOWDOWN = 2.0
FP8_CAST_S = 0.03  # fp8 base: extra cast kernels per adapted module and pass (launch-bound), per step
LOAD_S_PER_IMAGE = {False: 0.004, True: 0.015}  # without dataloader workers: latents in memory / on disk
PCIE_BYTES_PER_S = 25e9
SWAP_HIDDEN = 0.5
RUN_NOISE = 0.12  # the same config measured 0.61–0.78 s/step in one call on the H200
ANCHORED_SPREAD = 0.20
CARRIED_SPREAD = 0.35
UNKNOWN_CARD_SPREAD = 0.50
EXTRAPOLATION_SPREAD = 0.05  # per doubling of the batch beyond the measured ones


def gpu_class(name: str) -> str:
    """The table's name for a GPU name (NVML's or a user's), else the name as given."""
    card = find(name)
    return card.name if card else (name.strip() or "unknown")


# ---------------------------------------------------------------------------------------------
# the work of one image, relative to SDXL 1024² rank 128


def _lora_flops_ratio(family: str, dim: int) -> float:
    """3·LoRA FLOPs / 2·base FLOPs per megapixel (training: the base needs forward + input
    gradients, the LoRA forward + both gradients)."""
    fam = families.get(family)
    a = fam.arch
    base_linear = sum(x.tokens_per_mpix * x.fan_in * x.fan_out * x.count for x in a.linears)
    lora_per_rank = sum(x.tokens_per_mpix * (x.fan_in + x.fan_out) * x.count for x in a.linears)
    if not base_linear:
        return 0.0
    base = base_linear / fam.estimator.linear_flop_share  # adapted linears' share of the forward FLOPs
    return 3 * dim * lora_per_rank / (2 * base)


def base_flops_per_mpix(family: str) -> float:
    """A family's forward multiply-adds per megapixel (adapted linears ÷ their FLOP share): how a
    family without measurements is carried from one with them."""
    fam = families.get(family)
    linear = sum(x.tokens_per_mpix * x.fan_in * x.fan_out * x.count for x in fam.arch.linears)
    return linear / fam.estimator.linear_flop_share


def work(s: TrainShape) -> float:
    """One image's work relative to the same family at 1024², rank 128, no GC."""
    m = s.mpix / REF_MPIX
    res = m * (1 - ATTN_SHARE + ATTN_SHARE * m)
    rank = (1 + _lora_flops_ratio(s.family, s.dim)) / (1 + _lora_flops_ratio(s.family, REF_RANK))
    return res * rank


def _is_lycoris(s: TrainShape) -> bool:
    return s.network_kind != "lora"


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedModel:
    """The speed of one model family on one card."""

    gpu_class: str  # the card's name (or the GPU's own name when it is not in the table)
    family: str
    c0: float  # s per step
    tau: float  # s per unit of work, no GC
    gc_ratio: float
    basis: str
    max_batch: int = 1  # largest batch in the curves behind this model
    spread: float = RUN_NOISE  # relative uncertainty at measured batches
    bandwidth_gbs: float = 4800.0
    lycoris_s: float = 0.0  # LyCORIS weight rebuild per step on this card
    fp8_s: float | None = None  # fp8 base per step when measured (else the assumption below)
    fp8_image: float = 1.0  # fp8 base factor on the per-image time when measured

    # the three numbers of the old per-class fit (tests and docs read them)
    @property
    def u(self) -> float:
        return self.tau / REF_MPIX

    @property
    def v(self) -> float:
        return self.u * self.gc_ratio

    @property
    def batch_limit(self) -> int:
        """Beyond twice the measured batches the answer is extrapolated (said, not refused)."""
        return 2 * self.max_batch

    def per_image_s(self, s: TrainShape) -> float:
        t = work(s) * self.tau * (self.gc_ratio if s.gradient_checkpointing else 1.0)
        if s.precision == "fp32":
            t *= FP32_SLOWDOWN
        elif s.fp8_base:
            t *= self.fp8_image
        return t

    def fixed_s(self, s: TrainShape) -> float:
        t = self.c0
        if s.fp8_base and s.precision != "fp32":
            if self.fp8_s is not None:
                t += self.fp8_s
            else:
                base_bytes = families.get(s.family).arch.denoiser_params * 3  # read fp8, write 16-bit
                t += FP8_CAST_S + 2 * base_bytes / (self.bandwidth_gbs * 1e9)
        if _is_lycoris(s):
            t += self.lycoris_s
        if s.blocks_to_swap:
            swap = families.get(s.family).swap
            if swap is not None:
                swapped_bytes = swap.params(swap.blocks(s.blocks_to_swap)) * (1 if s.fp8_base else 2)
                t += swapped_bytes * 4 / PCIE_BYTES_PER_S * SWAP_HIDDEN
        return t

    def s_per_step(self, s: TrainShape) -> float:
        load = LOAD_S_PER_IMAGE[s.latents_on_disk] if s.dataloader_workers == 0 else 0.0
        return self.fixed_s(s) + s.batch_size * (self.per_image_s(s) + load)

    def images_per_s(self, s: TrainShape) -> float:
        return s.batch_size / self.s_per_step(s)

    def uncertainty(self, s: TrainShape) -> float:
        """Relative uncertainty of ``s_per_step(s)``: the model's, plus extrapolation in batch."""
        extra = 0.0
        if s.batch_size > self.max_batch:
            extra = EXTRAPOLATION_SPREAD * math.log2(s.batch_size / self.max_batch)
        return self.spread + extra


def _lstsq(rows: list[tuple[list[float], float]]) -> list[float] | None:
    """Least squares by the normal equations (tiny systems)."""
    n = len(rows[0][0])
    a = [[sum(x[i] * x[j] for x, _ in rows) for j in range(n)] for i in range(n)]
    b = [sum(x[i] * y for x, y in rows) for i in range(n)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[piv][col]) < 1e-12:
            return None
        a[col], a[piv] = a[piv], a[col]
        b[col], b[piv] = b[piv], b[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(n)]


def _weighted(rows: list[tuple[list[float], float]]) -> list[tuple[list[float], float]]:
    """Rows scaled by 1/y: least squares on relative errors."""
    return [([v / y for v in x], 1.0) for x, y in rows]


def _x(m: Measurement) -> float:
    return m.shape.batch_size * work(m.shape)


def _y(m: Measurement, probe: SpeedModel) -> float:
    """The measured s/step less the modelled extras a plain row does not have (none for plain rows)."""
    assert m.s_per_step is not None
    return m.s_per_step - (probe.fixed_s(m.shape) - probe.c0)


def _fit3(rows: list[Measurement]) -> tuple[float, float, float] | None:
    if len(rows) < 3 or len({m.shape.gradient_checkpointing for m in rows}) < 2:
        return None
    if len({(round(_x(m), 4), m.shape.gradient_checkpointing) for m in rows}) < 3:
        return None
    data = []
    for m in rows:
        gc, x = m.shape.gradient_checkpointing, _x(m)
        assert m.s_per_step is not None
        data.append(([1.0, 0.0 if gc else x, x if gc else 0.0], m.s_per_step))
    sol = _lstsq(_weighted(data))
    if sol is None or sol[1] <= 0 or sol[2] <= 0:
        return None
    if sol[0] < 0:  # no per-step cost visible: through the origin
        sol2 = _lstsq(_weighted([(x[1:], y) for x, y in data]))
        if sol2 is None or min(sol2) <= 0:
            return None
        return 0.0, sol2[0], sol2[1] / sol2[0]
    return sol[0], sol[1], sol[2] / sol[1]


def _fit2(rows: list[Measurement], ratio: float, c0_hint: float | None) -> tuple[float, float, float]:
    data = []
    for m in rows:
        assert m.s_per_step is not None
        data.append(([1.0, _x(m) * (ratio if m.shape.gradient_checkpointing else 1.0)], m.s_per_step))
    if len({round(d[0][1], 6) for d in data}) >= 2:
        sol = _lstsq(_weighted(data))
        if sol is not None and sol[0] >= 0 and sol[1] > 0:
            return sol[0], sol[1], ratio
    c0 = c0_hint or 0.0
    taus = [(y - c0) / x[1] for x, y in data if y > c0]
    if not taus:
        c0, taus = 0.0, [y / x[1] for x, y in data]
    return c0, statistics.median(taus), ratio


def _scatter(model: SpeedModel, rows: Sequence[Measurement]) -> float:
    """RMS relative error of the model on its own rows (at least the run-to-run noise)."""
    errs = [(model.s_per_step(m.shape) - m.s_per_step) / m.s_per_step for m in rows if m.s_per_step]
    rms = math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else 0.0
    return max(RUN_NOISE, rms)


def _plain(s: TrainShape) -> bool:
    """Rows the curves are fitted on: LoRA, 16-bit, no fp8, no block swap, SDPA/xformers."""
    return (
        s.network_kind == "lora"
        and s.precision != "fp32"
        and not s.fp8_base
        and not s.blocks_to_swap
        and s.attention != "none"
    )


def carry_factor(card: Card, ref: Card) -> float:
    """τ(card)/τ(ref) before the anchor correction: compute and bandwidth ratios."""
    return COMPUTE_SHARE * ref.tflops16 / card.tflops16 + (1 - COMPUTE_SHARE) * ref.bandwidth_gbs / card.bandwidth_gbs


@dataclass(frozen=True)
class SpeedTable:
    """Fitted models (per card with curves of its own, per family) and how to carry them."""

    models: dict[tuple[str, str], SpeedModel]  # (card name, family) → fitted on that card's rows
    anchors: dict[str, float]  # card name → κ that meets its community figures
    anchor_rows: dict[str, int]
    reference: str
    anchor_gc: dict[str, float] = field(default_factory=dict)  # card → GC factor its community figures show
    # family without curves → (factor on its FLOPs carry that meets its rows on the reference card, rows)
    flops_anchor: dict[str, tuple[float, int]] = field(default_factory=dict)

    def classes(self) -> list[str]:
        return sorted({c for c, _ in self.models})

    def has_measurements(self, gpu_name: str | None, family: str) -> bool:
        return gpu_name is not None and (gpu_class(gpu_name), family) in self.models

    def consumer_kappa(self) -> float | None:
        ks = [k for name, k in self.anchors.items() if (c := find(name)) is not None and c.consumer_stack]
        return math.exp(statistics.mean(math.log(k) for k in ks)) if ks else None

    def consumer_gc(self) -> float | None:
        rs = [r for name, r in self.anchor_gc.items() if (c := find(name)) is not None and c.consumer_stack]
        return statistics.mean(rs) if rs else None

    def for_card(self, card: Card, family: str) -> tuple[SpeedModel, str]:
        """The model for a card in the table: its own curves, else carried from the reference."""
        own = self.models.get((card.name, family))
        if own is not None:
            return own, f"{card.name} measurements ({own.basis}), ±{own.spread:.0%}"
        ref_model = self.models.get((self.reference, family))
        if ref_model is None:
            return self._by_flops(card, family)
        ref_card = reference()
        kappa, spread, how, gc = 1.0, CARRIED_SPREAD, "", ref_model.gc_ratio
        if card.name in self.anchors:
            kappa, spread = self.anchors[card.name], ANCHORED_SPREAD
            gc = self.anchor_gc.get(card.name, gc)
            how = f", anchored on {self.anchor_rows[card.name]} community figure(s) (×{kappa:.2f})"
        elif card.consumer_stack and (k := self.consumer_kappa()) is not None:
            kappa, gc = k, self.consumer_gc() or gc
            how = f", with the GeForce/workstation factor from the community figures (×{kappa:.2f})"
        f = carry_factor(card, ref_card) * kappa
        bw = ref_card.bandwidth_gbs / card.bandwidth_gbs
        model = replace(
            ref_model,
            gpu_class=card.name,
            tau=ref_model.tau * f,
            gc_ratio=gc,
            basis=f"carried from the {ref_card.name} curves by compute and bandwidth{how}",
            spread=spread,
            bandwidth_gbs=card.bandwidth_gbs,
            lycoris_s=ref_model.lycoris_s * bw,
        )
        return model, f"{card.name}: {model.basis}, ±{spread:.0%}"

    def _by_flops(self, card: Card, family: str) -> tuple[SpeedModel, str]:
        """A family nobody measured yet: the measured family's model on this card, its per-image
        time scaled by the forward FLOPs per megapixel, and a wide uncertainty."""
        known = [f for f in families.NAMES if f != family and (self.reference, f) in self.models]
        if not known:
            raise LookupError(f"no speed data for {family} or any other family")
        base = known[0]
        model, _ = self.for_card(card, base)
        ratio = base_flops_per_mpix(family) / base_flops_per_mpix(base)
        k, n = self.flops_anchor.get(family, (1.0, 0))
        spread = max(model.spread, ANCHORED_SPREAD if n else UNKNOWN_CARD_SPREAD)
        how = (
            f"the {base} model scaled by FLOPs per image (×{ratio:.1f}) and by ×{k:.2f} to meet {n} "
            f"{self.reference} run(s) of {family}"
            if n
            else f"no {family} measurements: the {base} model scaled by FLOPs per image (×{ratio:.1f})"
        )
        model = replace(
            model,
            family=family,
            tau=model.tau * ratio * k,
            fp8_s=None,  # the fp8 cast scales with this family's weights (the bandwidth term)
            spread=spread,
            basis=how,
        )
        return model, f"{card.name}: {model.basis}, ±{spread:.0%}"

    def model_for(self, gpu_name: str | None, family: str, memory_gib: float | None = None) -> tuple[SpeedModel, str]:
        """The speed model for a GPU (NVML's name, or a card name) and family, and where it comes from."""
        card = find(gpu_name)
        if card is not None:
            return self.for_card(card, family)
        if memory_gib is None and gpu_name is None:
            card = reference()
            model, basis = self.for_card(card, family)
            return model, f"no GPU named: {basis}"
        near = nearest_by_memory(memory_gib) if memory_gib else reference()
        model, basis = self.for_card(near, family)
        what = f"{gpu_name} is not in the card table" if gpu_name else f"no GPU here: a {memory_gib:.0f} GiB card"
        model = replace(model, spread=max(model.spread, UNKNOWN_CARD_SPREAD))
        return model, (
            f"{what}: speed of the card closest in memory size ({near.name}; {basis.split(': ', 1)[-1]}), "
            f"±{model.spread:.0%}; name a card with --card for its own figures"
        )


def _group_key(m: Measurement) -> tuple[str, str]:
    return gpu_class(m.gpu), m.shape.family


def build(rows: Sequence[Measurement]) -> SpeedTable:
    ref = reference().name
    plain: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    lyco: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    fp8: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    seen: set[tuple[str, TrainShape, float]] = set()
    for m in rows:
        if not m.s_per_step:
            continue
        run = (gpu_class(m.gpu), m.shape, round(m.s_per_step, 3))
        if run in seen:  # the same run can appear in several files
            continue
        seen.add(run)
        if _plain(m.shape):
            plain[_group_key(m)].append(m)
        elif _plain(m.shape.with_(fp8_base=False)):
            fp8[_group_key(m)].append(m)
        elif _is_lycoris(m.shape) and m.shape.precision != "fp32" and not m.shape.fp8_base:
            lyco[_group_key(m)].append(m)
    models: dict[tuple[str, str], SpeedModel] = {}
    pending: list[tuple[str, str]] = []
    anchor_groups: dict[tuple[str, str], list[Measurement]] = {}
    for key, rs in plain.items():
        card = find(key[0])
        full = _fit3(rs)
        if full is not None:
            c0, tau, ratio = full
            bw = card.bandwidth_gbs if card else 4800.0
            fitted = SpeedModel(
                key[0], key[1], c0, tau, ratio, f"fitted on {len(rs)} runs", _max_batch(rs), bandwidth_gbs=bw
            )
            models[key] = replace(fitted, spread=_scatter(fitted, rs))
        elif key[0] == ref:
            pending.append(key)
        else:  # too few runs for curves of its own: community figures that anchor the carried model
            anchor_groups[key] = rs
    for key in pending:
        rs = plain[key]
        donor = models.get((ref, families.DEFAULT)) or next((d for (c, _), d in models.items() if c == ref), None)
        ratio = donor.gc_ratio if donor else DEFAULT_GC_RATIO
        c0, tau, ratio = _fit2(rs, ratio, donor.c0 if donor else None)
        src = f"GC cost borrowed from {donor.family}" if donor else f"GC cost assumed x{DEFAULT_GC_RATIO}"
        bw = reference().bandwidth_gbs
        pend = SpeedModel(
            key[0], key[1], c0, tau, ratio, f"fitted on {len(rs)} runs, {src}", _max_batch(rs), bandwidth_gbs=bw
        )
        models[key] = replace(pend, spread=_scatter(pend, rs))
    # LyCORIS: the measured excess over the LoRA model of the same shape, per step
    for key, rs in lyco.items():
        base = models.get(key)
        if base is None:
            continue
        lora = [m.shape.with_(network_kind="lora", conv_dim=None) for m in rs]
        extra = statistics.median(m.s_per_step - base.s_per_step(s) for m, s in zip(rs, lora, strict=True))  # type: ignore[operator]
        models[key] = replace(base, lycoris_s=max(0.0, extra))
    # fp8 base: the measured excess over the same shape without it, a per-step part and a
    # per-image factor when the rows span batches (else per step only)
    for key, rs in fp8.items():
        base = models.get(key)
        if base is not None:
            models[key] = _fit_fp8(base, rs)
    for key, own in list(models.items()):
        if key[0] != ref and (ref, key[1]) in models and models[(ref, key[1])].lycoris_s and not own.lycoris_s:
            card = find(key[0])
            bw = reference().bandwidth_gbs / card.bandwidth_gbs if card else 1.0
            models[key] = replace(own, lycoris_s=models[(ref, key[1])].lycoris_s * bw)
    anchors: dict[str, float] = {}
    counts: dict[str, int] = {}
    gc_ratios: dict[str, float] = {}
    for (name, family), rs in anchor_groups.items():
        card = find(name)
        if card is None or (ref, family) not in models:
            continue
        r = models[(ref, family)]
        carried = replace(r, tau=r.tau * carry_factor(card, reference()), bandwidth_gbs=card.bandwidth_gbs)
        nogc = [m for m in rs if not m.shape.gradient_checkpointing] or rs
        ks = []
        for m in nogc:
            assert m.s_per_step is not None
            image = carried.per_image_s(m.shape.with_(gradient_checkpointing=False)) * m.shape.batch_size
            rest = m.s_per_step - carried.fixed_s(m.shape)
            if image > 0 and rest > 0:
                ks.append(rest / image)
        if not ks:
            continue
        kappa = math.exp(statistics.mean(math.log(k) for k in ks))
        anchors[name], counts[name] = kappa, len(rs)
        rhos = []
        for m in rs:
            if m.shape.gradient_checkpointing and m.s_per_step is not None:
                image = carried.per_image_s(m.shape.with_(gradient_checkpointing=False)) * m.shape.batch_size * kappa
                rest = m.s_per_step - carried.fixed_s(m.shape)
                if image > 0 and rest > 0:
                    rhos.append(rest / image)
        if rhos and len(ks) < len(rs):
            gc_ratios[name] = statistics.mean(rhos)
    table = SpeedTable(models, anchors, counts, ref, gc_ratios)
    # a family with runs on the reference card but too few (or only fp8 / swap) for curves: its
    # FLOPs carry, scaled so its per-image time meets those runs (geometric mean)
    by_family: dict[str, list[Measurement]] = defaultdict(list)
    for m in rows:
        if (
            m.s_per_step
            and gpu_class(m.gpu) == ref
            and m.shape.network_kind == "lora"
            and (ref, m.shape.family) not in models
        ):
            by_family[m.shape.family].append(m)
    for family, rs in by_family.items():
        try:
            carried, _ = table._by_flops(reference(), family)
        except LookupError:
            continue
        ks = []
        for m in rs:
            assert m.s_per_step is not None
            image = m.shape.batch_size * carried.per_image_s(m.shape)
            rest = m.s_per_step - carried.fixed_s(m.shape)
            if image > 0 and rest > 0:
                ks.append(rest / image)
        if ks:
            table.flops_anchor[family] = (math.exp(statistics.mean(math.log(k) for k in ks)), len(ks))
    return table


def _fit_fp8(base: SpeedModel, rows: list[Measurement]) -> SpeedModel:
    data = []
    for m in rows:
        assert m.s_per_step is not None
        plain = m.shape.with_(fp8_base=False)
        data.append(([1.0, plain.batch_size * base.per_image_s(plain)], m.s_per_step - base.s_per_step(plain)))
    if len({round(x[1], 4) for x, _ in data}) >= 2:
        sol = _lstsq(data)
        if sol is not None and sol[0] >= 0 and sol[1] > -0.5:
            return replace(base, fp8_s=sol[0], fp8_image=1 + sol[1])
    return replace(base, fp8_s=max(0.0, statistics.median(y for _, y in data)))


def _max_batch(rows: list[Measurement]) -> int:
    return max(m.shape.batch_size for m in rows)


def load_rows(data_dir: Path | None = None) -> list[Measurement]:
    """The VRAM data files' rows and every ``speed_measurements*.json`` (speed-only rows, e.g. the
    ones scripts/gpu/speed_i12_table.py --rows-out writes)."""
    rows, _ = load_all(data_dir)
    for path in sorted((data_dir or DATA_DIR).glob("speed_measurements*.json")):
        extra, _ = load_file(path, "speed")
        rows += extra
    return rows


_TABLE: list[SpeedTable] = []


def load_speed_table() -> SpeedTable:
    if not _TABLE:
        _TABLE.append(build(load_rows()))
    return _TABLE[0]


def residuals(table: SpeedTable | None = None) -> list[dict[str, object]]:
    """Every measured row with a s/step against the model for its card: the model's error on
    the measured points (docs/speed-model.md is made from this)."""
    table = table or load_speed_table()
    out: list[dict[str, object]] = []
    seen: set[tuple[str, TrainShape, float]] = set()
    for m in load_rows():
        if not m.s_per_step:
            continue
        key = (gpu_class(m.gpu), m.shape, round(m.s_per_step, 3))
        if key in seen:
            continue
        seen.add(key)
        try:
            model, _ = table.model_for(m.gpu, m.shape.family)
        except LookupError:
            continue
        pred = model.s_per_step(m.shape)
        out.append(
            {
                "id": m.id,
                "card": gpu_class(m.gpu),
                "config": m.shape.describe(),
                "measured_s": m.s_per_step,
                "model_s": round(pred, 3),
                "error": round((pred - m.s_per_step) / m.s_per_step, 3),
                "basis": model.basis,
            }
        )
    return out
