// The dashboard: polls /dashboard/data, fills the tables, and draws rates from the difference between two reads.
"use strict";

const POLL_MS = 1500;   // one read of /dashboard/data every 1.5 s
const WINDOW = 200;     // points kept per trace (5 minutes)
const TOKEN_KEY = "clipper-admin-token";  // sessionStorage: gone when the browser session ends

const $ = (selector) => document.querySelector(selector);
let previous = null;
const charts = {
  throughput: { div: "chart-throughput", y: "req/s", traces: {} },
  latency: { div: "chart-latency", y: "ms", traces: {} },
  batch: { div: "chart-batch", y: "inputs per batch", traces: {} },
  defaults: { div: "chart-defaults", y: "defaults/s", traces: {} },
};

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function showTokenState() {
  $("#token-state").textContent = token() ? "actions enabled for this session" : "read-only";
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  $("#token").value = "";
  showTokenState();
});

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderApps(apps) {
  const body = $("#apps tbody");
  body.replaceChildren(...apps.map((app) => {
    const tr = document.createElement("tr");
    tr.dataset.app = app.name;
    const policy = app.selection_policy || { name: "default" };
    const params = policy.params && Object.keys(policy.params).length ? " " + JSON.stringify(policy.params) : "";
    tr.append(cell(app.name), cell(app.input_type), cell(String(app.slo_micros / 1000)),
              cell(app.linked_models.join(", ") || "-"), cell(policy.name + params));
    return tr;
  }));
}

