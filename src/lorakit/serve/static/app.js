// lorakit serve: the live parts of the server-rendered pages (vanilla JS, no build step).
"use strict";
const $ = (sel) => document.querySelector(sel);
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function api(method, url, body) {
  const opts = { method, headers: { "X-CSRF-Token": csrf() } };
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body || {});
  }
  const res = await fetch(url, opts);
  let data = {};
  try { data = await res.json(); } catch (e) { data = {}; }
  return { ok: res.ok, status: res.status, data };
}

function say(text, bad) {
  const el = $("#action-msg");
  if (el) { el.textContent = text || ""; el.style.color = bad ? "#b91c1c" : ""; }
}

function errText(data) {
  return (data.error || "failed") + (data.fix ? " — Fix: " + data.fix : "");
}

function fmtDuration(s) {
  if (typeof s !== "number" || !isFinite(s)) return "-";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

// ---- loss chart: a canvas polyline (min/max axes, last value) --------------------------------
function drawLoss(canvas, points) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 900, h = canvas.clientHeight || 240;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  canvas.dataset.points = String(points.length);
  ctx.fillStyle = "#6b7386"; ctx.font = "11px sans-serif";
  if (!points.length) { ctx.fillText("no loss yet", 10, 20); return; }
  const pad = { l: 50, r: 10, t: 10, b: 22 };
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]).filter((v) => isFinite(v));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#e3e6ec"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, yy = Y(yv);
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(yv.toPrecision(4), 4, yy + 4);
  }
  ctx.fillText(String(x0), pad.l, h - 6);
  ctx.fillText(String(x1), w - pad.r - 30, h - 6);
  ctx.strokeStyle = "#2563eb"; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach((p, i) => { if (!isFinite(p[1])) return; i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1])); });
  ctx.stroke();
}

