# mypy: disable-error-code="import-not-found, import-untyped"
"""A synthetic WD14-style tagger: the exact signature of SmilingWolf's ONNX taggers, tiny weights.

Usage (needs the ``onnx`` package; the tagger itself runs with onnxruntime alone)::

    python -m lorakit.synth.wd14 OUTDIR [--size 448] [--fixed-batch]

Writes ``OUTDIR/model.onnx`` and ``OUTDIR/selected_tags.csv`` (docs/research/captioning.md §1-2):
input float32 NHWC ``[batch, size, size, 3]`` BGR 0-255 (named ``input_1:0`` like the v2 Keras
export, so nothing may hard-code names), output ``[batch, K]`` probabilities (sigmoid in the
graph), rows of the CSV in output order, categories 9 rating / 0 general / 4 character.

The graph is mean(B, G, R)/255 → linear → sigmoid, with weights chosen so every step of the
pipeline shows in the tags (red image: rating ``general``, ``red_theme``; a tag reads blue only
from the blue channel, so a missed RGB→BGR swap, a black instead of white padding or a dropped
alpha flatten each change the tags; ``>_<`` is exactly 0.5, ``long_hair`` 0.45,
``hatsune_miku`` 0.88, the rest ~0.002). Opset 17 / IR 8 so onnxruntime >= 1.17 loads it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

# (name, category, weight on B, G, R, bias); sigmoid(4) = 0.982, sigmoid(-6) = 0.0025
TAGS: tuple[tuple[str, int, tuple[float, float, float], float], ...] = (
    ("general", 9, (0.0, 0.0, 0.0), 4.0),
    ("sensitive", 9, (0.0, 0.0, 0.0), -6.0),
    ("questionable", 9, (0.0, 0.0, 0.0), -6.0),
    ("explicit", 9, (0.0, 0.0, 0.0), -6.0),
    ("red_theme", 0, (0.0, 0.0, 12.0), -6.0),
    ("blue_background", 0, (12.0, 0.0, 0.0), -6.0),
    (">_<", 0, (0.0, 0.0, 0.0), 0.0),
    ("long_hair", 0, (0.0, 0.0, 0.0), math.log(0.45 / 0.55)),
    ("hatsune_miku", 4, (0.0, 0.0, 0.0), 2.0),
    ("kagamine_rin_(cosplay)", 4, (0.0, 0.0, 0.0), -6.0),
)
INPUT_NAME = "input_1:0"
OUTPUT_NAME = "predictions_sigmoid"


def tags_csv() -> str:
    lines = ["tag_id,name,category,count"]
    for i, (name, cat, _, _) in enumerate(TAGS):
        quoted = f'"{name}"' if "," in name else name
        lines.append(f"{1000 + i},{quoted},{cat},{100 - i}")
    return "\n".join(lines) + "\n"


def model_bytes(size: int = 448, fixed_batch: bool = False) -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = len(TAGS)
    batch: int | str = 1 if fixed_batch else "batch"
    w = np.array([[t[2][c] for t in TAGS] for c in range(3)], dtype=np.float32)  # [3, K]
    b = np.array([t[3] for t in TAGS], dtype=np.float32)
    inits = [
        numpy_helper.from_array(np.array([1.0 / 255.0], dtype=np.float32), "scale"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "b"),
    ]
    nodes = [
        helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["unit"]),
        helper.make_node("MatMul", ["unit", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "wd14_synth",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, size, size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, k])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="lorakit.synth.wd14"
    )
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def build(out: Path, size: int = 448, fixed_batch: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(model_bytes(size, fixed_batch))
    (out / "selected_tags.csv").write_text(tags_csv(), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lorakit.synth.wd14", description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--fixed-batch", action="store_true", help="batch dim fixed to 1 (like the v2.0 exports)")
    a = ap.parse_args(argv)
    print(build(a.out, a.size, a.fixed_batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
