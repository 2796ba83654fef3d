"""Record a live ComfyUI's answers as test fixtures (tests/fixtures/comfyui/, README there).

    python scripts/record_comfyui.py http://127.0.0.1:8188 OUTDIR --comfyui-dir PATH [--tag cpu]

PATH is the ComfyUI folder the server runs from (its models/ get a few files for the
recording: an empty-named LoRA, a broken checkpoint; they are removed afterwards). Each answer is
one JSON file: the request, the status, the Content-Type and the body (JSON, text, or for
images a .png beside it). Machine paths (the ComfyUI folder, the home folder) are replaced by
<comfyui> / <home>. Only the standard library: it also runs in the GPU smoke.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

LORA = "fixture_lora.safetensors"
BROKEN = "fixture_broken.safetensors"


def call(base: str, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.headers.get("Content-Type", ""), exc.read()


class Recorder:
    def __init__(self, base: str, out: Path, comfy_dir: Path, tag: str) -> None:
        self.base, self.out, self.tag = base, out, tag
        self.subs = [(str(comfy_dir.resolve()), "<comfyui>"), (str(Path.home()), "<home>")]
        out.mkdir(parents=True, exist_ok=True)

    def scrub(self, text: str) -> str:
        for old, new in self.subs:
            text = text.replace(old, new)
        return text

    def record(self, name: str, method: str, path: str, data: Any = None, raw: bytes | None = None) -> Any:
        body = raw if raw is not None else (None if data is None else json.dumps(data).encode())
        status, ctype, answer = call(self.base, method, path, body)
        entry: dict[str, Any] = {
            "request": {"method": method, "path": path, "body": None if body is None else body.decode()},
            "status": status,
            "content_type": ctype,
        }
        parsed: Any = None
        if ctype.startswith("image/"):
            (self.out / f"{name}.png").write_bytes(answer)
            entry["body_file"] = f"{name}.png"
        else:
            text = self.scrub(answer.decode("utf-8", "replace"))
            try:
                parsed = json.loads(text) if text.strip() else None
                entry["body_json" if text.strip() else "body_text"] = parsed if text.strip() else ""
            except ValueError:
                entry["body_text"] = text
        if entry.get("request", {}).get("body"):
            entry["request"]["body"] = self.scrub(entry["request"]["body"])
        (self.out / f"{name}.json").write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n", "utf-8")
        print(f"{name}: {method} {path} → {status} {ctype}", flush=True)
        return parsed

    def wait_history(self, name: str, prompt_id: str, timeout: float = 600) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, _, body = call(self.base, "GET", f"/history/{prompt_id}", None)
            if json.loads(body):
                return self.record(name, "GET", f"/history/{prompt_id}")
            time.sleep(0.3)
        raise SystemExit(f"{prompt_id} not finished in {timeout}s")


def sdxl_graph(ckpt: str, lora: str) -> dict[str, Any]:
    """lorakit's SDXL graph (lorakit.tryout.workflow), written out so this script needs no lorakit."""
    return {
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "1": {"class_type": "LoraLoader", "inputs": {"model": ["10", 0], "clip": ["10", 1], "lora_name": lora,
                                                     "strength_model": 1.0, "strength_clip": 1.0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "sks, a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 42, "steps": 2, "cfg": 6.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["10", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "lorakit/fixture"}},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("out", type=Path)
    ap.add_argument("--comfyui-dir", type=Path, required=True)
    ap.add_argument("--tag", default="cpu", help="suffix of the /system_stats fixture (cpu, cuda)")
    ap.add_argument("--stats-only", action="store_true", help="only /system_stats and /free (the CUDA recording)")
    a = ap.parse_args(argv)
    r = Recorder(a.url.rstrip("/"), a.out, a.comfyui_dir, a.tag)
    r.record(f"system_stats_{a.tag}", "GET", "/system_stats")
    r.record(f"free_{a.tag}", "POST", "/free", {"unload_models": True, "free_memory": True})
    time.sleep(2)
    r.record(f"system_stats_{a.tag}_after_free", "GET", "/system_stats")
    if a.stats_only:
        return 0
    loras = a.comfyui_dir / "models" / "loras"
    ckpts = a.comfyui_dir / "models" / "checkpoints"
    made = [loras / LORA, ckpts / BROKEN]
    for f in made:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"not a safetensors file")
    try:
        r.record("free_empty_body", "POST", "/free", raw=b"")
        r.record("get_prompt", "GET", "/prompt")
        r.record("get_queue", "GET", "/queue")
        r.record("models_loras", "GET", "/models/loras")
        r.record("models_checkpoints", "GET", "/models/checkpoints")
        r.record("models_text_encoders", "GET", "/models/text_encoders")
        r.record("models_unknown_folder", "GET", "/models/no_such_folder")
        r.record("experiment_models", "GET", "/experiment/models")
        r.record("object_info_loraloader", "GET", "/object_info/LoraLoader")
        r.record("get_unknown_path", "GET", "/no/such/path")
        r.record("post_unknown_path", "POST", "/no/such/path", {})
        r.record("history_unknown", "GET", "/history/00000000-0000-0000-0000-000000000000")
        # validation errors: a base model ComfyUI does not list, a LoRA it does not list, a node it lacks
        r.record("prompt_ckpt_not_listed", "POST", "/prompt",
                 {"prompt": sdxl_graph("sdxl_synth.safetensors", LORA), "client_id": "lorakit-fixture"})  # fmt: skip
        r.record("prompt_lora_not_listed", "POST", "/prompt",
                 {"prompt": sdxl_graph(BROKEN, "my-style.safetensors"), "client_id": "lorakit-fixture"})  # fmt: skip
        bad = sdxl_graph(BROKEN, LORA)
        bad["5"]["class_type"] = "NoSuchNode"
        r.record("prompt_unknown_node", "POST", "/prompt", {"prompt": bad, "client_id": "lorakit-fixture"})
        r.record("prompt_no_prompt", "POST", "/prompt", {"client_id": "lorakit-fixture"})
        # an execution error: the checkpoint is listed but is not a safetensors file
        ans = r.record("prompt_broken_ckpt", "POST", "/prompt",
                       {"prompt": sdxl_graph(BROKEN, LORA), "client_id": "lorakit-fixture"})  # fmt: skip
        r.wait_history("history_execution_error", ans["prompt_id"])
        # a prompt that renders without a model: /prompt → /history → /view
        ok = {
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "lorakit/fixture"}},
        }  # fmt: skip
        ans = r.record("prompt_ok", "POST", "/prompt", {"prompt": ok, "client_id": "lorakit-fixture"})
        r.record("history_pending_or_done", "GET", f"/history/{ans['prompt_id']}")
        entry = r.wait_history("history_ok", ans["prompt_id"])
        img = entry[ans["prompt_id"]]["outputs"]["9"]["images"][0]
        q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img["subfolder"], "type": img["type"]})
        r.record("view_ok", "GET", f"/view?{q}")
        r.record("view_missing", "GET", "/view?filename=nothing.png&subfolder=&type=output")
    finally:
        for f in made:
            f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
