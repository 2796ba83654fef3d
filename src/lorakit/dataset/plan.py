"""DatasetPlan: what sd-scripts will see in a dataset folder, and the steps math.

A dataset folder is one of:
- the kohya layout: sub-folders named ``<repeats>_<trigger> [class]`` (one per concept);
- a flat folder of images (+ captions): one concept, repeats/trigger/class from the config;
- explicit ``dataset.concepts`` in the config.
Reading the folder is the only I/O here; nothing is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from lorakit.config.schema import DatasetSection
from lorakit.errors import DatasetError

# What sd-scripts' image glob picks up (library/train_util.py IMAGE_EXTENSIONS, lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl")
KOHYA_DIR = re.compile(r"^(?P<repeats>\d+)_(?P<tokens>.+)$")


@dataclass(frozen=True)
class ConceptPlan:
    folder: Path
    images: int
    captioned: int
    repeats: int
    class_tokens: str  # "trigger class" as sd-scripts' class_tokens
    flip_aug: bool | None = None
    # leading caption tags `dataset prepare` put first (trigger, class): shuffling keeps at least these
    keep_tokens: int | None = None

    @property
    def visits_per_epoch(self) -> int:
        return self.images * self.repeats


@dataclass(frozen=True)
class StepsMath:
    """images × repeats × epochs ÷ (batch × GPUs) = steps, as sd-scripts counts them: each of
    N data-parallel processes takes one batch per step, so an epoch is ceil(batches / N) steps;
    with max_steps the step count stays and the run covers N× the epochs."""

    images_x_repeats: int  # per epoch, all concepts
    batch_size: int  # per GPU
    batches_per_epoch: int  # single-GPU batches of one epoch
    epochs: int
    total_steps: int
    max_steps: int | None = None
    n_gpus: int = 1
    reg_samples: int = 0  # of images_x_repeats: regularization samples per epoch (reg_samples_per_epoch)

    @classmethod
    def compute(
        cls,
        images_x_repeats: int,
        batch_size: int,
        epochs: int | None,
        max_steps: int | None,
        n_gpus: int = 1,
        reg_samples: int = 0,
    ) -> StepsMath:
        n = max(1, n_gpus)
        batches = math.ceil(images_x_repeats / batch_size)
        per_epoch = math.ceil(batches / n)
        if max_steps is not None:
            epochs_run = math.ceil(max_steps / per_epoch)
            return cls(images_x_repeats, batch_size, batches, epochs_run, max_steps, max_steps, n, reg_samples)
        if epochs is None:
            raise ValueError("epochs or max_steps is required")  # the config rules guarantee one
        return cls(images_x_repeats, batch_size, batches, epochs, per_epoch * epochs, None, n, reg_samples)

    @property
    def per_gpu_batch(self) -> int:
        return self.batch_size

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.n_gpus

    @property
    def images_per_step(self) -> int:
        return self.effective_batch

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.n_gpus)

    def formula(self) -> str:
        n = self.n_gpus
        divisor = f"batch {self.batch_size}" if n == 1 else f"(batch {self.batch_size} × {n} GPU(s))"
        tail = "" if n == 1 else f"; effective batch {self.effective_batch}"
        samples = f"{self.images_x_repeats} images×repeats"
        if self.reg_samples:
            samples = f"({self.images_x_repeats - self.reg_samples} train + {self.reg_samples} reg) images×repeats"
        if self.max_steps is not None:
            return (
                f"{samples} ÷ {divisor} = {self.steps_per_epoch} steps/epoch; "
                f"max_steps {self.max_steps} → {self.epochs} epoch(s){tail}"
            )
        head = f"{samples} × {self.epochs} epochs ÷ {divisor}"
        return f"{head} = {self.total_steps} steps{tail}"


def reg_samples_per_epoch(train_samples: int, reg_images: int, reg_repeats: int) -> int:
    """Regularization samples per epoch as sd-scripts registers them (library/train_util.py
    2160-2182 at 48d368fa): reg images are registered one by one, each adding its repeats, until
    the total reaches the train samples (images × repeats); later images are never used. If one
    pass is not enough, every reg image gets +1 repeat at a time until the totals are equal.
    So: the train samples exactly, or the first prefix of whole images that reaches them."""
    if train_samples <= 0 or reg_images <= 0 or reg_repeats <= 0:
        return 0
    if reg_images * reg_repeats <= train_samples:
        return train_samples
    return math.ceil(train_samples / reg_repeats) * reg_repeats


def reg_images_used(train_samples: int, reg_images: int, reg_repeats: int) -> int:
    """How many reg images sd-scripts registers (the rest are skipped: "some of reg images are not used")."""
    if train_samples <= 0 or reg_repeats <= 0:
        return 0
    return min(reg_images, math.ceil(train_samples / reg_repeats))


def balanced_reg_repeats(train_samples: int, reg_images: int) -> int:
    """Reg repeats that use every reg image at least once: floor(train samples ÷ reg images), ≥ 1."""
    return max(1, train_samples // reg_images) if reg_images else 1


@dataclass(frozen=True)
class RegPlan:
    """The regularization subset: ``is_reg = true`` in the dataset TOML."""

    folder: Path
    images: int
    repeats: int
    class_tokens: str

    def samples_per_epoch(self, train_samples: int) -> int:
        return reg_samples_per_epoch(train_samples, self.images, self.repeats)

    def used_images(self, train_samples: int) -> int:
        return reg_images_used(train_samples, self.images, self.repeats)


@dataclass(frozen=True)
class DatasetPlan:
    root: Path
    layout: str  # "kohya" | "flat" | "concepts"
    concepts: tuple[ConceptPlan, ...]
    caption_extension: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    regularization: RegPlan | None = None

    @property
    def images(self) -> int:
        return sum(c.images for c in self.concepts)

    @property
    def visits_per_epoch(self) -> int:
        """Training images × repeats (regularization samples not included)."""
        return sum(c.visits_per_epoch for c in self.concepts)

    @property
    def reg_samples_per_epoch(self) -> int:
        r = self.regularization
        return r.samples_per_epoch(self.visits_per_epoch) if r is not None else 0

    @property
    def samples_per_epoch(self) -> int:
        """What one epoch feeds the model: train images × repeats plus the balanced reg samples."""
        return self.visits_per_epoch + self.reg_samples_per_epoch

    def steps(self, batch_size: int, epochs: int | None, max_steps: int | None, n_gpus: int = 1) -> StepsMath:
        reg = self.reg_samples_per_epoch
        return StepsMath.compute(self.visits_per_epoch + reg, batch_size, epochs, max_steps, n_gpus, reg)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _concept(folder: Path, repeats: int, tokens: str, caption_ext: str, flip: bool | None = None) -> ConceptPlan:
    images = list_images(folder)
    captioned = sum(1 for p in images if p.with_suffix(caption_ext).is_file())
    return ConceptPlan(folder, len(images), captioned, repeats, tokens, flip)


def _tokens(trigger: str | None, class_word: str | None) -> str:
    return " ".join(t for t in (trigger, class_word) if t)


def scan_dataset(cfg: DatasetSection, folder: Path | None = None) -> DatasetPlan:
    """Scan the dataset the config points at (``folder`` overrides ``cfg.folder``), with its
    regularization images (``dataset.regularization``, or the ``reg/`` folder prepare wrote)."""
    return with_regularization(_scan_train(cfg, folder), cfg)


def with_regularization(plan: DatasetPlan, cfg: DatasetSection) -> DatasetPlan:
    """The plan with its reg subset: from the config when given, else from a prepared folder's manifest."""
    reg_cfg = cfg.regularization
    prepared = prepared_regularization(plan.root) if plan.layout == "kohya" else None
    if reg_cfg is None and prepared is None:
        return plan
    warnings = list(plan.warnings)
    if reg_cfg is not None:
        rf = reg_cfg.folder
        if not rf.is_dir():
            raise DatasetError(
                f"dataset.regularization.folder: {rf} is not a folder", fix="point it at a folder of class images"
            )
        n = len(list_images(rf))
        if n == 0:
            raise DatasetError(
                f"dataset.regularization.folder: no images in {rf}",
                fix="put class images there (e.g. generated from the class prompt alone), or remove the key",
            )
        tokens = reg_cfg.class_word or cfg.class_word or ""
        repeats = reg_cfg.repeats or balanced_reg_repeats(plan.visits_per_epoch, n)
        reg = RegPlan(rf, n, repeats, tokens)
    else:
        assert prepared is not None
        reg = prepared
    used = reg.used_images(plan.visits_per_epoch)
    if used < reg.images:
        warnings.append(
            f"{reg.folder}: sd-scripts uses only {used} of {reg.images} reg images (reg images × {reg.repeats} repeats "
            f"exceed the {plan.visits_per_epoch} train images×repeats); use fewer reg images or more train repeats"
        )
    if not reg.class_tokens:
        warnings.append(f"{reg.folder}: no class word for the reg images; set dataset.class (or regularization.class)")
    return replace(plan, regularization=reg, warnings=tuple(warnings))