// ---- one run: snapshot + SSE ------------------------------------------------------------------
function runPage() {
  const snap = JSON.parse($("#snapshot").textContent);
  const run = snap.run;
  let points = snap.loss_series.slice();
  let source = snap.loss_source;
  const canvas = $("#loss");
  let total = snap.live.total;
  drawLoss(canvas, points);
  const setStep = (step, tot) => {
    if (tot) total = tot;
    $("#step").textContent = `${step}/${total || "?"}`;
    if (total) $("#bar").style.width = `${Math.min(100, (100 * step) / total)}%`;
  };
  setStep(snap.live.step || 0, total);
  $("#eta").textContent = snap.status === "running" ? fmtDuration(snap.live.eta_s) : "-";
  const setStatus = (st) => {
    const el = $("#status");
    el.textContent = st; el.className = `status s-${st}`;
    $("#stop").hidden = st !== "running";
    $("#report").hidden = st === "running";
    const diag = $("#diagnosis");
    if (diag && st === "done") diag.hidden = true;  // a resumed run's earlier stop is history
  };
  let redraw = null;
  const es = new EventSource(`/api/runs/${encodeURIComponent(run)}/events?from=${snap.events_offset}`);
  es.addEventListener("progress", (m) => {
    const ev = JSON.parse(m.data);
    setStep(ev.step, ev.total);
    if (typeof ev.avr_loss === "number") $("#avr-loss").textContent = ev.avr_loss.toPrecision(4);
    const v = typeof ev.loss === "number" ? ev.loss : ev.avr_loss;
    if (source === "progress" && typeof v === "number") {
      points.push([ev.step, v]);
      canvas.dataset.points = String(points.length);
      if (!redraw) redraw = requestAnimationFrame(() => { redraw = null; drawLoss(canvas, points); });
    }
  });
  es.addEventListener("loss", (m) => {  // per-step loss from the run's TensorBoard logs
    const fresh = JSON.parse(m.data);
    if (source !== "tensorboard") { source = "tensorboard"; points = []; }
    const last = points.length ? points[points.length - 1][0] : -1;
    for (const p of fresh) if (p[0] > last) points.push(p);
    canvas.dataset.points = String(points.length);
    drawLoss(canvas, points);
  });
  es.addEventListener("sample", (m) => {
    const ev = JSON.parse(m.data);
    const rel = ev.path.split("/sample/").pop();
    const box = $("#samples");
    if (box.querySelector(".dim")) box.innerHTML = "";
    const a = document.createElement("a");
    a.href = `/api/runs/${encodeURIComponent(run)}/files/sample/${rel}`;
    const img = document.createElement("img"); img.src = a.href; img.alt = rel;
    img.addEventListener("error", () => { img.replaceWith(document.createTextNode(rel)); });
    a.appendChild(img); box.appendChild(a);
  });
  es.addEventListener("checkpoint", (m) => {
    const ev = JSON.parse(m.data);
    const ul = $("#checkpoints");
    if (ul.querySelector(".dim")) ul.innerHTML = "";
    const li = document.createElement("li"); const c = document.createElement("code");
    c.textContent = ev.path; li.appendChild(c); ul.appendChild(li);
  });
  es.addEventListener("runstate", (m) => {
    const st = JSON.parse(m.data);
    setStatus(st.status);
    $("#eta").textContent = st.status === "running" ? fmtDuration(st.eta_s) : "-";
    if (st.steady_s_per_step) $("#speed").textContent = st.steady_s_per_step.toFixed(2);
    if (st.lora) { $("#lora").textContent = st.lora; $("#lora-box").hidden = false; }
  });
  es.addEventListener("finished", () => { setTimeout(() => location.reload(), 600); });
  es.addEventListener("reset", () => location.reload());
  es.addEventListener("end", () => { es.close(); });
  $("#stop").addEventListener("click", async () => {
    say("stopping…");
    const r = await api("POST", `/api/runs/${encodeURIComponent(run)}/stop`);
    say(r.ok ? `stop sent to ${r.data.signalled}` : errText(r.data), !r.ok);
  });
  $("#resume").addEventListener("click", async () => {
    say("resuming…");
    const r = await api("POST", `/api/runs/${encodeURIComponent(run)}/resume`);
    if (r.ok) location.reload(); else say(errText(r.data), true);
  });
  document.querySelectorAll("#samples img").forEach((img) => img.addEventListener("error", () => {
    img.replaceWith(document.createTextNode(img.alt + " (not an image the browser can show)"));
  }));
  $("#report").addEventListener("click", async () => {
    say("writing the report…");
    const r = await api("POST", `/api/runs/${encodeURIComponent(run)}/report`);
    if (!r.ok) { say(errText(r.data), true); return; }
    say("report written");
    const box = $("#report-links"); box.innerHTML = "";
    for (const f of [r.data.report_html, r.data.report_png, r.data.samples_png]) {
      if (!f) continue;
      const a = document.createElement("a"); a.href = `/api/runs/${encodeURIComponent(run)}/files/${f}`; a.textContent = f;
      box.appendChild(a); box.appendChild(document.createTextNode(" "));
    }
  });
  const loadLog = async () => {
    const r = await api("GET", `/api/runs/${encodeURIComponent(run)}/log?lines=200`);
    if (r.ok) { const el = $("#log"); el.textContent = r.data.lines.join("\n"); el.scrollTop = el.scrollHeight; }
  };
  loadLog();
  setInterval(() => { if ($("#status").textContent === "running") loadLog(); }, 3000);
}

// ---- runs list: refreshed every 2 s ------------------------------------------------------------
function runsPage() {
  const tbody = $("#runs tbody");
  const cell = (text, cls) => { const td = document.createElement("td"); if (cls) td.className = cls; td.textContent = text; return td; };
  setInterval(async () => {
    const r = await api("GET", `/api/runs${location.search || ""}`);
    if (!r.ok) return;
    $("#run-count").textContent = r.data.count;
    if (!r.data.runs.length) return;
    tbody.innerHTML = "";
    for (const row of r.data.runs) {
      const tr = document.createElement("tr"); tr.dataset.run = row.name;
      const a = document.createElement("a"); a.href = `/runs/${encodeURIComponent(row.name)}`; a.textContent = row.name;
      const td = document.createElement("td"); td.appendChild(a); tr.appendChild(td);
      const st = document.createElement("td"); const span = document.createElement("span");
      span.className = `status s-${row.status}`; span.textContent = row.status; st.appendChild(span); tr.appendChild(st);
      tr.appendChild(cell(`${row.step || 0}/${row.total || row.total_steps || "?"}`));
      tr.appendChild(cell(typeof row.avr_loss === "number" ? row.avr_loss.toPrecision(4) : "-"));
      tr.appendChild(cell(row.started_at ? new Date(row.started_at * 1000).toISOString().slice(0, 16).replace("T", " ") : "-"));
      tr.appendChild(cell(row.lora && row.status === "done" ? row.lora.split("/").pop() : "-"));
      tbody.appendChild(tr);
    }
  }, 2000);
}

