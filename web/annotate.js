// The annotator page: lease → paint → Enter → next, with the next region prefetched.
// The server holds at most two live leases per annotator: the region on screen and the prefetched one.

import { api, apiFetch, ApiError, clear, el, fetchBitmap, requireToken } from "./common.js";
import { LabelEditor, parseColor, UNLABELED } from "./editor.js";
import { decodeGray8, encodeGray8 } from "./png.js";
import { classIndexOfKey, classKeyLabel, ClassFinder } from "./keys.js";
import { Navigator } from "./navigation.js";
import { installTools } from "./tools/index.js";
import { fetchSuperpixels, regionShape } from "./tools/superpixels.js";

const $ = (id) => document.getElementById(id);
const RENEW_BEFORE_MS = 90_000; // renew a lease this long before it expires, if the annotator is active
const ACTIVE_WINDOW_MS = 5 * 60_000;
const EMPTY_POLL_MS = 30_000;

const state = {
  project: null,
  current: null, // {lease, bitmap, labels, expiresAt}
  nextPromise: null, // Promise<item|null> of the prefetched region
  done: 0,
  busy: false,
  lastActivity: Date.now(),
  emptyTimer: null,
};
let editor, tools, navigator, finder;

// ---------- messages ----------
function message(text, kind = "info") {
  const box = $("message");
  if (kind === "error") $("loading").hidden = true;
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = !text;
}

function describe(err) {
  return err instanceof ApiError ? `${err.status}: ${err.message}` : String(err.message || err);
}

// ---------- loading regions ----------
async function resolveProject(ref) {
  if (/^\d+$/.test(ref)) return api(`/api/projects/${ref}`);
  const all = await api("/api/projects");
  const found = all.find((p) => p.name === ref);
  if (!found) throw new Error(`no project named “${ref}”`);
  return found;
}

/** Lease a region (other than those in `holding`) and load its pixels; null when the queue is empty. */
async function fetchItem(holding) {
  const lease = await api(`/api/projects/${state.project.id}/queue/lease`, { method: "POST", json: { holding } });
  if (!lease) return null;
  const { w, h } = lease.region;
  const [bitmap, labels, superpixels] = await Promise.all([
    fetchBitmap(lease.crop.url), loadPrelabel(lease, w, h),
    fetchSuperpixels(lease).catch((err) => ({ problem: `superpixels failed to load (${describe(err)})` }))]);
  return { lease, bitmap, labels, superpixels, expiresAt: Date.now() + lease.ttl_seconds * 1000 };
}

async function loadPrelabel(lease, w, h) {
  const empty = () => new Uint8Array(w * h).fill(UNLABELED);
  if (!lease.prelabel_url) return empty();
  try {
    const res = await apiFetch(lease.prelabel_url);
    const png = await decodeGray8(await res.arrayBuffer());
    if (png.width !== w || png.height !== h) return empty();
    return png.data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return empty();
    throw err;
  }
}

function prefetch() {
  const holding = state.current ? [state.current.lease.lease_id] : [];
  state.nextPromise = fetchItem(holding).catch((err) => {
    console.warn("prefetch failed", err);
    return null;
  });
  state.nextPromise.then(updateCounter); // the queue figure excludes the region just prefetched
}

// ---------- showing ----------
function show(item) {
  state.current = item;
  clearTimeout(state.emptyTimer);
  const { lease } = item;
  $("workspace").hidden = false; // before load: fitting the view needs the viewport's size
  $("loading").hidden = true;
  const shape = regionShape(item.superpixels, lease.crop, lease.region);
  editor.load({ bitmap: item.bitmap, crop: lease.crop, region: lease.region, labels: item.labels,
                colors: state.colors, superpixels: item.superpixels, allowed: shape });
  navigator.showImage(lease.image, (id) => fetchBitmap(`/api/images/${id}/file`));
  const r = lease.region;
  const kind = r.kind !== "superpixel" ? "" : shape ? " · superpixel (its own shape)" : " · superpixel (box shown: no map)";
  clear($("region-info")).append(
    el("div", {}, "Image ", el("strong", {}, lease.image.stem)),
    el("div", {}, `Region ${r.w}×${r.h} at (${r.x}, ${r.y})`),
    el("div", {}, `Score ${r.score.toFixed(4)}${kind}`),
    el("div", {}, lease.prelabel_url ? "Starts from the model's prediction" : "No prediction yet: starts unlabeled"));
  message("");
  // The lease clock restarts when the annotator first sees the region (a prefetched one may have waited).
  renew(item).catch(() => {});
  updateCounter();
}

