// The annotator page: lease → paint → Enter → next, with the next region prefetched.
// A submitted mask goes to the outbox (IndexedDB, then the server), so no painted region is ever lost:
// not offline, not on a reload, not on a 401. Leases belong to this page instance (a tab): the server
// holds at most two per page, the region on screen and the prefetched one; a region still in the
// outbox keeps its lease until it arrives. A recent submission can be reopened (web/recent.js): the
// leased region on screen waits aside until the reopened one is sent again or left. A grid region comes
// without its superpixel map, which is fetched in the background once a tool uses it (loadSuperpixels).

import { api, apiFetch, ApiError, clear, el, fetchBitmap, getToken, requireToken } from "./common.js";
import { bindControls, buildPalette, refreshControls } from "./controls.js";
import { DominantMode, sendClass } from "./dominant.js";
import { LabelEditor, parseColor, UNLABELED } from "./editor.js";
import { Outbox } from "./outbox.js";
import { decodeGray8, encodeGray8 } from "./png.js";
import { ClassFinder } from "./keys.js";
import { Navigator } from "./navigation.js";
import { isBackKey, loadRevision, RecentList } from "./recent.js";
import { isPhoneScreen, waitForRoom } from "./small_screen.js";
import { installTools } from "./tools/index.js";
import { fetchSuperpixels, mapNeededToShow, regionShape, SUPERPIXELS_LOADING } from "./tools/superpixels.js";
import { askForToken } from "./token_dialog.js";

const $ = (id) => document.getElementById(id);
const RENEW_BEFORE_MS = 90_000; // renew a lease this long before it expires, if the annotator is active
const ACTIVE_WINDOW_MS = 5 * 60_000;
const EFFORT_IDLE_MS = 10_000; // a second counts as active with input in the last 10 s and the page focused
const EMPTY_POLL_MS = 30_000;
const PAGE_KEY = "s4al.page";
const MAX_LIVE_LEASES = 2; // per page, as the server (service/queue.py)

const state = {
  project: null,
  page: null, // this tab's id: kept over a reload (sessionStorage), new in another tab
  current: null, // {lease, bitmap, labels, superpixels, expiresAt, activeSeconds, revision?}
  aside: null, // the leased region put aside while a recent submission is reopened
  nextPromise: null, // Promise<item|null> of the prefetched region
  done: 0,
  lastActivity: Date.now(),
  emptyTimer: null,
  outbox: null,
};
let editor, tools, navigator, finder, dominant, recent;

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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** An API call that waits through a 401 (a new token) and, with `retry`, through network failures. */
async function call(path, options = {}, { retry = false } = {}) {
  for (let delay = 1000; ; delay = Math.min(8000, delay * 2)) {
    try {
      return await api(path, options);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { await askForToken(); continue; }
      if (!retry || err instanceof ApiError) throw err;
      message("The network is down: your work is kept in this browser; the next region loads when it is back.",
              "warn");
      await sleep(delay);
    }
  }
}

// ---------- loading regions ----------
async function resolveProject(ref) {
  if (/^\d+$/.test(ref)) return api(`/api/projects/${ref}`);
  const all = await api("/api/projects");
  const found = all.find((p) => p.name === ref);
  if (!found) throw new Error(`no project named “${ref}”`);
  return found;
}

/** Lease a region (other than those held) and load its pixels; null when the queue is empty. While
 * the page's two leases are taken by regions still in the outbox, wait for the outbox to deliver. */
async function fetchItem(holding) {
  let lease;
  for (;;) {
    const held = [...holding, ...state.outbox.leaseIds()];
    if (held.length >= MAX_LIVE_LEASES) { await state.outbox.nextChange(); continue; }
    try {
      lease = await call(`/api/projects/${state.project.id}/queue/lease`,
                         { method: "POST", json: { holding: held, page: state.page } }, { retry: true });
      break;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 409) throw err;
      await state.outbox.nextChange();
    }
  }
  if (!lease) return null;
  const { w, h } = lease.region;
  const [bitmap, labels, superpixels] = await Promise.all([
    fetchBitmap(lease.crop.url), loadPrelabel(lease, w, h),
    mapNeededToShow(lease.region) ? fetchMap(lease) : null]);
  return { lease, bitmap, labels, superpixels, expiresAt: Date.now() + lease.ttl_seconds * 1000, activeSeconds: 0 };
}