// ---- new training ------------------------------------------------------------------------------
function formBody() {
  const overrides = [];
  document.querySelectorAll("[data-key]").forEach((el) => {
    if (el.value.trim() !== "") overrides.push(`${el.dataset.key}=${el.value.trim()}`);
  });
  $("#overrides").value.split("\n").map((l) => l.trim()).filter(Boolean).forEach((l) => overrides.push(l));
  return { preset: $("#preset").value, data: $("#data").value.trim(), overrides, force: $("#force").checked };
}

function showProblems(data) {
  document.querySelectorAll(".err[data-for]").forEach((el) => { el.textContent = ""; });
  document.querySelectorAll("input.bad").forEach((el) => el.classList.remove("bad"));
  const top = [];
  for (const f of data.fields || []) {
    const el = f.path && document.querySelector(`.err[data-for="${f.path}"]`);
    if (el) {
      el.textContent = (el.textContent ? el.textContent + " " : "") + f.message;
      const input = document.getElementById(`f-${f.path}`) || (f.path === "dataset.folder" ? $("#data") : null);
      if (input) input.classList.add("bad");
    } else top.push(f.message);
  }
  if (!(data.fields || []).length && data.error) top.push(data.error);
  $("#form-errors").textContent = top.join(" · ") + (top.length && data.fix ? " — Fix: " + data.fix : "");
}

function newPage() {
  const presets = JSON.parse($("#presets").textContent);
  const plan = $("#plan");
  let timer = null, seq = 0;
  const validate = async () => {
    const mine = ++seq;
    const r = await api("POST", "/api/validate", formBody());
    if (mine !== seq) return;
    if (r.ok) {
      showProblems({});
      const p = r.data.plan;
      plan.className = "";
      plan.innerHTML = "";
      const add = (label, text, mono) => {
        const div = document.createElement("div"); const b = document.createElement("b"); b.textContent = label + " ";
        div.appendChild(b);
        const t = document.createElement(mono ? "code" : "span"); t.textContent = text; div.appendChild(t);
        plan.appendChild(div);
      };
      add("Steps", p.steps.formula);
      for (const c of p.changes) add(`${c.key}:`, `${JSON.stringify(c.preset)} → ${JSON.stringify(c.value)}`);
      add("Run folder", p.run_dir, true);
      add("Command", p.command, true);
      for (const w of r.data.warnings) add("warning:", w);
    } else {
      showProblems(r.data);
      plan.className = "dim"; plan.textContent = "fix the fields marked in red";
    }
  };
  const later = () => { clearTimeout(timer); timer = setTimeout(validate, 250); };
  document.querySelectorAll("#train-form input, #train-form select, #train-form textarea").forEach((el) => {
    el.addEventListener("input", later);
    el.addEventListener("change", later);
  });
  $("#preset").addEventListener("change", () => {
    const p = presets.find((x) => x.name === $("#preset").value);
    $("#preset-desc").textContent = p ? p.description : "";
  });
  $("#check-vram").addEventListener("click", async () => {
    const box = $("#vram"); box.textContent = "checking…";
    const body = { ...formBody(), vram: $("#vram-size").value.trim(), fastest: $("#fastest").checked };
    const r = await api("POST", "/api/vram-check", body);
    box.className = ""; box.innerHTML = "";
    const line = (t, cls) => { const p = document.createElement("div"); p.textContent = t; if (cls) p.className = cls; box.appendChild(p); return p; };
    if (!r.ok) { line(errText(r.data), "err"); return; }
    const d = r.data;
    const verdict = line(`verdict: ${d.verdict}`); verdict.id = "vram-verdict";
    if (d.estimate) line(`estimated peak ${d.estimate.peak_gib} GiB (${d.estimate.peak_phase})`);
    if (d.budget) line(`budget: ${d.budget.source}`);
    for (const n of d.notes || []) line(n, "hint");
    const offer = (label, option) => {
      const b = document.createElement("button"); b.type = "button";
      b.textContent = `${label}: ${(option.words || []).join("; ")} → ${option.estimate_gib} GiB`;
      b.addEventListener("click", () => {
        const extra = Object.entries(option.changes || {}).map(([k, v]) => `${k}=${Array.isArray(v) ? JSON.stringify(v) : v}`);
        $("#overrides").value = ($("#overrides").value.trim() + "\n" + extra.join("\n")).trim();
        later();
      });
      const div = document.createElement("div"); div.appendChild(b); box.appendChild(div);
    };
    (d.suggestions || []).slice(0, 4).forEach((s, i) => offer(i ? "or" : "make it fit", s));
    if (d.fastest && d.fastest.changes && Object.keys(d.fastest.changes).length) offer("fastest", d.fastest);
  });
  $("#start").addEventListener("click", async () => {
    say("starting…");
    const r = await api("POST", "/api/runs", formBody());
    if (r.ok) location.href = `/runs/${encodeURIComponent(r.data.run)}`;
    else { showProblems(r.data); say(errText(r.data), true); }
  });
  $("#enqueue").addEventListener("click", async () => {
    const r = await api("POST", "/api/queue", formBody());
    if (r.ok) say(`added as job ${r.data.job.id}`); else { showProblems(r.data); say(errText(r.data), true); }
  });
  later();
}

