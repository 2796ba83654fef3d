"""The speed model's error on every measured point and its answer for each card in the table
(markdown, for docs/speed-model.md).

    python scripts/speed_model_table.py
"""

from __future__ import annotations

from lorakit.gpu import cards
from lorakit.gpu.estimate import TrainShape
from lorakit.gpu.throughput import load_speed_table, residuals

COMIC = TrainShape(
    dim=128, precision="fp16", cache_latents=True, cache_text_encoder_outputs=True, unet_only=True, no_half_vae=True
)


def main() -> None:
    table = load_speed_table()
    print("| card | measured config | measured s/step | model s/step | error |")
    print("|---|---|---|---|---|")
    errs: dict[str, list[float]] = {}
    for r in residuals(table):
        err = float(r["error"])  # type: ignore[arg-type]
        errs.setdefault(str(r["card"]), []).append(err)
        cfg = str(r["config"]).split(" · cached")[0]
        print(f"| {r['card']} | {cfg} | {r['measured_s']} | {r['model_s']} | {err:+.1%} |")
    print()
    for card, es in errs.items():
        rms = (sum(e * e for e in es) / len(es)) ** 0.5
        print(f"- {card}: {len(es)} points, RMS error {rms:.1%}, worst {max(es, key=abs):+.1%}")
    print()
    print("| card | bs 1 no GC (s/step) | bs 4 GC (s/step) | bs 8 GC (images/s) | basis |")
    print("|---|---|---|---|---|")
    for c in cards.cards():
        m, basis = table.model_for(c.name, "sdxl")
        b4 = COMIC.with_(batch_size=4, gradient_checkpointing=True)
        b8 = COMIC.with_(batch_size=8, gradient_checkpointing=True)
        print(
            f"| {c.name} | {m.s_per_step(COMIC):.2f} | {m.s_per_step(b4):.2f} | {m.images_per_s(b8):.1f} | "
            f"{basis.split(': ', 1)[-1]} |"
        )
    for (card, fam), m in sorted(table.models.items()):
        print(
            f"\n- fitted {card} {fam}: c0 {m.c0:.3f} s/step, τ {m.tau:.4f} s/image (1024², rank 128, no GC), "
            f"GC ×{m.gc_ratio:.2f}, LyCORIS +{m.lycoris_s:.2f} s/step, {m.basis}, ±{m.spread:.0%}"
        )
    for card, k in table.anchors.items():
        print(f"- anchor {card}: κ {k:.2f}, GC ×{table.anchor_gc.get(card, float('nan')):.2f}")


if __name__ == "__main__":
    main()
