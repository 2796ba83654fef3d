# mypy: disable-error-code="import-not-found, import-untyped"
"""The WD14-style tagger: SmilingWolf's ONNX format, run with onnxruntime.

Facts (docs/research/captioning.md §1, from sd-scripts' finetune/tag_images_by_wd14_tagger.py,
the model author's demo and two front-ends): ``model.onnx`` takes float32 NHWC
``[N, H, H, 3]``, **BGR, 0-255**, H read from the model; it outputs ``[N, K]`` probabilities
(sigmoid already applied) in the row order of ``selected_tags.csv``
(``tag_id,name,category,count``; category 9 rating, 0 general, 4 character). Input/output
names differ between exports, so they are read from the session.

Preprocessing: transparency flattened on white, padded to a centred square with white, resized
to H×H (Pillow bicubic, as the model author's demo; sd-scripts' cv2 INTER_AREA differs by a few
levels of 255, far below what moves a threshold). ``select_tags`` is pure: thresholds (``p >=``
as sd-scripts), exclusions, underscores → spaces except kaomoji, rating off unless asked.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.errors import DatasetError, EnvironmentProblem

MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"
RATING, GENERAL, CHARACTER = 9, 0, 4
DEFAULT_GENERAL = 0.35  # sd-scripts --thresh / --general_threshold default
DEFAULT_CHARACTER = 0.85  # the model author's demo and ComfyUI-WD14-Tagger (sd-scripts: 0.35)
# The kaomoji whose underscores are part of the face (the model author's demo and the A1111
# tagger keep this list); sd-scripts keeps every tag of 3 characters or fewer as is.
KAOMOJI = frozenset(
    "0_0 (o)_(o) +_+ +_- ._. <o>_<o> <|>_<|> =_= >_< 3_3 6_9 >_o @_@ ^_^ o_o u_u x_x |_| ||_||".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class TagTable:
    names: tuple[str, ...]
    categories: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)


def parse_tags_csv(text: str, where: str = TAGS_FILE) -> TagTable:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [h.strip() for h in rows[0][:3]] != ["tag_id", "name", "category"]:
        raise DatasetError(
            f"{where}: not a WD14 tag list (the header must start tag_id,name,category)",
            fix="pass the folder of a WD14-style tagger (model.onnx + selected_tags.csv)",
        )
    names: list[str] = []
    cats: list[int] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            names.append(row[1])
            cats.append(int(row[2]))
        except (IndexError, ValueError):
            raise DatasetError(f"{where}:{n}: bad row {row!r}", fix="use the model's own selected_tags.csv") from None
    return TagTable(tuple(names), tuple(cats))


def display_name(tag: str) -> str:
    """Underscores to spaces, except in kaomoji and tags of 3 characters or fewer (``^_^``)."""
    if tag in KAOMOJI or len(tag) <= 3:
        return tag
    return tag.replace("_", " ")


@dataclass(frozen=True)
class TagOptions:
    general_threshold: float = DEFAULT_GENERAL
    character_threshold: float = DEFAULT_CHARACTER
    exclude: frozenset[str] = field(default_factory=frozenset)  # compared casefolded, both spellings
    underscores: bool = False  # keep Danbooru underscores
    rating: bool = False  # add the most likely rating tag first


def select_tags(probs: Sequence[float], table: TagTable, opts: TagOptions) -> list[str]:
    """One image's probabilities → its tags: rating (if asked), character tags, then general tags,
    each group by falling probability (ties: CSV order)."""
    if len(probs) != len(table):
        raise DatasetError(
            f"the tagger gives {len(probs)} scores but {TAGS_FILE} lists {len(table)} tags",
            fix="use the selected_tags.csv that came with the model",
        )
    excluded = {e.casefold() for e in opts.exclude}

    def name(i: int) -> str | None:
        raw = table.names[i]
        shown = raw if opts.underscores else display_name(raw)
        if raw.casefold() in excluded or shown.casefold() in excluded:
            return None
        return shown

    order = sorted(range(len(table)), key=lambda i: (-probs[i], i))
    chars = [i for i in order if table.categories[i] == CHARACTER and probs[i] >= opts.character_threshold]
    general = [i for i in order if table.categories[i] == GENERAL and probs[i] >= opts.general_threshold]
    picked = chars + general
    if opts.rating:
        ratings = [i for i in order if table.categories[i] == RATING]
        picked = ratings[:1] + picked
    return [n for n in (name(i) for i in picked) if n is not None]


def flatten_rgb(image: Any) -> Any:
    """A PIL image in RGB, transparency flattened onto white (as sd-scripts' tagger does)."""
    from PIL import Image

    im = image
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im = im.convert("RGBA")
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im, mask=im.getchannel("A"))
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def preprocess(image: Any, size: int) -> Any:
    """A PIL image → float32 [size, size, 3] BGR 0-255 (white for transparency and padding)."""
    import numpy as np
    from PIL import Image

    im = flatten_rgb(image)
    w, h = im.size
    side = max(w, h)
    if w != h:
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        im = canvas
    if side != size:
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.float32)
    return arr[:, :, ::-1]  # RGB → BGR


