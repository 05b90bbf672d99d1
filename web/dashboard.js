// A project's dashboard: cycles with live progress (polled), the mIoU curve, per-class IoU of the
// latest cycle, queue statistics, and (for admins) starting a cycle and downloading the labels.

import { api, apiFetch, clear, el, formatPercent, formatSeconds, requireToken } from "./common.js";
import { refreshAutoCycle } from "./dashboard_auto.js";
import { drawCurve } from "./chart.js";
import { renderEffort, renderQuality } from "./dashboard_quality.js";

const $ = (id) => document.getElementById(id);
const FAST_POLL_MS = 2000, SLOW_POLL_MS = 15000;
const state = { project: null, me: null, timer: null };

function message(text, kind = "info") {
  $("message").hidden = !text;
  $("message").className = `message ${kind}`;
  $("message").textContent = text;
}

function progressCell(c) {
  if (c.status !== "running" && c.status !== "queued") return el("td", {}, c.total ? `${c.step}/${c.total}` : "");
  const bar = el("progress", { max: Math.max(1, c.total), value: c.step });
  return el("td", {}, bar, " ", c.total ? `${c.step}/${c.total}` : "waiting");
}

function cycleRow(c) {
  const m = c.metrics || {};
  const tr = el("tr", { "data-cycle": c.id, "data-status": c.status },
    el("td", {}, String(c.number), c.trigger === "auto" ? el("span", { class: "small", title: "started by the auto-cycle rule" }, " auto") : ""),
    el("td", {}, el("span", { class: `status status-${c.status}` }, c.status),
       c.cancel_requested && c.status === "running" ? " (cancelling)" : ""),
    el("td", {}, c.phase || ""),
    progressCell(c),
    el("td", {}, c.loss === null || c.loss === undefined ? "–" : c.loss.toFixed(4)),
    el("td", {}, c.status === "running" ? formatSeconds(c.eta_seconds) : "–"),
    el("td", {}, formatPercent(m.labeled_fraction, 2)),
    el("td", {}, formatPercent(m.miou)));
  if (c.error) tr.title = c.error;
  return tr;
}

function renderCycles(cycles) {
  const body = clear(document.querySelector("#cycles tbody"));
  body.append(...[...cycles].sort((a, b) => b.number - a.number).map(cycleRow));
  $("no-cycles").hidden = cycles.length > 0;
}

function renderMetrics(metrics) {
  const done = metrics.cycles.filter((c) => c.miou !== null && c.labeled_fraction !== null);
  drawCurve($("curve"), done.map((c) => ({ x: c.labeled_fraction, y: c.miou, label: `#${c.number}` })));
  $("curve").dataset.points = String(done.length);
  const body = clear(document.querySelector("#per-class tbody"));
  const latest = done[done.length - 1];
  $("per-class-title").textContent = latest ? `Per-class IoU (cycle ${latest.number})` : "Per-class IoU";
  if (!latest || !latest.per_class_iou) {
    body.append(el("tr", {}, el("td", { class: "small" }, "no finished cycle yet")));
    return;
  }
  const colors = Object.fromEntries(state.project.classes.map((c) => [c.name, c.color]));
  metrics.class_names.forEach((name, i) => {
    const iou = latest.per_class_iou[i];
    const swatch = el("span", { class: "swatch-inline" });
    swatch.style.background = colors[name] || "#888";
    const bar = el("div", { class: "iou-bar" });
    bar.style.width = `${iou === null ? 0 : 100 * iou}%`;
    body.append(el("tr", {}, el("td", {}, swatch, name), el("td", {}, iou === null ? "absent" : formatPercent(iou)),
                   el("td", { class: "bar-cell" }, bar)));
  });
}

function renderQueue(stats) {
  const box = clear($("queue-stats"));
  for (const [label, value] of [["queued", stats.queued], ["leased", stats.leased], ["labeled", stats.labeled],
                                ["skipped", stats.skipped], ["labeled today", stats.labeled_today]]) {
    box.append(el("div", { "data-stat": label }, el("strong", {}, String(value)), el("span", { class: "small" }, label)));
  }
  const body = clear(document.querySelector("#annotators tbody"));
  for (const a of stats.annotators) {
    body.append(el("tr", {}, el("td", {}, a.name), el("td", {}, String(a.leased)), el("td", {}, String(a.labeled_today)),
                   el("td", {}, String(a.labeled_total))));
  }
}

async function refresh() {
  clearTimeout(state.timer);
  let busy = false;
  try {
    const id = state.project.id;
    const [cycles, metrics, stats, effort, quality] = await Promise.all([
      api(`/api/projects/${id}/cycles`), api(`/api/projects/${id}/metrics`), api(`/api/projects/${id}/queue/stats`),
      api(`/api/projects/${id}/effort`), api(`/api/projects/${id}/quality`)]);
    renderCycles(cycles);
    renderMetrics(metrics);
    renderQueue(stats);
    renderEffort(effort);
    renderQuality(quality, id);
    busy = cycles.some((c) => c.status === "running" || c.status === "queued");
    $("start-cycle").disabled = busy;
    refreshAutoCycle(id);
    message("");
  } catch (err) {
    message(`Could not refresh: ${err.message}`, "error");
  }
  state.timer = setTimeout(refresh, busy ? FAST_POLL_MS : SLOW_POLL_MS);
}

async function startCycle() {
  $("start-cycle").disabled = true;
  try {
    const c = await api(`/api/projects/${state.project.id}/cycles`, { method: "POST" });
    $("action-message").textContent = `Cycle ${c.number} queued.`;
  } catch (err) {
    $("action-message").textContent = `Cannot start a cycle: ${err.message}`;
  }
  refresh();
}

async function download() {
  $("action-message").textContent = "Preparing the zip…";
  try {
    const res = await apiFetch(`/api/projects/${state.project.id}/export`);
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: `${state.project.name}.zip` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    $("action-message").textContent = "";
  } catch (err) {
    $("action-message").textContent = `Export failed: ${err.message}`;
  }
}

async function main() {
  state.me = await requireToken($("gate"));
  $("who").textContent = `${state.me.name} (${state.me.role})`;
  const id = Number(location.pathname.split("/").filter(Boolean).pop());
  try {
    state.project = await api(`/api/projects/${id}`);
  } catch (err) {
    message(`Cannot open project ${id}: ${err.message}`, "error");
    return;
  }
  document.title = `s4al · ${state.project.name}`;
  $("project-name").textContent = state.project.name;
  $("annotate-link").href = `/annotate/${state.project.id}`;
  const admin = state.me.role === "admin";
  $("start-cycle").hidden = !admin;
  $("export").hidden = !admin;
  $("start-cycle").addEventListener("click", startCycle);
  $("export").addEventListener("click", download);
  $("dashboard").hidden = false;
  window.addEventListener("resize", () => refresh());
  refresh();
}

main();