function fetchMap(lease) {
  return fetchSuperpixels(lease).catch((err) => ({ problem: `superpixels failed to load (${describe(err)})` }));
}

/** A grid region's superpixel map, fetched in the background; the editor gets it if the region is still
 * on screen when it comes. Asked for once per region (a failure stays said, not retried in a loop). */
function loadSuperpixels(item) {
  if (!item || item.superpixels) return;
  item.superpixels = SUPERPIXELS_LOADING;
  if (item === state.current) editor.setSuperpixels(item.superpixels);
  fetchMap(item.lease).then((sp) => {
    item.superpixels = sp;
    if (item === state.current) editor.setSuperpixels(sp);
  });
}

/** A superpixel tool was turned on: the maps of the region on screen and of the prefetched one. */
function needSuperpixels() {
  loadSuperpixels(state.current);
  state.nextPromise?.then(loadSuperpixels);
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
  // With a superpixel tool on, the next region's map is fetched too, after the region: it is then ready
  // with it, or soon after, and the region never waits for it.
  state.nextPromise.then((item) => { if (tools.usesSuperpixels()) loadSuperpixels(item); });
}

// ---------- showing ----------
async function show(item) {
  state.current = item;
  clearTimeout(state.emptyTimer);
  const { lease } = item;
  $("workspace").hidden = false; // before load: fitting the view needs the viewport's size
  $("loading").hidden = true;
  const shape = regionShape(item.superpixels, lease.crop, lease.region);
  const labels = dominant.begin(lease, shape, item.labels);
  editor.load({ bitmap: item.bitmap, crop: lease.crop, region: lease.region, labels,
                colors: state.colors, superpixels: item.superpixels, allowed: shape });
  dominant.shown();
  navigator.showImage(lease.image, (id) => fetchBitmap(`/api/images/${id}/file`));
  const r = lease.region;
  const kind = r.kind !== "superpixel" ? "" : shape ? " · superpixel (its own shape)" : " · superpixel (box shown: no map)";
  clear($("region-info")).append(
    el("div", {}, "Image ", el("strong", {}, lease.image.stem)),
    el("div", {}, `Region ${r.w}×${r.h} at (${r.x}, ${r.y})`),
    el("div", {}, `Score ${r.score.toFixed(4)}${kind}`),
    el("div", {}, lease.prelabel_url ? "Starts from the model's prediction" : "No prediction yet: starts unlabeled"),
    ...[dominant.note()].filter(Boolean));
  message("");
  updateCounter();
  // The lease clock restarts when the annotator first sees the region (a prefetched one may have waited);
  // a lease lost meanwhile is said at once, before any painting.
  renew(item).catch(() => {});
}

async function renew(item) {
  if (!item.lease.lease_id) return; // a reopened submission holds no lease
  try {
    await call(`/api/leases/${item.lease.lease_id}/renew`, { method: "POST" });
    item.expiresAt = Date.now() + item.lease.ttl_seconds * 1000;
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && item === state.current) lost(item);
    throw err;
  }
}

