// Dominant-class regions: a superpixel the annotator labels with one class, the class of most of its
// pixels, instead of painting them (one key or one click, then Enter). The lease says which regions take
// a class (`region.annotation === "dominant"`). The page shows the superpixel's own shape filled with the
// class chosen, starting from the pre-label's majority inside it; a class key, a click on the palette or
// the name search changes it, and the submission is the class id alone: the server stores the class on
// the superpixel's pixels and 255 on the rest of its box.

import { api, el } from "./common.js";
import { UNLABELED } from "./editor.js";

export function isDominant(lease) {
  return lease?.region?.annotation === "dominant";
}

/** The most frequent class of `labels` on the pixels where `shape` is set (ties: the smallest id), or
 * null when none of them is labeled. */
export function majorityClass(labels, shape) {
  const counts = new Map();
  for (let i = 0; i < labels.length; i++) {
    if (shape[i] && labels[i] !== UNLABELED) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  }
  let best = null, most = 0;
  for (const [c, n] of counts) if (n > most || (n === most && c < best)) { best = c; most = n; }
  return best;
}

/** `classId` on the pixels of `shape`, unlabeled elsewhere: what the server stores for the answer. */
export function fillShape(shape, classId) {
  const out = new Uint8Array(shape.length).fill(UNLABELED);
  if (classId !== null) for (let i = 0; i < shape.length; i++) if (shape[i]) out[i] = classId;
  return out;
}

/** POST a dominant region's answer from the outbox: `{class_id}` as JSON, with its Idempotency-Key. */
export function sendClass(item) {
  return api(`/api/leases/${item.leaseId}/annotation`,
             { method: "POST", json: { class_id: item.classId, active_seconds: item.activeSeconds },
               headers: { "Idempotency-Key": item.key } });
}

/**
 * The page's dominant mode for the region on screen. Every class choice of the page (keys, palette,
 * name search, Alt+click) ends in `editor.setClass`, so that is where a choice is seen; the superpixel is
 * then kept filled with the chosen class whatever else is done to the labels (a brush or the eraser).
 */
export class DominantMode {
  constructor(editor) {
    this.editor = editor;
    this.active = false;
    this.shape = null;
    this.chosen = null;
    const setClass = editor.setClass.bind(editor);
    editor.setClass = (id) => { setClass(id); this.choose(id); };
  }

  /** A region is about to be shown: returns the labels to load (the shape filled with the pre-label's
   * majority for a dominant region, `labels` untouched otherwise). */
  begin(lease, shape, labels) {
    this.active = isDominant(lease);
    this.shape = this.active ? shape : null;
    this.chosen = this.shape ? majorityClass(labels, this.shape) : null;
    return this.shape ? fillShape(this.shape, this.chosen) : labels;
  }

  /** After the editor loaded the region: the palette shows the preselected class. */
  shown() {
    if (this.chosen !== null) this.editor.setClass(this.chosen);
  }

  choose(id) {
    if (!this.active || !this.shape) return;
    this.chosen = id;
    this.refresh();
  }

  /** Keep the superpixel filled with the chosen class (called on every change of the editor). */
  refresh() {
    const { editor, shape, chosen } = this;
    if (!this.active || !shape || chosen === null || !editor.labels) return;
    let stray = false;
    for (let i = 0; i < shape.length && !stray; i++) stray = shape[i] && editor.labels[i] !== chosen;
    if (stray) editor.applySelection(shape, chosen);
  }

  /** The answer to submit: undefined for an exact region (the page sends its mask), null when no class
   * can be sent yet (`message` says why), else {classId}. */
  answer(message) {
    if (!this.active) return undefined;
    if (!this.shape) {
      message("This superpixel's shape is not known to the page (no superpixel map): press S to skip it.", "warn");
      return null;
    }
    if (this.chosen === null) {
      message("Choose the superpixel's class: its key or a click on the palette, then Enter.", "warn");
      return null;
    }
    return { classId: this.chosen };
  }

  /** A line for the region's description, or null for an exact region. */
  note() {
    if (!this.active) return null;
    return el("div", { class: "dominant-note" },
              "One class for the whole superpixel: the class of most of its pixels. Its key or a click on " +
              "the palette, then Enter.");
  }
}
