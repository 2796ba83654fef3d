# mypy: disable-error-code="import-not-found, import-untyped, no-untyped-call"
"""A tiny random-weight BLIP captioner (the classes `lorakit dataset caption --tagger blip` loads).

Usage (needs torch, transformers and tokenizers)::

    python -m lorakit.synth.blip OUTDIR

2 layers of 32 dims for the text and vision towers, 32 px images, a 40-word WordPiece vocabulary:
about 0.3 MB, saved with ``save_pretrained`` (config, safetensors, processor, tokenizer), loaded
with ``from_pretrained`` like Salesforce/blip-image-captioning-large. The tokenizer is built
with ``tokenizers`` and wrapped with ``tokenizer_object=`` (transformers 5 ignores
``vocab_file=``; docs/research/captioning.md §3). Its captions are random words.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
_WORDS = (
    "a drawing of the girl with long hair red blue sky in and on an image comic panel man woman "
    "standing sitting smiling city night day black white dress holding book looking at"
)
WORDS = _WORDS.split()


def build(out: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", bos_token="[DEC]", model_max_length=64,
    )  # fmt: skip
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = BlipConfig(
        text_config={
            **small, "vocab_size": len(vocab), "max_position_embeddings": 128, "pad_token_id": vocab["[PAD]"],
            "bos_token_id": vocab["[DEC]"], "sep_token_id": vocab["[SEP]"], "eos_token_id": vocab["[SEP]"],
            "encoder_hidden_size": 32,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lorakit.synth.blip", description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(build(a.out, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