async function renew(item) {
  try {
    await api(`/api/leases/${item.lease.lease_id}/renew`, { method: "POST" });
    item.expiresAt = Date.now() + item.lease.ttl_seconds * 1000;
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && item === state.current) expired();
    throw err;
  }
}

function expired() {
  message("Your lease on this region expired. Press Enter to submit anyway (it is kept, marked late), " +
          "or S to skip it.", "warn");
}

function showEmpty() {
  state.current = null;
  $("loading").hidden = true;
  $("workspace").hidden = true;
  message("The queue is empty: no region is waiting to be labeled in this project. New regions arrive " +
          "after the next training cycle; this page checks again every 30 seconds.", "empty");
  updateCounter();
  clearTimeout(state.emptyTimer);
  state.emptyTimer = setTimeout(async () => {
    const item = await fetchItem([]).catch(() => null);
    if (item) { show(item); prefetch(); } else showEmpty();
  }, EMPTY_POLL_MS);
}

async function updateCounter() {
  let left = "…";
  try {
    const stats = await api(`/api/projects/${state.project.id}/queue/stats`);
    left = String(stats.queued);
  } catch { /* keep the last figure */ }
  $("counter").textContent = `Done ${state.done} · queue ${left}`;
}

// ---------- submit / skip ----------
async function sendMask(item, mask) {
  const { w, h } = item.lease.region;
  const png = await encodeGray8(w, h, mask);
  const key = crypto.randomUUID(); // the same key for every retry: the server stores it once
  for (let attempt = 0; ; attempt++) {
    const form = new FormData();
    form.append("mask", png, "mask.png");
    try {
      return await api(`/api/leases/${item.lease.lease_id}/annotation`,
                       { method: "POST", body: form, headers: { "Idempotency-Key": key } });
    } catch (err) {
      const retriable = !(err instanceof ApiError) || err.status >= 500;
      if (!retriable || attempt >= 4) throw err;
      await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
    }
  }
}

/** Finish the current region with `action` (a promise that ends its lease), then move on. */
async function advance(action) {
  if (!state.current || state.busy) return;
  state.busy = true;
  const finished = state.current;
  const ending = action(finished);
  try {
    const next = await state.nextPromise;
    if (next) show(next);
    try {
      await ending;
    } catch (err) {
      message(`Could not save region of image ${finished.lease.image.stem}: ${describe(err)}`, "error");
    }
    // Only now may a new lease be asked for: the finished one no longer counts against the two allowed.
    if (next) prefetch();
    else {
      const item = await fetchItem([]);
      if (item) { show(item); prefetch(); } else showEmpty();
    }
  } catch (err) {
    message(`Error: ${describe(err)}`, "error");
  } finally {
    state.busy = false;
  }
}

function submit() {
  const mask = editor.mask();
  advance(async (item) => {
    const ann = await sendMask(item, mask);
    state.done += 1;
    updateCounter();
    return ann;
  });
}

function openSkip() {
  if (!state.current) return;
  $("skip-dialog").hidden = false;
  $("skip-form").querySelector("input[checked]").checked = true;
  $("skip-form").querySelector("button[type=submit]").focus();
}

function closeSkip() {
  $("skip-dialog").hidden = true;
}

function skip(reason) {
  closeSkip();
  advance((item) => api(`/api/leases/${item.lease.lease_id}/skip`, { method: "POST", json: { reason } }));
}

// ---------- controls ----------
function buildPalette() {
  const list = clear($("palette"));
  state.project.classes.forEach((c, index) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = c.color;
    const key = classKeyLabel(index);
    const item = el("li", {}, el("button", { type: "button", "data-class": c.id, title: `${c.name} (key ${key || "/name"})` },
      el("kbd", {}, key || "/"), swatch, el("span", { class: "name" }, c.name)));
    item.firstChild.addEventListener("click", () => editor.setClass(c.id));
    list.append(item);
  });
}

function refreshControls() {
  for (const b of document.querySelectorAll("#palette button")) {
    b.classList.toggle("active", Number(b.dataset.class) === editor.classId && editor.tool !== "eraser");
  }
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === editor.tool);
  $("brush-size").textContent = String(editor.size);
  $("overlay-visible").checked = editor.overlayVisible;
  $("undo").disabled = !editor.undoStack.length;
  $("redo").disabled = !editor.redoStack.length;
  tools?.refresh();
}

function toggleHelp(show) {
  $("help").hidden = show === undefined ? !$("help").hidden : !show;
}