def prepared_regularization(root: Path) -> RegPlan | None:
    """The reg subset `lorakit dataset prepare --reg` wrote into ``root`` (its manifest says which)."""
    from lorakit.dataset.manifest import read_manifest

    entry = (read_manifest(root) or {}).get("regularization")
    if not isinstance(entry, dict) or not isinstance(entry.get("folder"), str):
        return None
    folder = root / entry["folder"]
    if not folder.is_dir():
        return None
    m = KOHYA_DIR.match(folder.name)
    repeats = int(m["repeats"]) if m else int(entry.get("repeats") or 1)
    tokens = m["tokens"].strip() if m else str(entry.get("class") or "")
    return RegPlan(folder, len(list_images(folder)), repeats, tokens)


def _scan_train(cfg: DatasetSection, folder: Path | None = None) -> DatasetPlan:
    ext = cfg.caption_extension
    if cfg.concepts:
        concepts = []
        for i, c in enumerate(cfg.concepts):
            if not c.folder.is_dir():
                raise DatasetError(
                    f"dataset.concepts[{i}].folder: {c.folder} is not a folder",
                    fix="point it at a folder of images",
                )
            tokens = _tokens(c.trigger or cfg.trigger, c.class_word or cfg.class_word)
            concepts.append(_concept(c.folder, c.repeats or cfg.repeats, tokens, ext, c.flip_aug))
        root = folder or cfg.folder or Path(".")
        return _finish(DatasetPlan(root, "concepts", tuple(concepts), ext))

    given = folder or cfg.folder
    if given is None:
        raise DatasetError(
            "no dataset given",
            fix="pass --data DIR (a folder of images with .txt captions, or a kohya folder of N_trigger class/)",
        )
    root = given
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist", fix="check the path passed to --data")
    if not root.is_dir():
        raise DatasetError(f"dataset path {root} is a file, not a folder", fix="pass the folder that holds it")

    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    kohya = [(d, KOHYA_DIR.match(d.name)) for d in subdirs]
    matched = [(d, m) for d, m in kohya if m]
    if matched:
        prepared = prepared_keep_tokens(root)
        concepts = [
            replace(_concept(d, int(m["repeats"]), m["tokens"].strip(), ext), keep_tokens=prepared.get(d.name))
            for d, m in matched
        ]
        if any(c.repeats == 0 for c in concepts):
            zero = next(c.folder.name for c in concepts if c.repeats == 0)
            raise DatasetError(f"{root / zero}: repeats 0 in the folder name", fix="rename it to 1_... or more")
        reg = prepared_regularization(root)
        reg_top = reg.folder.relative_to(root).parts[0] if reg is not None else None
        others = [d.name for d, m in kohya if not m and d.name != reg_top]
        warnings = (
            (f"sub-folders not in the N_trigger class form are ignored by sd-scripts: {', '.join(others)}",)
            if others
            else ()
        )
        return _finish(DatasetPlan(root, "kohya", tuple(concepts), ext, warnings))

    concept = _concept(root, cfg.repeats, _tokens(cfg.trigger, cfg.class_word), ext)
    return _finish(DatasetPlan(root, "flat", (concept,), ext))


