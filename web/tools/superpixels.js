// Superpixels in the page: the region crop's superpixel ids (served by the API from the map the engine
// caches per image, or segmented on demand for a grid region), drawn as faint boundaries; a brush that
// fills every superpixel it touches; and a superpixel region's exact shape, so that the mask outside it
// stays 255.
//
// Only a superpixel region needs its map to be shown (the shape is what may be painted). A grid region's
// map is an aid for the superpixel tools, and the service segments it on demand (a noticeable fraction
// of a second): the page asks for it in the background, only while such a tool is on, so that Enter →
// next region never waits for it.

import { apiFetch } from "../common.js";
import { decodeGray } from "../png.js";

/**
 * The crop's superpixel map: {ids (crop-sized), regionId (-1 for a grid region)}, or {problem} when the
 * server has none cached (204) or the map does not match the crop (the tools then stay off).
 */
export async function fetchSuperpixels(lease) {
  const res = await apiFetch(`/api/regions/${lease.region.id}/superpixels?context=${lease.crop.context}`);
  if (res.status === 204) return { problem: "no superpixel map is cached for this image yet" };
  const png = await decodeGray(await res.arrayBuffer());
  if (png.width !== lease.crop.w || png.height !== lease.crop.h) {
    return { problem: `the superpixel map is ${png.width}×${png.height}, the crop ${lease.crop.w}×${lease.crop.h}` };
  }
  return { ids: png.data, regionId: Number(res.headers.get("X-Superpixel-Region") ?? -1) };
}

/** The editor's superpixels while a grid region's map is on its way. */
export const SUPERPIXELS_LOADING = Object.freeze({ pending: true, problem: "still loading" });

/** Whether the region cannot be shown without its map: a superpixel region, whose shape it gives. */
export function mapNeededToShow(region) {
  return region.kind === "superpixel";
}

/** Region-sized ids cut out of the crop-sized map. */
export function regionIds(sp, crop, region) {
  const { w, h } = region, ox = region.x - crop.x, oy = region.y - crop.y, out = new Int32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = sp.ids[(oy + y) * crop.w + ox + x];
  return out;
}

/** A superpixel region's own pixels (1) inside its box, or null for a grid region / no map. */
export function regionShape(sp, crop, region) {
  if (!sp?.ids || region.kind !== "superpixel" || sp.regionId < 0) return null;
  const ids = regionIds(sp, crop, region), shape = new Uint8Array(ids.length);
  for (let i = 0; i < ids.length; i++) shape[i] = ids[i] === sp.regionId ? 1 : 0;
  return shape;
}

/** Boundaries of the crop's superpixels as faint lines on `canvas` (a pixel whose right or lower
 * neighbour has another id). */
export function drawBoundaries(canvas, sp, crop) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!sp?.ids) return;
  const img = new ImageData(crop.w, crop.h), { ids } = sp, w = crop.w, px = img.data;
  for (let y = 0; y < crop.h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if ((x + 1 < w && ids[i + 1] !== ids[i]) || (y + 1 < crop.h && ids[i + w] !== ids[i])) {
        px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = 255;
        px[4 * i + 3] = 70;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** The superpixel brush: every superpixel under the brush's footprint is filled whole (a click with
 * brush size 1 fills the one superpixel under the cursor). One stroke is one undo step. */
export class SuperpixelTool {
  constructor(editor, { message = () => {} } = {}) {
    this.editor = editor;
    this.message = message;
    this.ids = null;
    this.stroke = null;
    this.visible = true;
  }

  /** Called by the editor on every region. */
  load() {
    this.stroke = null;
    this.superpixelsChanged();
  }

  /** The region's map (`editor.superpixels`) came, or came later than the region (a grid region's). */
  superpixelsChanged() {
    const { editor } = this, sp = editor.superpixels;
    this.ids = sp?.ids ? regionIds(sp, editor.crop, editor.region) : null;
    drawBoundaries(editor.layers.superpixels, this.visible ? sp : null, editor.crop);
  }

  toggleBoundaries() {
    this.visible = !this.visible;
    drawBoundaries(this.editor.layers.superpixels, this.visible ? this.editor.superpixels : null, this.editor.crop);
  }

  get available() {
    return this.ids !== null;
  }

  down(p) {
    if (!this.ids) {
      const sp = this.editor.superpixels;
      this.message(sp?.pending ? "The superpixels are still loading: paint again in a moment."
        : `Superpixel brush unavailable: ${sp?.problem ?? "no superpixel map"}.`, "warn");
      return;
    }
    this.stroke = { before: this.editor.labels.slice(), done: new Set(), changed: false, last: p };
    this._touch(p);
  }

  move(p, e) {
    if (!this.stroke || !(e.buttons & 1)) return;
    // every pixel between two pointer events, so that a fast stroke skips no superpixel
    const { last } = this.stroke, n = Math.max(Math.abs(p.x - last.x), Math.abs(p.y - last.y));
    for (let k = 1; k <= n; k++) {
      this._touch({ x: Math.round(last.x + ((p.x - last.x) * k) / n), y: Math.round(last.y + ((p.y - last.y) * k) / n) });
    }
    this.stroke.last = p;
  }

  up() {
    const s = this.stroke;
    this.stroke = null;
    if (!s?.changed) return;
    this.editor._pushUndo(s.before);
    this.editor.onChange();
  }

  cancelStroke() {
    if (!this.stroke) return;
    this.editor.labels.set(this.stroke.before);
    this.stroke = null;
    this.editor._render(0, 0, this.editor.region.w, this.editor.region.h);
  }

  cancel() {
    this.cancelStroke();
  }

  _touch(p) {
    const { editor, ids, stroke } = this, { w, h } = editor.region, fresh = new Set();
    for (const [dx, dy] of editor.brushFootprint()) {
      const x = p.x + dx, y = p.y + dy;
      if (x < 0 || y < 0 || x >= w || y >= h) continue;
      const id = ids[y * w + x];
      if (!stroke.done.has(id)) { stroke.done.add(id); fresh.add(id); }
    }
    if (!fresh.size) return;
    const value = editor.paintValue, allowed = editor.allowed;
    for (let i = 0; i < ids.length; i++) {
      if (!fresh.has(ids[i]) || editor.labels[i] === value || (allowed && !allowed[i])) continue;
      editor.labels[i] = value;
      stroke.changed = true;
    }
    if (stroke.changed) editor._render(0, 0, w, h);
  }
}