function onKey(e) {
  state.lastActivity = Date.now();
  if (!$("skip-dialog").hidden) {
    if (e.key === "Escape") { e.preventDefault(); closeSkip(); }
    else if (/^[1-4]$/.test(e.key)) {
      e.preventDefault();
      $("skip-form").querySelectorAll("input[name=reason]")[Number(e.key) - 1].checked = true;
    }
    return; // Enter submits the form
  }
  if (e.target instanceof HTMLInputElement && e.target.type !== "range" && e.target.type !== "checkbox") return;
  if ($("help").hidden && (finder.handle(e) || tools.onKey(e))) return;
  const classIndex = classIndexOfKey(e);
  if (classIndex >= 0 && $("help").hidden) {
    e.preventDefault();
    const cls = state.project.classes[classIndex];
    if (cls) editor.setClass(cls.id);
    return;
  }
  const key = e.key, lower = key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && lower === "z") {
    e.preventDefault();
    if (e.shiftKey) editor.redo(); else editor.undo();
    return;
  }
  if ((e.ctrlKey || e.metaKey) && lower === "y") { e.preventDefault(); editor.redo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (key === "?") { e.preventDefault(); toggleHelp(); return; }
  if (key === "Escape") { toggleHelp(false); return; }
  if (!$("help").hidden) return;
  if (lower === "b") editor.setTool("brush");
  else if (lower === "e") editor.setTool("eraser");
  else if (lower === "f") editor.setTool("fill");
  else if (key === "[") editor.setSize(editor.size - 1);
  else if (key === "]") editor.setSize(editor.size + 1);
  else if (key === "+" || key === "=") editor.zoomBy(1.25);
  else if (key === "-") editor.zoomBy(0.8);
  else if (lower === "r") editor.fit();
  else if (key === "Enter") submit();
  else if (lower === "s") openSkip();
  else return;
  e.preventDefault();
}

function bindControls() {
  window.addEventListener("keydown", onKey);
  window.addEventListener("pointerdown", () => { state.lastActivity = Date.now(); });
  window.addEventListener("resize", () => editor.fit());
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => editor.setTool(b.dataset.tool));
  $("opacity").addEventListener("input", (e) => editor.setOpacity(Number(e.target.value) / 100));
  $("overlay-visible").addEventListener("change", () => editor.toggleOverlay());
  $("undo").addEventListener("click", () => editor.undo());
  $("redo").addEventListener("click", () => editor.redo());
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", openSkip);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("help").addEventListener("click", (e) => { if (e.target === $("help")) toggleHelp(false); });
  $("skip-cancel").addEventListener("click", closeSkip);
  $("skip-form").addEventListener("submit", (e) => {
    e.preventDefault();
    skip(new FormData(e.target).get("reason"));
  });
  // Give leases back when the page goes away, so the regions do not wait for the lease to expire.
  window.addEventListener("pagehide", () => {
    const held = [state.current];
    state.nextPromise?.then((n) => n && release(n));
    for (const item of held) if (item) release(item);
  });
  setInterval(() => {
    const item = state.current;
    if (!item) return;
    const left = item.expiresAt - Date.now();
    if (left <= 0) expired();
    else if (left < RENEW_BEFORE_MS && Date.now() - state.lastActivity < ACTIVE_WINDOW_MS) renew(item).catch(() => {});
  }, 5000);
}

function release(item) {
  apiFetch(`/api/leases/${item.lease.lease_id}/release`, { method: "POST", keepalive: true }).catch(() => {});
}

async function main() {
  await requireToken($("gate"));
  const ref = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  try {
    state.project = await resolveProject(ref);
  } catch (err) {
    message(`Cannot open project “${ref}”: ${describe(err)}`, "error");
    return;
  }
  document.title = `s4al · annotate · ${state.project.name}`;
  $("project-name").textContent = state.project.name;
  $("dashboard-link").href = `/projects/${state.project.id}`;
  state.colors = [];
  for (const c of state.project.classes) state.colors[c.id] = parseColor(c.color);
  editor = new LabelEditor($("viewport"), { onChange: refreshControls });
  tools = installTools(editor, { message });
  navigator = new Navigator(editor, $("viewport"), $("minimap"));
  finder = new ClassFinder($("class-finder-host"), state.project.classes, (c) => editor.setClass(c.id));
  buildPalette();
  bindControls();
  refreshControls();
  try {
    const item = await fetchItem([]);
    if (item) { show(item); prefetch(); } else showEmpty();
  } catch (err) {
    message(`Error: ${describe(err)}`, "error");
  }
}

main();
