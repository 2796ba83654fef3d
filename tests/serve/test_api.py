"""The JSON API against a real `lorakit serve` on 127.0.0.1, with the stand-in trainer printing
a recorded sd-scripts log. The CLI and the server answer from the same functions."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from tests.serve.conftest import Server, train_body


def cli(srv: Server, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "lorakit", *args], env=srv.env, cwd=srv.tmp, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_train_from_the_api_ends_done_with_its_lora(server: Server) -> None:
    status, out = server.post("/api/runs", train_body(server))
    assert status == 202, out
    info = server.wait_run(out["run"], ("done", "failed", "interrupted"))
    assert info["status"] == "done", info
    assert info["lora"] and info["lora"].endswith("comic-style.safetensors")
    # the recorded log's progress lines became the loss series (per-step loss or its average)
    assert len(info["loss_series"]) > 5
    assert info["sample_files"] and info["sample_files"][0].startswith("sample/")
    # the page shows the LoRA, and the sample is served from inside the run folder
    status, html = server.get(f"/runs/{out['run']}")
    assert status == 200 and info["lora"] in html
    status, _ = server.get(f"/api/runs/{out['run']}/files/{info['sample_files'][0]}")
    assert status == 200
    # one function, one answer: `lorakit runs list --json` / `runs show --json` say the same
    rows = {r["name"]: r for r in json.loads(cli(server, "runs", "list", "--json", "--runs-dir", str(server.runs)))}
    # the runs list refreshes by stat at most every 0.5 s (serve/index.py): ask until it has caught up
    deadline = time.monotonic() + 5
    while True:
        status, listed = server.get("/api/runs")
        api_rows = {r["name"]: r for r in listed["runs"]}
        if all(api_rows.get(n, {}).get("status") == r.get("status") for n, r in rows.items()):
            break
        assert time.monotonic() < deadline, (rows, api_rows)
        time.sleep(0.2)
    assert api_rows.keys() == rows.keys()
    for name, row in rows.items():
        assert {k: api_rows[name][k] for k in ("status", "step", "lora")} == {
            k: row[k] for k in ("status", "step", "lora")
        }
    shown = json.loads(cli(server, "runs", "show", out["run"], "--json", "--runs-dir", str(server.runs)))
    for key in ("status", "checkpoints", "samples", "finished", "warnings", "dataset"):
        assert info[key] == shown[key], key
    status, log = server.get(f"/api/runs/{out['run']}/log?lines=5")
    assert status == 200 and len(log["lines"]) == 5
    # `lorakit report`: written into the run folder, served sandboxed; other files are not served
    status, files = server.post(f"/api/runs/{out['run']}/report")
    assert status == 200 and files["report_html"] == "report.html"
    status, html, headers = server.request("GET", f"/api/runs/{out['run']}/files/report.html")
    assert status == 200 and "sandbox" in headers["content-security-policy"] and out["run"] in html
    for name in ("spec.yaml", "comic-style.safetensors", "../state.json", "train.log"):
        status, _ = server.get(f"/api/runs/{out['run']}/files/{name}")
        assert status == 404, name


def test_validate_puts_each_problem_under_its_field(server: Server) -> None:
    status, out = server.post("/api/validate", train_body(server, "training.batch_size=0"))
    assert status == 400
    assert any(f["path"] == "training.batch_size" for f in out["fields"]), out
    status, out = server.post("/api/validate", train_body(server, "training.batch_sise=2"))
    assert status == 400 and "did you mean" in json.dumps(out).lower(), out
    status, out = server.post("/api/validate", train_body(server))
    assert status == 200 and out["plan"]["steps"]["total_steps"] > 0
    assert f"--output_dir={server.runs}" in out["plan"]["command"]
    # nothing was written by a validation
    assert not any(p.name.startswith("comic-style-") and not (p / "state.json").exists() for p in server.runs.iterdir())


def test_bad_start_creates_no_run_and_says_why(server: Server) -> None:
    before = set(p.name for p in server.runs.iterdir()) if server.runs.exists() else set()
    status, out = server.post("/api/runs", train_body(server, "training.batch_size=0"))
    assert status == 400 and out["fields"][0]["path"] == "training.batch_size"
    after = set(p.name for p in server.runs.iterdir()) if server.runs.exists() else set()
    assert before == after


def read_sse(srv: Server, path: str, *, last_id: str | None = None, until: float = 3.0) -> list[tuple[str, str, str]]:
    """(id, event, data) of each SSE message received within ``until`` seconds (raw socket)."""
    sock = socket.create_connection((srv.host, srv.port), timeout=until)
    extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n{extra}Connection: close\r\n\r\n".encode())
    data = b""
    end = time.monotonic() + until
    try:
        while time.monotonic() < end:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    sock.close()
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    out = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append((fields.get("id", ""), fields.get("event", "message"), fields["data"]))
    return out


def test_events_stream_resumes_from_last_event_id_without_loss_or_repeat(server: Server) -> None:
    status, out = server.post("/api/runs", train_body(server))
    assert status == 202
    run = out["run"]
    info = server.wait_run(run, ("done", "failed", "interrupted"))
    lines = (server.runs / run / "events.jsonl").read_text().splitlines()
    first = [m for m in read_sse(server, f"/api/runs/{run}/events?from=0", until=2.0) if m[0]]
    assert [m[2] for m in first] == lines  # every line, in order, once
    cut = first[len(first) // 2]
    rest = [m for m in read_sse(server, f"/api/runs/{run}/events?from=0", last_id=cut[0], until=2.0) if m[0]]
    assert [m[2] for m in rest] == lines[len(first) // 2 + 1 :]
    assert first[-1][0] == str(info["events_offset"])


def test_stop_is_ctrl_c_and_the_run_is_interrupted(server: Server) -> None:
    status, out = server.post("/api/runs", train_body(server, "saving.save_state=true"))
    assert status == 202
    run = out["run"]
    server.wait_run(run, ("running",))
    status, stopped = server.post(f"/api/runs/{run}/stop")
    assert status == 202 and "lorakit (pid" in stopped["signalled"]
    info = server.wait_run(run, ("interrupted", "failed", "done"))
    assert info["status"] == "interrupted"
    assert info["state"]["diagnosis"]["kind"] == "interrupted"
    status, again = server.post(f"/api/runs/{run}/stop")
    assert status == 409 and "not running" in again["error"]
    # resume refuses with the CLI's own words: no training state was saved yet (FAKE_STATE unset)
    status, res = server.post(f"/api/runs/{run}/resume")
    assert status in (400, 409) and "cannot be resumed" in res["error"], res


def test_vram_check_for_a_card_size_and_without_a_gpu(server: Server) -> None:
    status, out = server.post("/api/vram-check", {**train_body(server), "vram": "8GB"})
    assert status == 200, out
    assert out["verdict"] == "does-not-fit" and out["budget"]["gib"] == 8
    assert out["suggestions"], "8 GiB is too small for comic-style as shipped: changes that fit are proposed"
    # the same answer as `lorakit vram-check --vram 8GB --json`
    args = ["vram-check", "-p", "comic-style", "-d", train_body(server)["data"], "--vram", "8GB", "--json"]
    shown = json.loads(cli(server, *args, "--set", train_body(server)["overrides"][0]))
    assert {k: out[k] for k in ("verdict", "estimate", "suggestions")} == {
        k: shown[k] for k in ("verdict", "estimate", "suggestions")
    }
    status, out = server.post("/api/vram-check", train_body(server))  # this machine's GPU 0: none here
    assert status == 200 and (out["verdict"] == "skipped" or out["budget"])


def test_queue_add_list_remove(server: Server) -> None:
    status, out = server.post("/api/queue", train_body(server, "output.name=queued-one"))
    assert status == 201, out
    job = out["job"]
    assert job["name"] == "queued-one" and job["status"] == "queued"
    status, q = server.get("/api/queue")
    assert [j["id"] for j in q["jobs"]] == [job["id"]] and q["runner"] == {"running": False, "pid": None}
    status, html = server.get("/queue")
    assert "queued-one" in html
    status, out = server.post("/api/queue", train_body(server, "output.name=queued-two"))
    second = out["job"]["id"]
    status, moved = server.post(f"/api/queue/{second}/move", {"to": 1})
    assert status == 200 and moved["order"] == [second, job["id"]]
    status, q = server.get("/api/queue")
    assert [j["name"] for j in q["jobs"]] == ["queued-two", "queued-one"]
    for jid in (job["id"], second):
        status, out, _ = server.request("DELETE", f"/api/queue/{jid}")
        assert status == 200 and out["removed"] == [jid]
    status, q = server.get("/api/queue")
    assert q["jobs"] == []
    status, out = server.post("/api/queue", train_body(server, "training.batch_size=0"))
    assert status == 400 and out["fields"][0]["path"] == "training.batch_size"


def test_queue_runner_start_and_stop(server: Server) -> None:
    status, out = server.post("/api/queue/runner/stop")
    assert status == 409 and "not running" in out["error"]
    # nothing queued: `lorakit queue run` works through an empty queue and stops at once
    status, out = server.post("/api/queue/runner/start")
    assert status == 202 and out["running"] is False and out["exit_code"] == 0, out
    status, q = server.get("/api/queue")
    assert q["runner"]["running"] is False