// ---- queue, GPUs -------------------------------------------------------------------------------
function queuePage() {
  document.querySelectorAll("button.remove").forEach((b) => b.addEventListener("click", async () => {
    const r = await api("DELETE", `/api/queue/${b.dataset.job}`);
    if (r.ok) location.reload(); else say(errText(r.data), true);
  }));
  document.querySelectorAll("button.move").forEach((b) => b.addEventListener("click", async () => {
    const to = Number(b.dataset.to);
    if (to < 1) return;
    const r = await api("POST", `/api/queue/${b.dataset.job}/move`, { to });
    if (r.ok) location.reload(); else say(errText(r.data), true);
  }));
  $("#runner-start").addEventListener("click", async () => {
    const r = await api("POST", "/api/queue/runner/start");
    say(r.ok ? (r.data.running ? `runner started (pid ${r.data.pid})` : r.data.message) : errText(r.data), !r.ok);
  });
  $("#runner-stop").addEventListener("click", async () => {
    const r = await api("POST", "/api/queue/runner/stop");
    say(r.ok ? "stop sent" : errText(r.data), !r.ok);
  });
  setInterval(async () => {
    const r = await api("GET", "/api/queue");
    if (r.ok) $("#runner").textContent = r.data.runner.running ? `running (pid ${r.data.runner.pid})` : "not running";
  }, 2000);
}

function gpusPage() {
  $("#comfy-free").addEventListener("click", async () => {
    say("asking ComfyUI to unload…");
    const r = await api("POST", "/api/comfyui/free", { gpu: 0 });
    say(r.ok ? r.data.message || r.data.outcome : errText(r.data), !r.ok);
  });
  setInterval(async () => {
    const r = await api("GET", "/api/gpus");
    if (!r.ok) return;
    $("#comfy-state").textContent = r.data.comfyui.state;
    const bars = document.querySelectorAll(".gpu .bar div"), mems = document.querySelectorAll(".gpu .mem");
    r.data.gpus.forEach((g, i) => {
      if (bars[i]) bars[i].style.width = `${(100 * g.used_gib) / g.total_gib}%`;
      if (mems[i]) mems[i].textContent = `${g.used_gib} GiB used of ${g.total_gib} GiB (${g.free_gib} free)`;
    });
  }, 1000);
}

const pages = { run: runPage, runs: runsPage, new: newPage, queue: queuePage, gpus: gpusPage };
document.addEventListener("DOMContentLoaded", () => { const f = pages[document.body.dataset.page]; if (f) f(); });
