// Tagging mode: the whole image, the class palette as toggle buttons (click, or the class keys of
// web/keys.js: the palette position 1-9 and 0, Shift for 11-20, / then a name),
// Enter submits, S skips. Images come in the order of the image classifier's uncertainty
// (GET /api/projects/{id}/tagging/next); a PUT stores the complete list of classes present.

import { api, apiFetch, el, requireToken } from "./common.js";
import { classIndexOfKey, classKeyLabel, ClassFinder } from "./keys.js";

const $ = (id) => document.getElementById(id);
const state = { project: null, image: null, pressed: new Set(), skipped: [], busy: false, finder: null };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "page error" : "page";
}

function buildPalette(classes) {
  $("palette").replaceChildren(...classes.map((cls, index) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = cls.color;  // CSSOM, allowed by the page's CSP (no inline style attribute)
    return el("button", { type: "button", "aria-pressed": "false", dataset: { classId: String(cls.id) },
                          onclick: () => toggle(cls.id) },
      swatch, el("span", {}, cls.name), el("kbd", {}, classKeyLabel(index) || "/"));
  }));
}

function toggle(classId) {
  if (state.pressed.has(classId)) state.pressed.delete(classId);
  else state.pressed.add(classId);
  refreshPalette();
}

function refreshPalette() {
  for (const button of $("palette").children) {
    button.setAttribute("aria-pressed", String(state.pressed.has(Number(button.dataset.classId))));
  }
}

async function showImage(image, uncertainty) {
  // Fetch everything first so that the image, caption and toggles change together: a toggle clicked
  // while the current tags load would otherwise be overwritten.
  const [blob, current] = await Promise.all([
    apiFetch(`/api/images/${image.id}/file`).then((response) => response.blob()),
    api(`/api/images/${image.id}/tags`),
  ]);
  const img = $("image");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  const u = uncertainty === null ? "not scored yet" : `classifier uncertainty ${uncertainty.toFixed(3)}`;
  $("caption").textContent = `${image.stem} · ${image.width}×${image.height} · ${u}`;
  state.pressed = new Set(current.latest ? current.latest.class_ids : []);  // re-tagging starts from these
  refreshPalette();
}

async function loadNext() {
  const query = state.skipped.map((id) => `exclude=${id}`).join("&");
  const next = await api(`/api/projects/${state.project.id}/tagging/next${query ? "?" + query : ""}`);
  const progress = `${next.tagged} tagged · ${next.untagged} to go`;
  state.image = next.image;
  if (!next.image) {
    $("progress").textContent = progress;
    $("tagger").hidden = true;
    $("done").hidden = state.skipped.length > 0;
    setStatus(state.skipped.length ? `Nothing left but ${state.skipped.length} skipped image(s).` : "");
    return;
  }
  $("tagger").hidden = false;
  await showImage(next.image, next.uncertainty);
  $("progress").textContent = progress;  // last: the page takes keys for this image once it changes
}

async function run(action) {
  if (state.busy) return;
  state.busy = true;
  try {
    await action();
  } catch (error) {
    setStatus(`Error: ${error.message}`, true);
  } finally {
    state.busy = false;
  }
}

const submit = () => run(async () => {
  if (!state.image) return;
  const classIds = [...state.pressed].sort((a, b) => a - b);
  await api(`/api/images/${state.image.id}/tags`, { method: "PUT", json: { class_ids: classIds } });
  setStatus(`Tagged ${state.image.stem}.`);
  await loadNext();
});

const skip = () => run(async () => {
  if (!state.image) return;
  state.skipped.push(state.image.id);
  setStatus(`Skipped ${state.image.stem}.`);
  await loadNext();
});

function onKey(event) {
  if ($("tagger").hidden || event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey) return;
  if (state.finder.handle(event)) return;
  const index = classIndexOfKey(event);
  if (index >= 0) {
    const cls = state.project.classes[index];
    if (cls) {
      event.preventDefault();
      toggle(cls.id);
    }
  } else if (event.key === "Enter") {
    event.preventDefault();
    submit();
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    skip();
  }
}

async function main() {
  const me = await requireToken($("gate"));
  $("who").textContent = `${me.name} (${me.role})`;
  const ref = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const projects = await api("/api/projects");
  state.project = projects.find((p) => String(p.id) === ref || p.name === ref);
  if (!state.project) throw new Error(`no project ${ref}`);
  $("project-name").textContent = `· ${state.project.name}`;
  $("dashboard-link").href = `/projects/${state.project.id}`;
  document.title = `s4al · tag · ${state.project.name}`;
  buildPalette(state.project.classes);
  state.finder = new ClassFinder($("class-finder-host"), state.project.classes, (cls) => toggle(cls.id));
  document.addEventListener("keydown", onKey);
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  await loadNext();
}

run(main);
