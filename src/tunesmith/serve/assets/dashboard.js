// tunesmith's dashboard: plain DOM and SVG, no framework and nothing fetched from elsewhere. Pages are hash routes:
// #/runs, #/run/NAME, #/compare?run=a&run=b, #/data, #/new, #/playground. Every request goes to this server's own
// API with the login cookie (same origin).
"use strict";

const main = document.getElementById("main");
const COLORS = ["#2f5fd0", "#d0542f", "#1f9d55", "#8a3fd1", "#c99a06", "#0e8a9b", "#b4236b", "#555"];
let cleanup = [];  // what the current page must stop (event sources, timers) when another one opens

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function fmt(value, digits = 4) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "";
}
function signed(value, digits = 3) {
  return typeof value === "number" && isFinite(value) ? (value >= 0 ? "+" : "") + value.toFixed(digits) : "";
}
function duration(seconds) {
  if (typeof seconds !== "number") return "";
  return seconds < 90 ? `${seconds.toFixed(0)} s` : seconds < 5400 ? `${(seconds / 60).toFixed(1)} min` : `${(seconds / 3600).toFixed(1)} h`;
}
async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body?.error?.message || `HTTP ${response.status}`);
  return body;
}
function statusBadge(status) {
  return `<span class="status ${esc(status)}">${esc(status)}</span>`;
}
function showError(err) {
  main.insertAdjacentHTML("afterbegin", `<p class="error">${esc(err.message || err)}</p>`);
}

// --- charts ----------------------------------------------------------------------------------------------------