function lost(item) {
  message(`This page no longer holds region (${item.lease.region.x}, ${item.lease.region.y}) of image ` +
          `${item.lease.image.stem}: its lease expired. Paint nothing here; press S to move on, or Enter to ` +
          "submit anyway (it is kept, marked late).", "warn");
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

// ---------- the outbox ----------
function sendItem(item) {
  if (item.classId !== undefined) return sendClass(item);
  const form = new FormData();
  form.append("mask", new Blob([item.png], { type: "image/png" }), "mask.png");
  form.append("active_seconds", String(item.activeSeconds));
  form.append("strokes", String(item.strokes));
  return api(item.url ?? `/api/leases/${item.leaseId}/annotation`,
             { method: "POST", body: form, headers: { "Idempotency-Key": item.key } });
}

function showOutbox(outbox) {
  const waiting = outbox.waiting().length;
  const text = { saved: "saved", saving: `saving… ${waiting} waiting`, offline: `offline, ${waiting} waiting`,
                 auth: `${waiting} waiting for a token` }[outbox.status()];
  const box = $("save-state");
  box.textContent = text;
  box.dataset.state = outbox.status();
  box.dataset.waiting = String(waiting);
  const refused = outbox.refused();
  $("refused").hidden = !refused.length;
  clear($("refused")).append(el("strong", {}, "Not accepted by the server (kept in this browser):"),
    ...refused.map((i) => el("div", { class: "refused-item" },
      `region (${i.region.x}, ${i.region.y}) ${i.region.w}×${i.region.h} of image ${i.stem}: ${i.error}`)));
}

// ---------- submit / skip ----------
/** Put the painted region in the outbox, then show the next one; nothing waits for the server. */
async function submit() {
  const item = state.current;
  if (!item) return;
  const answer = dominant.answer(message); // a dominant region sends its class, not a mask
  if (answer === null) return;
  const mask = editor.mask();
  if (!answer && !mask.some((v) => v !== UNLABELED)) {
    message("Nothing is labeled in this region: paint it, or press S to skip it.", "warn");
    return;
  }
  state.current = null; // a second Enter now goes to the next region, never this one again
  const { w, h } = item.lease.region;
  try {
    const body = answer ?? { png: await (await encodeGray8(w, h, mask)).arrayBuffer() };
    await state.outbox.add({ key: crypto.randomUUID(), leaseId: item.lease.lease_id, ...body,
                             url: item.revision?.url, stem: item.lease.image.stem, region: item.lease.region,
                             activeSeconds: Math.round(item.activeSeconds), strokes: editor.strokes });
  } catch (err) { // the browser would not store it (storage full, private mode): stay on the region
    state.current = item;
    message(`Could not keep this region in the browser (${describe(err)}); it was not submitted.`, "error");
    return;
  }
  await next();
}

async function next() {
  recent.closed();
  if (state.aside) { // back from a reopened submission to the leased region put aside
    const aside = state.aside;
    state.aside = null;
    show(aside);
    return;
  }
  const upcoming = await state.nextPromise;
  if (upcoming) { show(upcoming); prefetch(); return; }
  try {
    const item = await fetchItem([]);
    if (item) { show(item); prefetch(); } else showEmpty();
  } catch (err) {
    message(`Error: ${describe(err)}`, "error");
  }
}

function openSkip() {
  if (state.current?.revision) { leaveRevision(); return; } // nothing to skip: go back unchanged
  if (!state.current) return;
  $("skip-dialog").hidden = false;
  $("skip-form").querySelector("input[checked]").checked = true;
  $("skip-form").querySelector("button[type=submit]").focus();
}

// ---------- going back ----------
async function reopen(entry) {
  let item;
  try {
    item = await loadRevision(entry, { fetchBitmap, fetchSuperpixels: fetchMap });
  } catch (err) {
    message(`Could not reopen region (${entry.region.x}, ${entry.region.y}): ${describe(err)}`, "error");
    return;
  }
  if (state.current && !state.current.revision) state.aside = state.current;
  show(item);
  message(`Editing your submission of region (${entry.region.x}, ${entry.region.y}) of image ${entry.image.stem}: ` +
          "Enter sends the new mask (it replaces the earlier one); S leaves it unchanged.", "info");
}

function leaveRevision() {
  state.current = null;
  next();
}

function closeSkip() {
  $("skip-dialog").hidden = true;
}

async function skip(reason) {
  closeSkip();
  const item = state.current;
  if (!item) return;
  state.current = null;
  try {
    await call(`/api/leases/${item.lease.lease_id}/skip`, { method: "POST", json: { reason } }, { retry: true });
  } catch (err) {
    message(`Could not skip region of image ${item.lease.image.stem}: ${describe(err)}`, "error");
  }
  await next();
}

function release(item) {
  if (!item.lease.lease_id) return;
  apiFetch(`/api/leases/${item.lease.lease_id}/release`, { method: "POST", keepalive: true }).catch(() => {});
}

function watch() {
  // Give leases back when the page goes away, so the regions do not wait for the lease to expire.
  window.addEventListener("pagehide", () => {
    state.nextPromise?.then((n) => n && release(n));
    if (state.current) release(state.current);
    if (state.aside) release(state.aside);
  });
  setInterval(() => { // effort: active seconds on the region on screen
    const now = Date.now();
    if (state.current && document.hasFocus() && now - state.lastActivity < EFFORT_IDLE_MS) state.current.activeSeconds += 1;
  }, 1000);
  setInterval(() => {
    const item = state.current;
    if (!item) return;
    const left = item.expiresAt - Date.now();
    if (left <= 0) lost(item);
    else if (left < RENEW_BEFORE_MS && Date.now() - state.lastActivity < ACTIVE_WINDOW_MS) renew(item).catch(() => {});
  }, 5000);
}

function goBack(e) {
  if (!isBackKey(e)) return false;
  e.preventDefault();
  recent.back();
  return true;
}

function pageId() {
  let id = sessionStorage.getItem(PAGE_KEY);
  if (!id) sessionStorage.setItem(PAGE_KEY, (id = crypto.randomUUID()));
  return id;
}

async function checkLinkToken() {
  const fromLink = /(?:^#|&)token=/.test(location.hash);
  if (!fromLink || !getToken()) return;
  try {
    await api("/api/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      message("The token in this link was not accepted (revoked or mistyped): enter a valid token below, " +
              "or ask your admin for a new link.", "error");
    }
  }
}

async function main() {
  await checkLinkToken();
  const ref = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  if (isPhoneScreen()) { // say so, and lease nothing, until the screen is large enough
    $("loading").hidden = true;
    $("project-name").textContent = ""; // no project is opened here: no "…" that never resolves
    await waitForRoom($("small-screen"), ref);
    $("loading").hidden = false;
  }
  await requireToken($("gate"));
  message("");
  try {
    state.project = await resolveProject(ref);
  } catch (err) {
    message(`Cannot open project “${ref}”: ${describe(err)}`, "error");
    return;
  }
  document.title = `s4al · annotate · ${state.project.name}`;
  $("project-name").textContent = state.project.name;
  $("dashboard-link").href = `/projects/${state.project.id}`;
  state.page = pageId();
  state.colors = [];
  for (const c of state.project.classes) state.colors[c.id] = parseColor(c.color);
  editor = new LabelEditor($("viewport"), {
    onChange: () => { dominant?.refresh(); refreshControls(editor); tools?.refresh(); } });
  dominant = new DominantMode(editor);
  tools = installTools(editor, { message, needSuperpixels });
  navigator = new Navigator(editor, $("viewport"), $("minimap"));
  finder = new ClassFinder($("class-finder-host"), state.project.classes, (c) => editor.setClass(c.id));
  buildPalette(state.project.classes, editor);
  bindControls(editor, state.project.classes, {
    submit, openSkip, closeSkip, skip, onInput: () => { state.lastActivity = Date.now(); },
    onToolKey: (e) => finder.handle(e) || goBack(e) || tools.onKey(e) });
  refreshControls(editor);
  state.outbox = new Outbox({ scope: `${location.origin}/${state.project.id}`, send: sendItem,
                              onChange: showOutbox, onAuth: () => askForToken() });
  recent = new RecentList($("recent"), { projectId: state.project.id, call, onOpen: reopen, message });
  state.outbox.onDelivered = (item) => {
    if (!item.url) state.done += 1; // a revision is no new region
    updateCounter();
    recent.refresh();
  };
  recent.refresh();
  await state.outbox.open();
  watch();
  try {
    const item = await fetchItem([]);
    if (item) { show(item); prefetch(); } else showEmpty();
  } catch (err) {
    message(`Error: ${describe(err)}`, "error");
  }
}

main();
