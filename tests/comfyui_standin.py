"""A stand-in ComfyUI: a real HTTP server on 127.0.0.1 that answers like the real one did.

Every answer is built from the recorded answers in tests/fixtures/comfyui/ (ComfyUI a125cd84,
README there): same status codes, Content-Types and JSON shapes; tests/test_comfyui_standin.py
checks each fixture against this server. What it does, like ComfyUI:

* ``POST /free`` only sets flags and answers 200 with no body at once; a worker thread unloads
  the "models" later (``unload_delay_s``), in ``steps`` parts.
* ``GET /models/<folder>`` lists the files under ``root/models/<folder>`` with a model extension
  (unreadable files too: listing needs no read permission).
* ``POST /prompt`` validates (unknown node → ``invalid_prompt``; a file not in its list →
  ``value_not_in_list``), queues, and a worker renders: a checkpoint that is not a safetensors
  file or a LoRA ComfyUI's user cannot read (``as_other_user``: mode without o+r) ends in an
  ``execution_error`` in ``/history``; otherwise a PNG lands in ``root/output/<prefix>_00001_.png``.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "comfyui"
GIB = 1024**3
EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")  # folder_paths.py:12
LIST_INPUTS = {  # node → its inputs whose value must be a file of a models folder
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "LoraLoader": {"lora_name": "loras"},
    "TripleCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders", "clip_name3": "text_encoders"},
}
KNOWN_NODES = {
    *LIST_INPUTS,
    "CLIPTextEncode", "EmptyLatentImage", "EmptySD3LatentImage", "KSampler", "VAEDecode", "SaveImage", "EmptyImage",
}  # fmt: skip


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _body(name: str) -> Any:
    return copy.deepcopy(fixture(name)["body_json"])


class StandIn:
    def __init__(
        self,
        root: Path,
        *,
        device: str = "cuda",
        loaded_gib: float = 9.5,
        total_gib: float = 24.0,
        unload_delay_s: float = 0.4,
        steps: int = 3,
        argv: list[str] | None = None,
        card: str = "NVIDIA GeForce RTX 4090",
        as_other_user: bool = False,
        render_s: float = 0.0,
    ) -> None:
        self.root = root
        for sub in ("checkpoints", "loras", "text_encoders"):
            (root / "models" / sub).mkdir(parents=True, exist_ok=True)
        (root / "output").mkdir(parents=True, exist_ok=True)
        self.device, self.card, self.argv = device, card, argv or ["main.py"]
        self.total = int(total_gib * GIB)
        self.loaded = int(loaded_gib * GIB)
        self.base_used = 1 * GIB
        self.unload_delay_s, self.steps = unload_delay_s, steps
        self.as_other_user, self.render_s = as_other_user, render_s
        self.nodes = set(KNOWN_NODES)  # the node classes this ComfyUI has
        self.flags: dict[str, Any] = {}
        self.free_posts: list[dict[str, Any]] = []
        self.prompts: list[dict[str, Any]] = []  # every accepted graph
        self.history: dict[str, dict[str, Any]] = {}
        self.queue: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.number = 0
        self.cond = threading.Condition()
        self.stop = False
        self.worker = threading.Thread(target=self._prompt_worker, daemon=True)
        self.worker.start()

    # -- /system_stats ------------------------------------------------------------------------
    @property
    def vram_free(self) -> int:
        return self.total - self.base_used - self.loaded

    def system_stats(self) -> dict[str, Any]:
        stats = _body("system_stats_cpu")
        stats["system"]["argv"] = list(self.argv)
        dev = stats["devices"][0]
        if self.device == "cuda":  # the CUDA device's fields: server.py:570-580, model_management.py:411-418
            dev.update(
                name=f"cuda:0 {self.card} : cudaMallocAsync",
                type="cuda",
                index=0,
                vram_total=self.total,
                vram_free=self.vram_free,
                torch_vram_total=self.loaded,
                torch_vram_free=0,
            )
        return stats

    # -- the prompt worker (main.py prompt_worker) --------------------------------------------
    def _prompt_worker(self) -> None:
        while True:
            with self.cond:
                while not self.flags and not self.queue and not self.stop:
                    self.cond.wait(0.05)
                if self.stop:
                    return
                job = self.queue.pop(0) if self.queue else None
                flags, self.flags = (self.flags, {}) if job is None else ({}, self.flags)
            if job is not None:
                self._execute(*job)
            if flags.get("unload_models") or flags.get("free_memory"):
                time.sleep(self.unload_delay_s)
                chunk = self.loaded // self.steps
                for i in range(self.steps):  # models leave the GPU one by one
                    self.loaded = 0 if i == self.steps - 1 else self.loaded - chunk
                    time.sleep(0.05)

    def _file(self, folder: str, name: str) -> Path:
        return self.root / "models" / folder / name

    def _execute(self, prompt_id: str, graph: dict[str, Any], extra: dict[str, Any]) -> None:
        time.sleep(self.render_s)
        error: dict[str, Any] | None = None
        for nid, node in graph.items():
            for inp, folder in LIST_INPUTS.get(node["class_type"], {}).items():
                path = self._file(folder, node["inputs"][inp])
                if self.as_other_user and not path.stat().st_mode & 0o004:
                    error = {"node_id": nid, "node_type": node["class_type"], "exception_type": "PermissionError",
                             "exception_message": f"[Errno 13] Permission denied: '{path}'"}  # fmt: skip
                elif not _is_safetensors(path):
                    error = {"node_id": nid, "node_type": node["class_type"],
                             "exception_type": "safetensors._safetensors_rust.SafetensorError",
                             "exception_message": "Error while deserializing header: header too large\n"}  # fmt: skip
                if error:
                    break
            if error:
                break
        if error:
            entry = _body("history_execution_error")
            entry = next(iter(entry.values()))
            msg = next(m for m in entry["status"]["messages"] if m[0] == "execution_error")
            msg[1].update(error, prompt_id=prompt_id)
            entry["outputs"] = {}
        else:
            entry = next(iter(_body("history_ok").values()))
            outputs = {}
            for nid, node in graph.items():
                if node["class_type"] == "SaveImage":
                    outputs[nid] = {"images": [self._save(graph, node)]}
            entry["outputs"] = outputs
        for _, data in entry["status"]["messages"]:
            data["prompt_id"] = prompt_id
        entry["prompt"] = [self.number, prompt_id, graph, extra, sorted(entry["outputs"])]
        self.history[prompt_id] = entry

    def _save(self, graph: dict[str, Any], save: dict[str, Any]) -> dict[str, str]:
        from PIL import Image

        latent = next((n for n in graph.values() if n["class_type"].startswith("Empty")), None)
        w = int(latent["inputs"].get("width", 64)) if latent else 64
        h = int(latent["inputs"].get("height", 64)) if latent else 64
        lora = next((n["inputs"] for n in graph.values() if n["class_type"] == "LoraLoader"), {})
        text = next((n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"), "")
        digest = hashlib.sha256(f"{text}|{lora.get('strength_model')}".encode()).digest()
        prefix = save["inputs"]["filename_prefix"]
        sub, _, stem = prefix.rpartition("/")
        folder = self.root / "output" / sub
        folder.mkdir(parents=True, exist_ok=True)
        n = len(list(folder.glob(f"{stem}_*.png"))) + 1
        name = f"{stem}_{n:05d}_.png"
        Image.new("RGB", (w, h), tuple(digest[:3])).save(folder / name)
        return {"filename": name, "subfolder": sub, "type": "output"}

    # -- /prompt validation (execution.py validate_prompt) ------------------------------------
    def validate(self, data: dict[str, Any]) -> tuple[int, Any]:
        if "prompt" not in data:
            return 400, _body("prompt_no_prompt")
        graph = data["prompt"]
        for nid, node in graph.items():
            if node.get("class_type") not in self.nodes:
                answer = _body("prompt_unknown_node")
                answer["error"]["message"] = f"Cannot execute because node {node.get('class_type')} does not exist."
                answer["error"]["details"] = f"Node ID '#{nid}'"
                return 400, answer
        node_errors: dict[str, Any] = {}
        template = _body("prompt_ckpt_not_listed")
        for nid, node in graph.items():
            for inp, folder in LIST_INPUTS.get(node["class_type"], {}).items():
                listed = self.list_models(folder)
                value = node["inputs"].get(inp)
                if value not in listed:
                    err = copy.deepcopy(template["node_errors"]["10"]["errors"][0])
                    err["details"] = f"{inp}: '{value}' not in {listed!r}"
                    err["extra_info"].update(input_name=inp, received_value=value)
                    err["extra_info"]["input_config"][0] = listed
                    entry = node_errors.setdefault(
                        nid, {"errors": [], "dependent_outputs": [], "class_type": node["class_type"]}
                    )
                    entry["errors"].append(err)
                    entry["dependent_outputs"] = [k for k, n in graph.items() if n["class_type"] == "SaveImage"]
        if node_errors:
            template["node_errors"] = node_errors
            return 400, template
        prompt_id = str(uuid.uuid4())
        with self.cond:
            self.number += 1
            self.prompts.append(graph)
            self.queue.append((prompt_id, graph, {"client_id": data.get("client_id")}))
            self.cond.notify()
        return 200, {"prompt_id": prompt_id, "number": self.number, "node_errors": {}}

    def list_models(self, folder: str) -> list[str]:
        base = self.root / "models" / folder
        out = []
        for dirpath, _, files in os.walk(base, followlinks=True):
            for f in files:
                if f.lower().endswith(EXTENSIONS):
                    out.append(os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/"))
        return sorted(out)

    def set_flags(self, data: dict[str, Any]) -> None:
        with self.cond:
            self.flags.update(data)
            self.free_posts.append(data)
            self.cond.notify()


def _is_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little")
            return len(head) == 8 and 2 <= n < 100_000_000 and fh.read(1) == b"{"
    except OSError:
        return False


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: bytes = b"", ctype: str | None = None) -> None:
            self.send_response(code)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, data: Any, code: int = 200) -> None:
            self._send(code, json.dumps(data).encode(), "application/json; charset=utf-8")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            if path == "/system_stats":
                self._json(state.system_stats())
            elif path == "/prompt":
                self._json({"exec_info": {"queue_remaining": len(state.queue)}})
            elif path.startswith("/models/"):
                folder = path.split("/", 2)[2]
                if folder in ("checkpoints", "loras", "text_encoders"):
                    self._json(state.list_models(folder))
                else:
                    self._send(404)
            elif path == "/experiment/models":
                out = _body("experiment_models")
                for entry in out:
                    entry["folders"] = [str(state.root / "models" / entry["name"])]
                self._json(out)
            elif path == "/object_info/LoraLoader":
                info = _body("object_info_loraloader")
                info["LoraLoader"]["input"]["required"]["lora_name"][0] = state.list_models("loras")
                self._json(info)
            elif path.startswith("/history/"):
                pid = path.split("/", 2)[2]
                entry = state.history.get(pid)
                self._json({pid: entry} if entry is not None else {})
            elif path == "/view":
                q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                f = state.root / q.get("type", "output") / q.get("subfolder", "") / q.get("filename", "")
                if f.is_file():
                    self._send(200, f.read_bytes(), "image/png")
                else:
                    self._send(404)
            else:
                self._send(404, b"", "application/octet-stream")  # web.static's catch-all

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            path = urlsplit(self.path).path
            if path not in ("/free", "/prompt"):
                self._send(405, b"405: Method Not Allowed", "text/plain; charset=utf-8")
                return
            try:
                data = json.loads(raw)
            except ValueError:  # `await request.json()` raises inside the handler
                self._send(500, fixture("free_empty_body")["body_text"].encode(), "text/plain; charset=utf-8")
                return
            if path == "/free":
                state.set_flags({k: data[k] for k in ("unload_models", "free_memory") if data.get(k)})
                self._send(200)  # at once, no body: the unload happens later in the worker
            else:
                code, answer = state.validate(data)
                self._json(answer, code)

    return Handler


@contextmanager
def serve(state: StandIn, handler: type[BaseHTTPRequestHandler] | None = None) -> Iterator[str]:
    """The stand-in on 127.0.0.1 (a free port); yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler or _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.stop = True
        server.shutdown()
        server.server_close()


def handler_for(state: StandIn) -> type[BaseHTTPRequestHandler]:
    return _handler(state)


def png_bytes(color: tuple[int, int, int] = (0, 0, 0), size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()