function actionButton(label, onClick) {
  const button = document.createElement("button");
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

async function admin(path, body, what) {
  const result = $("#action-result");
  result.className = "";
  result.textContent = what + "...";
  const headers = { "Content-Type": "application/json" };
  if (token()) headers["X-Clipper-Admin-Token"] = token();
  try {
    const reply = await fetch("/admin/" + path, { method: "POST", headers, body: JSON.stringify(body) });
    const text = await reply.text();
    let message = text;
    try { message = JSON.parse(text).cause || text; } catch (e) { /* plain-text success */ }
    result.className = reply.ok ? "done" : "refused";
    result.textContent = (reply.ok ? what + ": " : what + " refused: ") + message;
  } catch (e) {
    result.className = "refused";
    result.textContent = what + " failed: " + e;
  }
  poll();
}

function renderModels(models) {
  const body = $("#models tbody");
  body.replaceChildren(...models.map((m) => {
    const tr = document.createElement("tr");
    tr.dataset.model = m.name + ":" + m.version;
    const states = m.replicas.map((r) => r.status);
    const ready = states.filter((s) => s === "ready").length;
    const errors = m.replicas.map((r) => r.last_error).filter(Boolean);
    const caps = m.replicas.map((r) => (r.batch_cap == null ? "-" : r.batch_cap));
    const stateCell = cell(states.join(", ") || "-", "replica-states");
    if (states.length) stateCell.classList.add("state-" + (states.every((s) => s === "ready") ? "ready" : states.find((s) => s !== "ready")));
    tr.append(cell(m.name), cell(m.version, m.current ? "current" : ""), cell(ready + "/" + m.replicas.length, "replica-count"),
              stateCell, cell(String(m.replicas.reduce((n, r) => n + r.restarts, 0)), "restarts"),
              cell(caps.join(", ") || "-"), cell(errors.join("; ") || "-", errors.length ? "error" : ""));
    const actions = document.createElement("td");
    const count = document.createElement("input");
    count.type = "number"; count.min = "0"; count.value = String(m.replicas.length); count.className = "scale-to";
    actions.append(count, actionButton("Scale", () => admin("set_num_replicas",
      { model_name: m.name, model_version: m.version, num_replicas: Number(count.value) },
      "Scale " + m.name + ":" + m.version + " to " + count.value)));
    if (!m.current) {
      actions.append(actionButton("Make current", () => admin("set_model_version",
        { model_name: m.name, model_version: m.version }, "Roll " + m.name + " to version " + m.version)));
    }
    tr.append(actions);
    return tr;
  }));
}

function quantileMs(before, after, q) {
  // before/after: cumulative [le, count] buckets (le null = +Inf); linear within the bucket that holds the quantile
  const delta = after.map(([le, c], i) => [le === null ? Infinity : le, c - (before[i] ? before[i][1] : 0)]);
  const total = delta.length ? delta[delta.length - 1][1] : 0;
  if (total <= 0) return null;
  const target = q * total;
  let lowLe = 0, lowCount = 0;
  for (const [le, c] of delta) {
    if (c >= target) {
      if (!isFinite(le)) return lowLe * 1000;
      return (lowLe + (le - lowLe) * ((target - lowCount) / Math.max(c - lowCount, 1e-9))) * 1000;
    }
    lowLe = le; lowCount = c;
  }
  return null;
}

function plot(chart, points, when) {
  // points: {trace name: value}; adds a trace the first time a name appears
  const div = document.getElementById(chart.div);
  const names = Object.keys(points);
  for (const name of names) {
    if (!(name in chart.traces)) {
      chart.traces[name] = Object.keys(chart.traces).length;
      Plotly.addTraces(div, { x: [], y: [], name, mode: "lines" });
    }
  }
  if (!names.length) return;
  Plotly.extendTraces(div, { x: names.map(() => [when]), y: names.map((n) => [points[n]]) },
                      names.map((n) => chart.traces[n]), WINDOW);
}

function setLast(which, value, digits) {
  $(`output[data-last="${which}"]`).textContent = value === null ? "-" : value.toFixed(digits);
}

function drawRates(now, before) {
  const dt = now.time - before.time;
  if (dt <= 0) return;
  const when = new Date(now.time * 1000);
  const throughput = {}, latency = {}, batch = {}, defaults = {};
  for (const [app, s] of Object.entries(now.series.apps)) {
    const b = before.series.apps[app] || { requests: 0, latency_buckets: [], defaults: {} };
    throughput[app] = (s.requests - b.requests) / dt;
    const p50 = quantileMs(b.latency_buckets, s.latency_buckets, 0.5);
    const p99 = quantileMs(b.latency_buckets, s.latency_buckets, 0.99);
    if (p50 !== null) { latency[app + " p50"] = p50; latency[app + " p99"] = p99; }
    for (const [reason, n] of Object.entries(s.defaults)) {
      defaults[app + " " + reason] = (n - (b.defaults[reason] || 0)) / dt;
    }
  }
  for (const [model, s] of Object.entries(now.series.models)) {
    const b = before.series.models[model] || { batches: 0, inputs_batched: 0, predictions: 0, batch_latency_buckets: [] };
    throughput["model " + model] = (s.predictions - b.predictions) / dt;  // inputs the model version was sent
    if (s.batches > b.batches) {
      batch[model] = (s.inputs_batched - b.inputs_batched) / (s.batches - b.batches);
      latency["model " + model + " batch p50"] = quantileMs(b.batch_latency_buckets, s.batch_latency_buckets, 0.5);
      latency["model " + model + " batch p99"] = quantileMs(b.batch_latency_buckets, s.batch_latency_buckets, 0.99);
    }
  }
  plot(charts.throughput, throughput, when);
  plot(charts.latency, latency, when);
  plot(charts.batch, batch, when);
  plot(charts.defaults, defaults, when);
  const sum = (o) => Object.values(o).reduce((a, v) => a + v, 0);
  const max = (o) => (Object.keys(o).length ? Math.max(...Object.values(o)) : null);
  const apps = (o) => Object.fromEntries(Object.entries(o).filter(([k]) => !k.startsWith("model ")));
  setLast("throughput", sum(apps(throughput)), 1);
  setLast("latency", max(Object.fromEntries(Object.entries(apps(latency)).filter(([k]) => k.endsWith("p99")))), 2);
  setLast("batch", max(batch), 1);
  setLast("defaults", sum(defaults), 1);
}

async function poll() {
  try {
    const reply = await fetch("/dashboard/data", { cache: "no-store" });
    const now = await reply.json();
    $("#frontend").textContent = "frontend " + now.frontend;
    $("#status").textContent = "updated " + new Date(now.time * 1000).toLocaleTimeString();
    $("#status").className = "";
    renderApps(now.apps);
    renderModels(now.models);
    if (previous) drawRates(now, previous);
    previous = now;
  } catch (e) {
    $("#status").textContent = "cannot reach the cluster: " + e;
    $("#status").className = "stale";
  }
}

for (const chart of Object.values(charts)) {
  Plotly.newPlot(chart.div, [], { margin: { t: 10, r: 10, b: 30, l: 50 }, yaxis: { title: { text: chart.y }, rangemode: "tozero" },
                                  legend: { orientation: "h" } }, { displayModeBar: false, responsive: true });
}
showTokenState();
poll();
setInterval(poll, POLL_MS);