// series: [{name, points: [[x, y], ...]}]; draws lines on shared axes, with a legend.
function lineChart(series, { width = 640, height = 260, xLabel = "step", yLabel = "" } = {}) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return `<div class="chart muted" style="padding:20px">no ${esc(yLabel)} records yet</div>`;
  const pad = { l: 52, r: 12, t: 10, b: 30 };
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) x1 = x0 + 1;
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  let svg = `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${esc(yLabel)} by ${esc(xLabel)}">`;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg += `<line x1="${pad.l}" x2="${width - pad.r}" y1="${Y(y)}" y2="${Y(y)}" stroke="#eceff3"/>`;
    svg += `<text x="${pad.l - 6}" y="${Y(y) + 4}" text-anchor="end">${esc(y.toPrecision(3))}</text>`;
  }
  svg += `<text x="${X(x0)}" y="${height - 8}">${esc(x0)}</text><text x="${X(x1)}" y="${height - 8}" text-anchor="end">${esc(x1)}</text>`;
  svg += `<text x="${(pad.l + width) / 2}" y="${height - 8}" text-anchor="middle">${esc(xLabel)}</text>`;
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
    svg += `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6" data-series="${esc(s.name)}"/>`;
    if (s.points.length < 40) s.points.forEach((p) => { svg += `<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="2.5" fill="${color}"/>`; });
  });
  svg += "</svg>";
  const legend = series.map((s, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.name)}</span>`).join("");
  return `<div class="chart"><div class="legend">${legend} <span class="muted">${esc(yLabel)}</span></div>${svg}</div>`;
}

function curves(records) {
  // train steps carry no split; evaluations say theirs (eval, forgetting, ...)
  const train = records.filter((r) => r.split === undefined && typeof r.loss === "number").map((r) => [r.step, r.loss]);
  const evals = records.filter((r) => r.split === "eval" && typeof r.loss === "number").map((r) => [r.step, r.loss]);
  return { train, evals };
}

// --- runs --------------------------------------------------------------------------------------------------------

const RUN_COLUMNS = [
  ["name", "run", (r) => `<a href="#/run/${encodeURIComponent(r.name)}">${esc(r.name)}</a>`],
  ["status", "status", (r) => statusBadge(r.status)],
  ["base", "base", (r) => esc(r.base)],
  ["method", "method", (r) => esc([r.method, r.adapter].filter(Boolean).join(" / "))],
  ["data", "data", (r) => esc((r.data || []).map((d) => d.split("/").slice(-2).join("/")).join(", "))],
  ["metric", "headline", (r) => esc(r.headline?.metric)],
  ["value", "value", (r) => fmt(r.headline?.value), "num"],
  ["gain", "gain over base [95% CI]", (r) => r.headline?.gain == null ? "" :
    `${signed(r.headline.gain)}${r.headline.low == null ? "" : ` [${signed(r.headline.low)}, ${signed(r.headline.high)}]`}`, "num"],
  ["forgetting", "forgetting", (r) => !r.forgetting?.families ? "" : r.forgetting.worse.length ?
    `<span class="bad">${r.forgetting.worse.length} of ${r.forgetting.families} worse</span>` : `<span class="good">none of ${r.forgetting.families}</span>`],
  ["train_seconds", "training", (r) => duration(r.train_seconds), "num"],
];
const sortValue = {
  value: (r) => r.headline?.value ?? -Infinity, gain: (r) => r.headline?.gain ?? -Infinity, metric: (r) => r.headline?.metric ?? "",
  forgetting: (r) => r.forgetting?.worse?.length ?? -1, data: (r) => (r.data || []).join(","), train_seconds: (r) => r.train_seconds ?? -1,
};

async function runsPage() {
  main.innerHTML = `<h1>Runs</h1><div class="toolbar">
    <input id="filter" placeholder="filter: name, base, method, data" size="36">
    <select id="status-filter"><option value="">every status</option><option>succeeded</option><option>running</option>
      <option>stopped</option><option>failed</option><option>queued</option><option>cancelled</option></select>
    <button id="compare-selected" class="secondary">Compare selected</button></div><div id="runs-table">loading...</div>
    <div id="studies"></div>`;
  const [{ runs }, { studies }] = await Promise.all([api("/dashboard/api/runs"), api("/dashboard/api/studies")]);
  if (studies.length) {
    document.getElementById("studies").innerHTML = `<h2>Selections and sweeps</h2><table id="studies-table"><tbody>${studies.map((s) =>
      `<tr><td><a href="/dashboard/studies/${encodeURIComponent(s.name)}/${s.kind}" target="_blank">${esc(s.name)}</a></td>
      <td>${esc(s.kind)}</td><td>${esc(s.chosen)}</td></tr>`).join("")}</tbody></table>`;
  }
  let sort = { key: "", desc: false };
  const draw = () => {
    const text = document.getElementById("filter").value.toLowerCase();
    const wanted = document.getElementById("status-filter").value;
    let rows = runs.filter((r) => (!wanted || r.status === wanted) &&
      [r.name, r.base, r.method, r.adapter, ...(r.data || [])].join(" ").toLowerCase().includes(text));
    if (sort.key) {
      const key = sortValue[sort.key] || ((r) => r[sort.key] ?? "");
      rows = rows.slice().sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (sort.desc ? -1 : 1));
    }
    const head = RUN_COLUMNS.map(([key, label, , cls]) =>
      `<th data-key="${key}" class="${cls || ""}">${esc(label)}${sort.key === key ? (sort.desc ? " ▼" : " ▲") : ""}</th>`).join("");
    const body = rows.map((r) => `<tr data-run="${esc(r.name)}"><td><input type="checkbox" class="pick" value="${esc(r.name)}"></td>` +
      RUN_COLUMNS.map(([, , cell, cls]) => `<td class="${cls || ""}">${cell(r)}</td>`).join("") + "</tr>").join("");
    document.getElementById("runs-table").innerHTML = rows.length ?
      `<table id="runs"><thead><tr><th></th>${head}</tr></thead><tbody>${body}</tbody></table>` :
      `<p class="muted">No runs${runs.length ? " match" : " yet: start one under New job"}.</p>`;
    document.querySelectorAll("#runs th[data-key]").forEach((th) => th.addEventListener("click", () => {
      sort = { key: th.dataset.key, desc: sort.key === th.dataset.key ? !sort.desc : false };
      draw();
    }));
  };
  document.getElementById("filter").addEventListener("input", draw);
  document.getElementById("status-filter").addEventListener("change", draw);
  document.getElementById("compare-selected").addEventListener("click", () => {
    const picked = [...document.querySelectorAll(".pick:checked")].map((c) => c.value);
    location.hash = "#/compare?" + picked.map((n) => "run=" + encodeURIComponent(n)).join("&");
  });
  draw();
}

// --- one run -----------------------------------------------------------------------------------------------------

async function runPage(name) {
  main.innerHTML = `<h1>${esc(name)}</h1><div id="run-head">loading...</div><h2>Loss</h2><div id="loss-chart"></div>
    <div id="run-events"></div><h2>Report</h2><div id="run-docs"></div>`;
  const run = await api(`/dashboard/api/runs/${encodeURIComponent(name)}`);
  const records = run.metrics.slice();
  const head = () => {
    const h = run.headline || {};
    document.getElementById("run-head").innerHTML = `<div class="cards">
      <div class="card">status <b id="run-status">${statusBadge(run.status)}</b></div>
      <div class="card">base <b>${esc(run.base)}</b></div>
      <div class="card">method <b>${esc(run.method)} ${esc(run.adapter)}</b></div>
      <div class="card">step <b id="run-step">${esc(run.step)}${run.max_steps ? " / " + esc(run.max_steps) : ""}</b></div>
      <div class="card">${esc(h.metric || "headline")} <b>${fmt(h.value)}</b>${h.gain == null ? "" :
        `gain ${signed(h.gain)}${h.low == null ? "" : ` [${signed(h.low)}, ${signed(h.high)}]`}`}</div>
      <div class="card">forgetting <b>${run.forgetting?.families ? `${run.forgetting.worse.length} of ${run.forgetting.families} worse` : "-"}</b>
        ${esc((run.forgetting?.worse || []).join(", "))}</div></div>`;
  };
  const drawChart = () => {
    const { train, evals } = curves(records);
    document.getElementById("loss-chart").innerHTML = lineChart(
      [{ name: "train loss", points: train }, { name: "held-out loss", points: evals }], { yLabel: "loss", width: 1100, height: 300 });
    const last = records.filter((r) => r.split === undefined).pop();
    if (last) document.getElementById("run-step").textContent = `${last.step}${run.max_steps ? " / " + run.max_steps : ""}`;
  };
  head();
  drawChart();
  const docs = run.documents.map((d) => `<a href="/dashboard/runs/${encodeURIComponent(name)}/${d}" target="_blank">${esc(d)}</a>`);
  if (run.final) docs.push(`<a href="/dashboard/runs/${encodeURIComponent(name)}/final.zip" id="download-final">download final/</a>`);
  document.getElementById("run-docs").innerHTML = `<p>${docs.join(" · ")}${run.exports.length ?
    ` · exports: ${esc(run.exports.join(", "))} (in the run folder)` : ""}</p>` +
    (run.documents.includes("report") ? `<iframe src="/dashboard/runs/${encodeURIComponent(name)}/report" title="report"></iframe>` : "");
  if (run.job) await jobEvents(run.job.id);
  // live: metrics.jsonl as server-sent events, from the end of what was read
  const offset = run.metrics_bytes || 0;
  const source = new EventSource(`/dashboard/api/runs/${encodeURIComponent(name)}/stream?offset=${offset}`);
  cleanup.push(() => source.close());
  source.addEventListener("metric", (event) => { records.push(JSON.parse(event.data)); drawChart(); });
  source.addEventListener("status", (event) => {
    source.close();
    const status = JSON.parse(event.data).status;
    if (status !== run.status) { runPage(name); }  // finished while watched: show the final record
  });
}

async function jobEvents(jobId) {
  const [job, events] = await Promise.all([api(`/v1/fine_tuning/jobs/${jobId}`), api(`/v1/fine_tuning/jobs/${jobId}/events?limit=100`)]);
  const rows = events.data.slice().reverse().map((e) =>
    `<tr><td>${esc(new Date(e.created_at * 1000).toLocaleTimeString())}</td><td>${esc(e.level)}</td><td>${esc(e.message)}</td></tr>`).join("");
  const open = !["succeeded", "failed", "cancelled"].includes(job.status);
  document.getElementById("run-events").innerHTML = `<h2>Job ${esc(jobId)} <span id="run-job-status">${statusBadge(job.status)}</span></h2>
    ${open ? `<button id="run-cancel" class="secondary">Cancel job</button>` : ""}<table><tbody>${rows}</tbody></table>`;
  document.getElementById("run-cancel")?.addEventListener("click", async () => {
    const cancelled = await api(`/v1/fine_tuning/jobs/${jobId}/cancel`, { method: "POST" });
    document.getElementById("run-job-status").innerHTML = statusBadge(cancelled.status);
    document.getElementById("run-cancel").remove();
  });
}

// --- compare -----------------------------------------------------------------------------------------------------

async function comparePage(query) {
  const names = query.getAll("run");
  if (names.length < 2) {
    main.innerHTML = `<h1>Compare</h1><p class="muted">Pick two or more runs on the Runs page and press Compare selected.</p>`;
    return;
  }
  main.innerHTML = `<h1>Compare</h1><p>loading...</p>`;
  const data = await api("/dashboard/api/compare?" + names.map((n) => "run=" + encodeURIComponent(n)).join("&"));
  const trainSeries = data.runs.map((r) => ({ name: r.name, points: curves(r.metrics).train }));
  const evalSeries = data.runs.map((r) => ({ name: r.name, points: curves(r.metrics).evals }));
  const metricRows = data.runs.map((r) => {
    const h = r.headline || {};
    const finalLoss = r.eval?.tuned?.metrics?.loss;
    return `<tr><td>${esc(r.name)}</td><td>${statusBadge(r.status)}</td><td>${esc(h.metric)}</td><td class="num">${fmt(h.value)}</td>
      <td class="num">${signed(h.gain)}${h.low == null ? "" : ` [${signed(h.low)}, ${signed(h.high)}]`}</td>
      <td class="num">${fmt(finalLoss)}</td><td>${r.forgetting?.families ? `${r.forgetting.worse.length} of ${r.forgetting.families} worse` : ""}</td>
      <td class="num">${duration(r.train_seconds)}</td></tr>`;
  }).join("");
  const diffRows = data.config_diff.map((d) => `<tr><td>${esc(d.key)}</td>${d.values.map((v) =>
    `<td>${v == null ? '<span class="muted">unset</span>' : esc(typeof v === "object" ? JSON.stringify(v) : v)}</td>`).join("")}</tr>`).join("");
  main.innerHTML = `<h1>Compare</h1>
    <div class="pair"><div><h2>Train loss</h2>${lineChart(trainSeries, { yLabel: "train loss" })}</div>
    <div><h2>Held-out loss</h2>${lineChart(evalSeries, { yLabel: "held-out loss" })}</div></div>
    <h2>Metrics</h2><table id="compare-metrics"><thead><tr><th>run</th><th>status</th><th>headline</th><th class="num">value</th>
    <th class="num">gain [95% CI]</th><th class="num">final held-out loss</th><th>forgetting</th><th class="num">training</th></tr></thead>
    <tbody>${metricRows}</tbody></table>
    <h2>Config differences</h2><table id="config-diff"><thead><tr><th>key</th>${data.runs.map((r) => `<th>${esc(r.name)}</th>`).join("")}</tr></thead>
    <tbody>${diffRows || `<tr><td colspan="${data.runs.length + 1}" class="muted">the configs are the same</td></tr>`}</tbody></table>`;
}

// --- data --------------------------------------------------------------------------------------------------------

function auditSummary(audit) {
  if (!audit) return `<p class="muted">No audit (no valid rows, or no tokenizer to count with).</p>`;
  const shape = Object.entries(audit.shape || {}).map(([split, s]) => `<tr><td>${esc(split)}</td><td class="num">${esc(s.rows ?? "")}</td>
    <td class="num">${esc(s.sequence_tokens?.percentiles?.p50 ?? "")}</td><td class="num">${esc(s.sequence_tokens?.percentiles?.p95 ?? "")}</td>
    <td class="num">${esc(s.truncated_rows ?? "")}</td><td class="num">${esc(s.zero_trained ?? "")}</td></tr>`).join("");
  const dups = Object.entries(audit.duplicates || {}).map(([split, d]) => `${esc(split)}: ${esc(d.exact_rows ?? 0)} exact copies, ${esc(d.near_rows ?? 0)} near`).join("; ");
  const privacy = audit.privacy?.checked ? `${esc(audit.privacy.rows)} rows with personal data or secrets` +
    (audit.privacy.rows ? ` (${Object.entries(audit.privacy.per_kind).map(([k, v]) => `${esc(k)} ${esc(v.rows)}`).join(", ")})` : "") : "not checked";
  const labels = audit.labels ? `<p>labels: ${esc(JSON.stringify(audit.labels.counts ?? audit.labels))}</p>` : "";
  return `<h2>Audit</h2><table id="audit-shape"><thead><tr><th>split</th><th class="num">rows</th><th class="num">median tokens</th>
    <th class="num">95th percentile</th><th class="num">truncated</th><th class="num">train nothing</th></tr></thead><tbody>${shape}</tbody></table>
    <p>duplicates: ${dups || "none"}</p><p id="audit-privacy">privacy: ${privacy}</p>${labels}`;
}

async function dataPage() {
  main.innerHTML = `<h1>Data</h1><p>Check a file before training on it: every bad row named (file:line, field, reason), then the
    audit (lengths, duplicates, personal data, labels). Nothing is kept.</p>
    <form id="data-form"><input type="file" id="data-file" name="file" accept=".jsonl,.json,.csv,.tsv" required>
    <button type="submit">Check</button></form><div id="data-result"></div>`;
  document.getElementById("data-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = document.getElementById("data-file").files[0];
    const form = new FormData();
    form.append("file", file);
    const out = document.getElementById("data-result");
    out.innerHTML = "checking...";
    try {
      const result = await api("/dashboard/api/data/check", { method: "POST", body: form });
      if (result.fatal) { out.innerHTML = `<p class="error" id="data-fatal">${esc(result.fatal)}</p>`; return; }
      const errors = result.errors.map((e) => `<tr><td>${esc(e.where)}</td><td>${esc(e.field)}</td><td>${esc(e.reason)}</td></tr>`).join("");
      out.innerHTML = `<p id="data-summary">${esc(result.file)}: ${esc(result.rows)} rows, ${esc(result.valid)} valid (${esc(result.kind)}),
        <span class="${result.error_count ? "bad" : "good"}">${esc(result.error_count)} with errors</span></p>` +
        (errors ? `<table id="row-errors"><thead><tr><th>where</th><th>field</th><th>reason</th></tr></thead><tbody>${errors}</tbody></table>` : "") +
        auditSummary(result.audit);
    } catch (err) { out.innerHTML = `<p class="error">${esc(err.message)}</p>`; }
  });
}

// --- new job -----------------------------------------------------------------------------------------------------

async function newJobPage() {
  main.innerHTML = `<h1>New job</h1><p>loading...</p>`;
  const [models, help] = await Promise.all([api("/v1/models"), api("/dashboard/api/config-help")]);
  const options = models.data.filter((m) => m.task === "generation").map((m) => `<option>${esc(m.id)}</option>`).join("");
  const field = (key, label, attrs) => `<label>${esc(label)} <input id="${key.replace(".", "-").replace("hyperparameters-", "hp-")}" ${attrs}>
    <span class="help">${esc(help[key] || "")}</span></label><br>`;
  main.innerHTML = `<h1>New job</h1><form id="job-form">
    <label>base model <select id="job-model">${options}</select></label><br>
    <label>training file (JSONL) <input type="file" id="job-file" accept=".jsonl" required></label><br>
    <label>method <select id="job-method"><option value="supervised">supervised</option><option value="dpo">dpo (preference pairs)</option></select></label><br>
    ${field("train.max_steps", "steps", 'type="number" min="1" value="20"')}
    ${field("adapter.r", "LoRA rank", 'type="number" min="1" placeholder="default"')}
    ${field("hyperparameters.n_epochs", "epochs", 'type="number" min="1" placeholder="auto"')}
    ${field("hyperparameters.batch_size", "batch size", 'type="number" min="1" placeholder="auto"')}
    ${field("hyperparameters.learning_rate_multiplier", "learning rate multiplier", 'type="number" step="any" min="0" placeholder="auto"')}
    <label>dpo beta <input id="job-beta" type="number" step="any" min="0" placeholder="0.1"></label><br>
    <label>name suffix <input id="job-suffix" maxlength="40" placeholder="e.g. support"></label><br>
    <label>more settings <textarea id="job-extra" rows="3" cols="50" placeholder="key=value, one per line (train, adapter, eval, audit, data sections)"></textarea>
    <span class="help">Any config setting as on the command line, e.g. eval.general=false or adapter.alpha=32.</span></label><br>
    <button type="submit" id="job-launch">Launch</button></form><div id="job-watch"></div>`;
  document.getElementById("job-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const watch = document.getElementById("job-watch");
    try {
      const form = new FormData();
      form.append("file", document.getElementById("job-file").files[0]);
      form.append("purpose", "fine-tune");
      watch.innerHTML = "uploading and checking the file...";
      const file = await api("/v1/files", { method: "POST", body: form });
      const overrides = [];
      for (const key of ["train.max_steps", "adapter.r"]) {
        const value = document.getElementById(key.replace(".", "-")).value;
        if (value !== "") overrides.push(`${key}=${value}`);
      }
      const hyperparameters = {};
      for (const name of ["n_epochs", "batch_size", "learning_rate_multiplier"]) {
        const value = document.getElementById(`hp-${name}`).value;
        if (value !== "") hyperparameters[name] = Number(value);
      }
      for (const line of document.getElementById("job-extra").value.split("\n")) {
        if (line.trim()) overrides.push(line.trim());
      }
      const method = document.getElementById("job-method").value;
      const body = { model: document.getElementById("job-model").value, training_file: file.id, overrides };
      const suffix = document.getElementById("job-suffix").value;
      if (suffix) body.suffix = suffix;
      const beta = document.getElementById("job-beta").value;
      body.method = method === "dpo" ?
        { type: "dpo", dpo: { hyperparameters: { ...hyperparameters, ...(beta ? { beta: Number(beta) } : {}) } } } :
        { type: "supervised", supervised: { hyperparameters } };
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      watchJob(job.id);
    } catch (err) { watch.innerHTML = `<p class="error" id="job-error">${esc(err.message)}</p>`; }
  });
}

function watchJob(jobId) {
  const watch = document.getElementById("job-watch");
  const tick = async () => {
    const job = await api(`/v1/fine_tuning/jobs/${jobId}`);
    const events = await api(`/v1/fine_tuning/jobs/${jobId}/events?limit=8`);
    const done = ["succeeded", "failed", "cancelled"].includes(job.status);
    const run = job.fine_tuned_model ? job.fine_tuned_model.split(":").pop() : null;
    watch.innerHTML = `<h2>Job ${esc(job.id)} ${statusBadge(job.status)}</h2>
      ${done ? "" : `<button id="job-cancel" class="secondary">Cancel</button>`}
      ${job.error ? `<p class="error">${esc(job.error.message)}</p>` : ""}
      ${run ? `<p><a href="#/run/${encodeURIComponent(run)}" id="job-run">open the run</a></p>` : ""}
      <ul>${events.data.map((e) => `<li>${esc(e.message)}</li>`).join("")}</ul>`;
    document.getElementById("job-cancel")?.addEventListener("click", () => api(`/v1/fine_tuning/jobs/${jobId}/cancel`, { method: "POST" }));
    if (!done) timer = setTimeout(tick, 1500);
  };
  let timer = setTimeout(tick, 0);
  cleanup.push(() => clearTimeout(timer));
}

// --- playground --------------------------------------------------------------------------------------------------

async function stream(model, prompt, out) {
  out.textContent = "";
  const response = await fetch("/v1/chat/completions", {
    method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: prompt }], stream: true, temperature: 0, max_tokens: 200 }),
  });
  if (!response.ok) { out.textContent = (await response.json()).error?.message || `HTTP ${response.status}`; return; }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "").trim();
      if (!data || data === "[DONE]") continue;
      const delta = JSON.parse(data).choices?.[0]?.delta?.content;
      if (delta) out.textContent += delta;
    }
  }
  out.dataset.done = "true";
}

async function playgroundPage() {
  main.innerHTML = `<h1>Playground</h1><p>loading...</p>`;
  const models = (await api("/v1/models")).data.filter((m) => m.task === "generation");
  const options = (tuned) => models.filter((m) => (m.owned_by === "user") === tuned).map((m) => `<option>${esc(m.id)}</option>`).join("");
  main.innerHTML = `<h1>Playground</h1><p>One prompt, two models, greedy answers streamed side by side.</p>
    <div class="toolbar"><label>left <select id="pg-left">${options(false)}</select></label>
    <label>right <select id="pg-right">${options(true) || options(false)}</select></label></div>
    <form id="pg-form"><textarea id="pg-prompt" rows="3" cols="90" placeholder="Ask something" required></textarea><br>
    <button type="submit" id="pg-send">Send</button></form>
    <div class="pair"><div><h2 id="pg-left-name"></h2><div class="answer" id="pg-left-answer"></div></div>
    <div><h2 id="pg-right-name"></h2><div class="answer" id="pg-right-answer"></div></div></div>`;
  document.getElementById("pg-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = document.getElementById("pg-prompt").value;
    for (const side of ["left", "right"]) {
      const model = document.getElementById(`pg-${side}`).value;
      document.getElementById(`pg-${side}-name`).textContent = model;
      const out = document.getElementById(`pg-${side}-answer`);
      delete out.dataset.done;
      stream(model, prompt, out).catch((err) => { out.textContent = err.message; });
    }
  });
}

// --- router ------------------------------------------------------------------------------------------------------

async function route() {
  cleanup.forEach((stop) => stop());
  cleanup = [];
  const [path, search] = (location.hash.slice(1) || "/runs").split("?");
  const query = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === (parts[0] === "run" ? "runs" : parts[0])));
  try {
    if (parts[0] === "run" && parts[1]) await runPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "compare") await comparePage(query);
    else if (parts[0] === "data") await dataPage();
    else if (parts[0] === "new") await newJobPage();
    else if (parts[0] === "playground") await playgroundPage();
    else await runsPage();
  } catch (err) { showError(err); }
}
window.addEventListener("hashchange", route);
route();