def load_image(path: Path, size: int) -> Any:
    """Decode (JPEGs at a reduced scale when much larger than the model's input) and preprocess."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im.load()
        im = ImageOps.exif_transpose(im)
        return preprocess(im, size)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class Wd14Tagger:
    """An onnxruntime session over a tagger folder. ``device``: auto | cpu | cuda."""

    def __init__(
        self, folder: Path, options: TagOptions | None = None, device: str = "auto", threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        self.options = options or TagOptions()
        model, tags = folder / MODEL_FILE, folder / TAGS_FILE
        for p in (model, tags):
            if not p.is_file():
                raise DatasetError(
                    f"{folder}: no {p.name}",
                    fix="pass a WD14-style tagger folder (model.onnx + selected_tags.csv)",
                )
        self.table = parse_tags_csv(tags.read_text(encoding="utf-8"), str(tags))
        avail = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in avail:
            raise EnvironmentProblem(
                "--device cuda: this onnxruntime has no CUDA provider (available: " + ", ".join(avail) + ")",
                fix="pip uninstall onnxruntime; pip install 'lorakit[caption-gpu]' (onnxruntime-gpu); or --device cpu",
            )
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in avail:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.log_severity_level = 3  # a failed CUDA provider is reported below, not as an ORT warning
        if threads:
            so.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(model), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DatasetError(f"{model}: onnxruntime cannot load it ({exc})", fix="re-download the model") from None
        # a CUDA provider that failed to start (missing cuDNN/CUDA libraries) falls back silently
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != "CUDAExecutionProvider":
            raise EnvironmentProblem(
                "--device cuda: onnxruntime could not start its CUDA provider (CUDA or cuDNN libraries missing?)",
                fix="install the CUDA/cuDNN libraries onnxruntime-gpu needs, or --device cpu",
            )
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
            raise DatasetError(
                f"{model}: input {inp.name} has shape {shape}, not [batch, H, H, 3]",
                fix="use a SmilingWolf-format WD14 tagger (NHWC input)",
            )
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.size = int(shape[1])
        # a fixed batch dim (v2.0 exports: 1) wins over the wanted batch size, as in sd-scripts
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    def batch_size(self, wanted: int) -> int:
        return self.fixed_batch or max(1, wanted)

    def load(self, path: Path) -> Any:
        return load_image(path, self.size)

    def caption(self, batch: Sequence[Any]) -> list[list[str]]:
        return [select_tags(p, self.table, self.options) for p in self.probabilities(batch)]

    def probabilities(self, batch: Sequence[Any]) -> list[list[float]]:
        import numpy as np

        x = np.ascontiguousarray(np.stack(list(batch)).astype(np.float32))
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        return [[float(v) for v in row] for row in out]
