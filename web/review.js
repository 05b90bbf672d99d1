// The review page: an annotation awaiting review over its image, beside the pre-label the annotator
// started from, with who made it. A accepts; R rejects with a reason (the region goes back to the queue
// with this mask as its pre-label, to someone else); painting and then X saves the fix as the label;
// N passes over it for now.

import { api, apiFetch, ApiError, clear, el, fetchBitmap, formatSeconds, requireToken } from "./common.js";
import { buildPalette, refreshControls } from "./controls.js";
import { LabelEditor, parseColor, UNLABELED } from "./editor.js";
import { classIndexOfKey } from "./keys.js";
import { decodeGray8, encodeGray8 } from "./png.js";

const $ = (id) => document.getElementById(id);
const state = { project: null, item: null, colors: [], busy: false, reviewed: 0 };
let editor;

function message(text, kind = "info") {
  $("message").hidden = !text;
  $("message").className = `message ${kind}`;
  $("message").textContent = text;
}

async function mask(url, w, h) {
  try {
    const png = await decodeGray8(await (await apiFetch(url)).arrayBuffer());
    if (png.width === w && png.height === h) return png.data;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  return null;
}

function drawPrelabel(labels, w, h) {
  const canvas = $("prelabel");
  canvas.width = w;
  canvas.height = h;
  const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const c = labels ? state.colors[labels[i]] : null;
    if (!c) continue;
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
  $("prelabel-note").textContent = labels ? "" : "No pre-label: the annotator started from nothing.";
}

async function load(after = 0) {
  const item = await api(`/api/projects/${state.project.id}/review/next?after=${after}`);
  state.item = item;
  if (!item) {
    $("workspace").hidden = true;
    $("counter").textContent = `Reviewed ${state.reviewed} · waiting 0`;
    message("Nothing awaits review in this project.", "empty");
    return;
  }
  const [bitmap, labels, prelabel] = await Promise.all([
    fetchBitmap(item.crop.url), mask(item.mask_url, item.w, item.h),
    item.prelabel_url ? mask(item.prelabel_url, item.w, item.h) : null]);
  $("workspace").hidden = false;
  editor.load({ bitmap, crop: item.crop, region: { x: item.x, y: item.y, w: item.w, h: item.h },
                labels, colors: state.colors });
  state.original = labels.slice();
  drawPrelabel(prelabel, item.w, item.h);
  clear($("review-info")).append(
    el("div", {}, "Annotator ", el("strong", { id: "annotator" }, item.annotator)),
    el("div", {}, "Image ", el("strong", {}, item.image.stem), ` · region ${item.w}×${item.h} at (${item.x}, ${item.y})`),
    el("div", {}, `Active time ${formatSeconds(item.active_seconds)}`,
       item.unchanged ? " · accepted the pre-label unchanged" : ""),
    el("div", {}, `Submitted ${new Date(item.created_at).toLocaleString()}`));
  $("counter").textContent = `Reviewed ${state.reviewed} · waiting ${item.pending}`;
  message("");
}

async function act(kind, request) {
  if (!state.item || state.busy) return;
  state.busy = true;
  const id = state.item.annotation_id;
  try {
    await request(id);
    state.reviewed += 1;
    message(`Annotation ${id}: ${kind}.`);
    await load();
  } catch (err) {
    message(`Could not ${kind} annotation ${id}: ${err.message}`, "error");
  } finally {
    state.busy = false;
  }
}

const accept = () => act("accepted", (id) => api(`/api/annotations/${id}/accept`, { method: "POST" }));

function openReject() {
  if (!state.item) return;
  $("reject-dialog").hidden = false;
  $("reject-reason").value = "";
  $("reject-reason").focus();
}

function reject(reason) {
  $("reject-dialog").hidden = true;
  act("rejected", (id) => api(`/api/annotations/${id}/reject`, { method: "POST", json: { reason } }));
}

async function fix() {
  const labels = editor.mask();
  if (labels.every((v, i) => v === state.original[i])) {
    message("Nothing was changed: paint the fix first, or press A to accept as it is.", "warn");
    return;
  }
  if (!labels.some((v) => v !== UNLABELED)) {
    message("A fix must label some pixels; reject the annotation instead.", "warn");
    return;
  }
  const { w, h } = state.item;
  const form = new FormData();
  form.append("mask", await encodeGray8(w, h, labels), "mask.png");
  act("fixed", (id) => api(`/api/annotations/${id}/fix`, { method: "POST", body: form }));
}

function onKey(e) {
  if (!$("reject-dialog").hidden) {
    if (e.key === "Escape") { e.preventDefault(); $("reject-dialog").hidden = true; }
    return;
  }
  const lower = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && lower === "z") { e.preventDefault(); if (e.shiftKey) editor.redo(); else editor.undo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const classIndex = classIndexOfKey(e); // the palette position, as on every page (web/keys.js)
  if (classIndex >= 0) { if (state.project.classes[classIndex]) editor.setClass(state.project.classes[classIndex].id); }
  else if (lower === "a") accept();
  else if (lower === "r") openReject();
  else if (lower === "x") fix();
  else if (lower === "n" && state.item) load(state.item.annotation_id);
  else if (lower === "b") editor.setTool("brush");
  else if (lower === "e") editor.setTool("eraser");
  else if (lower === "g") editor.setTool("fill");
  else if (e.key === "[") editor.setSize(editor.size - 1);
  else if (e.key === "]") editor.setSize(editor.size + 1);
  else if (lower === "h") editor.toggleOverlay();
  else return;
  e.preventDefault();
}

function bind() {
  window.addEventListener("keydown", onKey);
  window.addEventListener("resize", () => editor.fit());
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => editor.setTool(b.dataset.tool));
  $("overlay-visible").addEventListener("change", () => editor.toggleOverlay());
  $("undo").addEventListener("click", () => editor.undo());
  $("redo").addEventListener("click", () => editor.redo());
  $("accept").addEventListener("click", accept);
  $("reject").addEventListener("click", openReject);
  $("fix").addEventListener("click", fix);
  $("pass").addEventListener("click", () => state.item && load(state.item.annotation_id));
  $("reject-cancel").addEventListener("click", () => { $("reject-dialog").hidden = true; });
  $("reject-form").addEventListener("submit", (e) => {
    e.preventDefault();
    reject($("reject-reason").value.trim());
  });
}

async function main() {
  const me = await requireToken($("gate"));
  if (me.role === "annotator") {
    message("Reviewing needs a reviewer or admin token.", "error");
    return;
  }
  const ref = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const all = await api("/api/projects");
  state.project = all.find((p) => String(p.id) === ref || p.name === ref);
  if (!state.project) { message(`No project “${ref}”.`, "error"); return; }
  document.title = `s4al · review · ${state.project.name}`;
  $("project-name").textContent = `${state.project.name} · review`;
  $("dashboard-link").href = `/projects/${state.project.id}`;
  for (const c of state.project.classes) state.colors[c.id] = parseColor(c.color);
  editor = new LabelEditor($("viewport"), { onChange: () => refreshControls(editor) });
  buildPalette(state.project.classes, editor);
  bind();
  try {
    await load();
  } catch (err) {
    message(`Error: ${err.message}`, "error");
  }
}

main();