def prepared_keep_tokens(root: Path) -> dict[str, int]:
    """Folder name → leading tags of its captions that `lorakit dataset prepare` fixed in place
    (trigger, and class when given), read from its manifest; {} for a folder prepare did not write."""
    from lorakit.dataset.manifest import read_manifest

    manifest = read_manifest(root) or {}
    out: dict[str, int] = {}
    for c in manifest.get("concepts") or []:
        if isinstance(c, dict) and isinstance(c.get("folder"), str) and c.get("trigger"):
            out[c["folder"]] = 2 if c.get("class") else 1
    return out


def _finish(plan: DatasetPlan) -> DatasetPlan:
    empty = [c for c in plan.concepts if c.images == 0]
    if len(empty) == len(plan.concepts):
        raise DatasetError(
            f"no images found in {plan.root} (looked for {', '.join(IMAGE_EXTENSIONS)})",
            fix="put images in the folder, or run lorakit dataset prepare RAW_DIR first",
        )
    warnings = list(plan.warnings)
    for c in empty:
        warnings.append(f"{c.folder}: no images; this concept adds nothing")
    for c in plan.concepts:
        missing = c.images - c.captioned
        if c.images and missing:
            warnings.append(
                f"{c.folder}: {missing} of {c.images} images have no {plan.caption_extension} caption "
                f"(sd-scripts uses the class tokens '{c.class_tokens}' for them)"
            )
    return replace(plan, warnings=tuple(warnings))
