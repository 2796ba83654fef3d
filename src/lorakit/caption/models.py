# mypy: disable-error-code="import-not-found, import-untyped"
"""Where a captioning model comes from: a local folder, or a Hugging Face repo id.

A folder is used as is and the hub is never asked. A repo id goes through
``huggingface_hub.snapshot_download`` (the standard cache, ``HF_HOME``): downloaded once when
online, found in the cache afterwards; with ``HF_HUB_OFFLINE=1`` only the cache is read and a
miss fails at once (docs/research/captioning.md §4).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import DatasetError, EnvironmentProblem

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class CaptionerKind:
    name: str
    default_model: str
    files: tuple[str, ...]  # what a download takes (allow_patterns)
    needs: tuple[str, ...]  # import names the kind needs
    what: str


KINDS: dict[str, CaptionerKind] = {
    "wd14": CaptionerKind(
        "wd14",
        # apache-2.0, 379 MB, dynamic batch (v3); kohya's script defaults to an older v2 model
        "SmilingWolf/wd-vit-tagger-v3",
        ("model.onnx", "selected_tags.csv"),
        ("onnxruntime",),
        "Danbooru tags from a WD14-style ONNX tagger (onnxruntime)",
    ),
    "blip": CaptionerKind(
        "blip",
        # BSD-3-Clause; the model sd-scripts' finetune/make_captions.py uses
        "Salesforce/blip-image-captioning-large",
        ("*.json", "*.safetensors", "*.txt"),
        ("torch", "transformers"),
        "one sentence from BLIP (transformers + torch)",
    ),
}


def kind(name: str) -> CaptionerKind:
    try:
        return KINDS[name.lower()]
    except KeyError:
        raise DatasetError(
            f"--tagger {name!r} is not one of {', '.join(KINDS)}",
            fix="pass --tagger wd14 (tags) or --tagger blip (a sentence)",
        ) from None


def check_installed(k: CaptionerKind) -> None:
    import importlib.util

    missing = [m for m in k.needs if importlib.util.find_spec(m) is None]
    if missing:
        extra = "pip install 'lorakit[caption]'" + (" torch" if "torch" in missing else "")
        raise EnvironmentProblem(
            f"--tagger {k.name} needs {', '.join(missing)}, which is not installed",
            fix=f"{extra} (the base install stays light without them)",
        )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_model(k: CaptionerKind, given: str | None) -> Path:
    """The local folder holding the model: ``given`` if it is a folder, else a hub download/cache hit."""
    ref = given or k.default_model
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise DatasetError(f"--model {ref} is a file", fix="pass the folder that holds the model's files")
    if not REPO_ID.match(ref):
        raise DatasetError(f"--model {ref}: no such folder", fix="pass a model folder or a Hugging Face repo id")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise EnvironmentProblem(
            f"--model {ref} is a Hugging Face repo id, and huggingface_hub is not installed",
            fix="pip install 'lorakit[caption]', or pass --model a local folder",
        ) from None
    offline = _offline()
    try:
        return Path(snapshot_download(ref, allow_patterns=list(k.files), local_files_only=offline))
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
        raise DatasetError(
            f"--model {ref}: not a local folder, not in the Hugging Face cache, and {why}",
            fix=f"run once online to download it (about {_size_hint(k)}), or pass --model a local folder",
        ) from None
    except Exception as exc:  # RepositoryNotFoundError, gated repos, HTTP errors
        raise DatasetError(
            f"--model {ref}: cannot get it from the Hugging Face hub ({type(exc).__name__}: {exc})",
            fix="check the repo id, or pass --model a local folder",
        ) from None


def _size_hint(k: CaptionerKind) -> str:
    return "380 MB" if k.name == "wd14" else "1.9 GB"
