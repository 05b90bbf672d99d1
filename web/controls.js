// The annotator page's controls: the class palette, tool buttons, and the keyboard. A class's key is its
// palette position (web/keys.js), the same rule as on the tagging page.

import { clear, el } from "./common.js";
import { classIndexOfKey, classKeyLabel } from "./keys.js";

const $ = (id) => document.getElementById(id);

export function buildPalette(classes, editor) {
  const list = clear($("palette"));
  classes.forEach((c, index) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = c.color;
    const key = classKeyLabel(index);
    const item = el("li", {}, el("button", { type: "button", "data-class": c.id, title: `${c.name} (key ${key || "/name"})` },
      el("kbd", {}, key || "/"), swatch, el("span", { class: "name" }, c.name)));
    item.firstChild.addEventListener("click", () => editor.setClass(c.id));
    list.append(item);
  });
}

export function refreshControls(editor) {
  for (const b of document.querySelectorAll("#palette button")) {
    b.classList.toggle("active", Number(b.dataset.class) === editor.classId && editor.tool !== "eraser");
  }
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === editor.tool);
  $("brush-size").textContent = String(editor.size);
  $("overlay-visible").checked = editor.overlayVisible;
  $("undo").disabled = !editor.undoStack.length;
  $("redo").disabled = !editor.redoStack.length;
}

function toggleHelp(show) {
  $("help").hidden = show === undefined ? !$("help").hidden : !show;
}

/** Keys and buttons. `actions`: {submit, openSkip, closeSkip, skip(reason), onInput, onToolKey(e)};
 * `onToolKey` (the painting tools' and class finder's keys) goes first and returns true when it took the key. */
export function bindControls(editor, classes, actions) {
  const onKey = (e) => {
    actions.onInput();
    if (document.getElementById("token-dialog")) return; // typing a new token
    if (!$("skip-dialog").hidden) {
      if (e.key === "Escape") { e.preventDefault(); actions.closeSkip(); }
      else if (/^[1-4]$/.test(e.key)) {
        e.preventDefault();
        $("skip-form").querySelectorAll("input[name=reason]")[Number(e.key) - 1].checked = true;
      }
      return; // Enter submits the form
    }
    if (e.target instanceof HTMLInputElement && e.target.type !== "range" && e.target.type !== "checkbox") return;
    if ($("help").hidden && actions.onToolKey?.(e)) return;
    const classIndex = classIndexOfKey(e);
    if (classIndex >= 0 && $("help").hidden) {
      e.preventDefault();
      if (classes[classIndex]) editor.setClass(classes[classIndex].id);
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
    else if (key === "Enter") actions.submit();
    else if (lower === "s") actions.openSkip();
    else return;
    e.preventDefault();
  };
  window.addEventListener("keydown", onKey);
  window.addEventListener("pointerdown", actions.onInput);
  window.addEventListener("pointermove", actions.onInput);
  window.addEventListener("resize", () => editor.fit());
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => editor.setTool(b.dataset.tool));
  $("opacity").addEventListener("input", (e) => editor.setOpacity(Number(e.target.value) / 100));
  $("overlay-visible").addEventListener("change", () => editor.toggleOverlay());
  $("undo").addEventListener("click", () => editor.undo());
  $("redo").addEventListener("click", () => editor.redo());
  $("submit").addEventListener("click", actions.submit);
  $("skip").addEventListener("click", actions.openSkip);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("help").addEventListener("click", (e) => { if (e.target === $("help")) toggleHelp(false); });
  $("skip-cancel").addEventListener("click", actions.closeSkip);
  $("skip-form").addEventListener("submit", (e) => {
    e.preventDefault();
    actions.skip(new FormData(e.target).get("reason"));
  });
}
