// The label editor: layered canvases as in js-segment-annotator, all at the crop's pixel size and
// scaled together by CSS (pixelated): image, context dim, pre-label (pixels that still hold the model's
// guess), labels (what the annotator changed), superpixel boundaries, tool overlay, cursor. Labels are
// class ids in a Uint8Array of exactly the region's size (255 = unlabeled), so painting can never leave
// the region; `allowed` narrows that to a superpixel region's own shape. Tools other than the brush,
// eraser and fill are plug-ins (web/tools/*.js) that get the pointer in region pixels.

export const UNLABELED = 255;
export const HISTORY_LIMIT = 50;
const MIN_ZOOM = 0.25, MAX_ZOOM = 64;

/** Pixel offsets of a round brush: pixel centres within `size`/2 of the centre pixel's centre. */
export function brushOffsets(size) {
  const reach = Math.floor(size / 2), r2 = (size * size) / 4, out = [];
  for (let dy = -reach; dy <= reach; dy++) {
    for (let dx = -reach; dx <= reach; dx++) if (dx * dx + dy * dy <= r2) out.push([dx, dy]);
  }
  return out;
}

function layer(name) {
  const canvas = document.createElement("canvas");
  canvas.className = `layer layer-${name}`;
  canvas.dataset.layer = name;
  return canvas;
}

export class LabelEditor {
  constructor(viewport, { onChange = () => {} } = {}) {
    this.viewport = viewport;
    this.stage = document.createElement("div");
    this.stage.className = "stage";
    this.layers = { image: layer("image"), dim: layer("dim"), prelabel: layer("prelabel"), label: layer("label"),
                    superpixels: layer("superpixels"), tool: layer("tool"), cursor: layer("cursor") };
    this.outline = document.createElement("div");
    this.outline.className = "region-outline";
    const { image, dim, prelabel, label, superpixels, tool, cursor } = this.layers;
    this.stage.append(image, dim, prelabel, label, superpixels, this.outline, tool, cursor);
    viewport.append(this.stage);
    this.onChange = onChange;
    this.tool = "brush";
    this.classId = 0;
    this.size = 3;
    this.zoom = 1;
    this.opacity = 0.5;
    this.overlayVisible = true;
    this.prelabelVisible = true;
    this.plugins = {};
    this.allowed = null;
    this.colors = [];
    this.labels = null;
    this.undoStack = [];
    this.redoStack = [];
    this.stroke = null;
    this.hover = null;
    this._bindPointer();
  }

  /** Show a region: `bitmap` is the crop, `crop`/`region` boxes in image pixels, `labels` its start. */
  load({ bitmap, crop, region, labels, colors, allowed = null, superpixels = null }) {
    this.crop = crop;
    this.region = region;
    this.ox = region.x - crop.x;
    this.oy = region.y - crop.y;
    this.colors = colors;
    this.allowed = allowed;
    this.superpixels = superpixels;
    if (allowed) for (let i = 0; i < labels.length; i++) if (!allowed[i]) labels[i] = UNLABELED;
    this.labels = labels;
    this.prelabel = labels.slice();
    this.stroke = null;
    this.strokes = 0;
    this.undoStack = [];
    this.redoStack = [];
    for (const canvas of Object.values(this.layers)) {
      canvas.width = crop.w;
      canvas.height = crop.h;
    }
    const ctx = this.layers.image.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    this.pixels = ctx.getImageData(this.ox, this.oy, region.w, region.h).data; // the wand reads colours
    this._drawDim();
    this.labelImage = new ImageData(region.w, region.h);
    this.prelabelImage = new ImageData(region.w, region.h);
    for (const p of Object.values(this.plugins)) p.load?.();
    this._render(0, 0, region.w, region.h);
    this._applyOpacity();
    this.fit();
    this.onChange();
  }

  /** The region's superpixel map, when it comes after the region (a grid region's, fetched in the
   * background); it changes no label, only what the superpixel tools can do. */
  setSuperpixels(superpixels) {
    this.superpixels = superpixels;
    for (const p of Object.values(this.plugins)) p.superpixelsChanged?.();
    this.onChange();
  }

  // ---- view ----
  fit() {
    if (!this.crop) return;
    const w = this.viewport.clientWidth - 16, h = this.viewport.clientHeight - 16;
    this.setZoom(Math.min(w / this.crop.w, h / this.crop.h));
  }

  setZoom(zoom, anchor = null) {
    if (!this.crop) return;
    zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
    const vp = this.viewport, rect = vp.getBoundingClientRect();
    const ax = anchor ? anchor.x - rect.left : vp.clientWidth / 2, ay = anchor ? anchor.y - rect.top : vp.clientHeight / 2;
    const fx = (vp.scrollLeft + ax - this.stage.offsetLeft) / (this.crop.w * this.zoom);
    const fy = (vp.scrollTop + ay - this.stage.offsetTop) / (this.crop.h * this.zoom);
    this.zoom = zoom;
    this.stage.style.width = `${this.crop.w * zoom}px`;
    this.stage.style.height = `${this.crop.h * zoom}px`;
    const s = (v, total) => `${(100 * v) / total}%`;
    this.outline.style.left = s(this.ox, this.crop.w);
    this.outline.style.top = s(this.oy, this.crop.h);
    this.outline.style.width = s(this.region.w, this.crop.w);
    this.outline.style.height = s(this.region.h, this.crop.h);
    vp.scrollLeft = fx * this.crop.w * zoom + this.stage.offsetLeft - ax;
    vp.scrollTop = fy * this.crop.h * zoom + this.stage.offsetTop - ay;
  }

  zoomBy(factor, anchor = null) {
    this.setZoom(this.zoom * factor, anchor);
  }

  /** Dim the context, and inside the box whatever a superpixel region leaves out. */
  _drawDim() {
    const { w, h } = this.region, dim = this.layers.dim.getContext("2d");
    dim.fillStyle = "rgba(0, 0, 0, 0.6)";
    dim.fillRect(0, 0, this.crop.w, this.crop.h);
    dim.clearRect(this.ox, this.oy, w, h);
    if (!this.allowed) return;
    const shade = new ImageData(w, h);
    for (let i = 0; i < w * h; i++) if (!this.allowed[i]) shade.data[4 * i + 3] = 153;
    dim.putImageData(shade, this.ox, this.oy);
  }

  setOpacity(value) {
    this.opacity = value;
    this._applyOpacity();
  }

  toggleOverlay() {
    this.overlayVisible = !this.overlayVisible;
    this._applyOpacity();
    this.onChange();
  }

  /** Hide or show only the untouched model guess (the annotator's own paint stays). */
  togglePrelabel() {
    this.prelabelVisible = !this.prelabelVisible;
    this._applyOpacity();
    this.onChange();
  }

  _applyOpacity() {
    const shown = (visible) => (this.overlayVisible && visible ? String(this.opacity) : "0");
    this.layers.label.style.opacity = shown(true);
    this.layers.prelabel.style.opacity = shown(this.prelabelVisible);
    this.layers.superpixels.style.opacity = this.overlayVisible ? "" : "0";
  }

  // ---- tools ----
  /** A plug-in tool: {down(p, e), move(p, e), up(p, e), key(e), cancel(), load()}, all optional. */
  addTool(name, plugin) {
    this.plugins[name] = plugin;
  }

  setTool(tool) {
    if (tool !== this.tool) this.plugins[this.tool]?.cancel?.();
    this.tool = tool;
    this._drawCursor();
    this.onChange();
  }

  /** The class under a region pixel, or null (outside, or unlabeled). */
  classAt(p) {
    const { w, h } = this.region;
    if (!this.labels || p.x < 0 || p.y < 0 || p.x >= w || p.y >= h) return null;
    const v = this.labels[p.y * w + p.x];
    return v === UNLABELED ? null : v;
  }

  /** Set every pixel where `selection` is non-zero (region-sized) to `value`, as one undo step. */
  applySelection(selection, value = this.paintValue) {
    const before = this.labels.slice();
    let changed = 0;
    for (let i = 0; i < selection.length; i++) {
      if (!selection[i] || this.labels[i] === value || (this.allowed && !this.allowed[i])) continue;
      this.labels[i] = value;
      changed++;
    }
    if (!changed) return 0;
    this._pushUndo(before);
    this._render(0, 0, this.region.w, this.region.h);
    this.onChange();
    return changed;
  }

  /** Drop the stroke in progress (a second finger turned it into a pinch). */
  cancelStroke() {
    this.plugins[this.tool]?.cancelStroke?.();
    if (!this.stroke) return;
    this.labels.set(this.stroke.before);
    this.stroke = null;
    this._render(0, 0, this.region.w, this.region.h);
  }

  setClass(id) {
    this.classId = id;
    if (this.tool === "eraser") this.tool = "brush";
    this.onChange();
  }

  setSize(size) {
    this.size = Math.max(1, Math.min(64, Math.round(size)));
    this._drawCursor();
    this.onChange();
  }

  brushFootprint() {
    return brushOffsets(this.size);
  }

  get paintValue() {
    return this.tool === "eraser" ? UNLABELED : this.classId;
  }

  undo() {
    if (!this.undoStack.length) return;
    this.redoStack.push(this.labels.slice());
    this.labels.set(this.undoStack.pop());
    this._render(0, 0, this.region.w, this.region.h);
    this.onChange();
  }

  redo() {
    if (!this.redoStack.length) return;
    this._pushUndo(this.labels.slice(), false);
    this.labels.set(this.redoStack.pop());
    this._render(0, 0, this.region.w, this.region.h);
    this.onChange();
  }

  _pushUndo(snapshot, clearRedo = true) {
    this.undoStack.push(snapshot);
    if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift(); // bounded history
    if (clearRedo) this.redoStack = [];
  }

  /** The mask to submit: a copy, exactly region.w × region.h, row-major. */
  mask() {
    return this.labels.slice();
  }

  // ---- painting ----
  _bindPointer() {
    const c = this.layers.cursor;
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || !this.labels) return;
      e.preventDefault();
      c.setPointerCapture(e.pointerId);
      const p = this._regionPoint(e);
      if (e.altKey) { // pick the class under the cursor, as in an image editor's eyedropper
        const v = this.classAt(p);
        if (v !== null) this.setClass(v);
        return;
      }
      this.strokes += 1; // effort: every press on the region, with any tool
      const plugin = this.plugins[this.tool];
      if (plugin) { plugin.down?.(p, e); return; }
      if (this.tool === "fill") {
        const before = this.labels.slice();
        if (this._fill(p.x, p.y, this.classId)) {
          this._pushUndo(before);
          this.onChange();
        }
        return;
      }
      this.stroke = { before: this.labels.slice(), last: p, changed: false };
      this._stamp(p.x, p.y);
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.labels) return;
      const p = this._regionPoint(e);
      this.hover = p;
      this.plugins[this.tool]?.move?.(p, e);
      if (this.stroke) {
        this._line(this.stroke.last, p);
        this.stroke.last = p;
      }
      this._drawCursor();
    });
    const end = (e) => {
      if (this.plugins[this.tool] && e.type === "pointerup") this.plugins[this.tool].up?.(this._regionPoint(e), e);
      if (!this.stroke) return;
      if (this.stroke.changed) {
        this._pushUndo(this.stroke.before);
        this.onChange();
      }
      this.stroke = null;
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("pointerleave", () => {
      this.hover = null;
      this._drawCursor();
    });
    this.viewport.addEventListener("wheel", (e) => {
      if (!this.crop) return;
      e.preventDefault();
      this.zoomBy(e.deltaY < 0 ? 1.25 : 0.8, { x: e.clientX, y: e.clientY });
    }, { passive: false });
  }

  /** The pointer's pixel in region coordinates (may lie outside the region: stamps are clipped). */
  _regionPoint(e) {
    const rect = this.layers.cursor.getBoundingClientRect();
    const cx = Math.floor(((e.clientX - rect.left) * this.crop.w) / rect.width);
    const cy = Math.floor(((e.clientY - rect.top) * this.crop.h) / rect.height);
    return { x: cx - this.ox, y: cy - this.oy };
  }

  _stamp(x, y) {
    const { w, h } = this.region, value = this.paintValue, allowed = this.allowed;
    let x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (const [dx, dy] of brushOffsets(this.size)) {
      const px = x + dx, py = y + dy;
      if (px < 0 || py < 0 || px >= w || py >= h) continue; // never outside the region
      const i = py * w + px;
      if (this.labels[i] === value || (allowed && !allowed[i])) continue;
      this.labels[i] = value;
      this.stroke.changed = true;
      x0 = Math.min(x0, px); y0 = Math.min(y0, py); x1 = Math.max(x1, px); y1 = Math.max(y1, py);
    }
    if (x1 >= 0) this._render(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }

  _line(a, b) {
    // Bresenham: every pixel between two pointer events gets a stamp, so fast strokes have no gaps.
    let x = a.x, y = a.y;
    const dx = Math.abs(b.x - x), dy = -Math.abs(b.y - y), sx = x < b.x ? 1 : -1, sy = y < b.y ? 1 : -1;
    let err = dx + dy;
    for (;;) {
      this._stamp(x, y);
      if (x === b.x && y === b.y) break;
      const e2 = 2 * err;
      if (e2 >= dy) { err += dy; x += sx; }
      if (e2 <= dx) { err += dx; y += sy; }
    }
  }

  /** Flood fill of the 4-connected area of equal labels at (x, y); true if anything changed. */
  _fill(x, y, value) {
    const { w, h } = this.region;
    if (x < 0 || y < 0 || x >= w || y >= h) return false;
    const target = this.labels[y * w + x];
    if (target === value || (this.allowed && !this.allowed[y * w + x])) return false;
    const queue = new Int32Array(w * h);
    let head = 0, tail = 0;
    queue[tail++] = y * w + x;
    this.labels[y * w + x] = value;
    while (head < tail) {
      const i = queue[head++], px = i % w, py = (i - px) / w;
      const next = [px > 0 ? i - 1 : -1, px < w - 1 ? i + 1 : -1, py > 0 ? i - w : -1, py < h - 1 ? i + w : -1];
      for (const j of next) {
        if (j >= 0 && this.labels[j] === target && (!this.allowed || this.allowed[j])) {
          this.labels[j] = value;
          queue[tail++] = j;
        }
      }
    }
    this._render(0, 0, w, h);
    return true;
  }

  // ---- drawing ----
  _render(x0, y0, rw, rh) {
    // A pixel that still holds the pre-label's class is drawn on the pre-label layer, any other on the
    // label layer: so H can hide the model's guess and leave the annotator's work in view.
    const { w } = this.region, own = this.labelImage.data, guess = this.prelabelImage.data;
    for (let y = y0; y < y0 + rh; y++) {
      for (let x = x0; x < x0 + rw; x++) {
        const i = y * w + x, v = this.labels[i], o = 4 * i, c = this.colors[v];
        const px = v === this.prelabel[i] ? guess : own, other = px === own ? guess : own;
        other[o + 3] = 0;
        if (v === UNLABELED || !c) { px[o + 3] = 0; continue; }
        px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
      }
    }
    this.layers.label.getContext("2d").putImageData(this.labelImage, this.ox, this.oy, x0, y0, rw, rh);
    this.layers.prelabel.getContext("2d").putImageData(this.prelabelImage, this.ox, this.oy, x0, y0, rw, rh);
  }

  _drawCursor() {
    const c = this.layers.cursor, ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    if (!this.hover || !this.crop) return;
    const { x, y } = this.hover;
    const point = this.tool === "fill" || this.plugins[this.tool]?.pointCursor;
    const offsets = point ? [[0, 0]] : brushOffsets(this.size);
    ctx.fillStyle = this.tool === "eraser" ? "rgba(255, 255, 255, 0.55)" : "rgba(255, 255, 0, 0.55)";
    for (const [dx, dy] of offsets) {
      // Only the pixels the tool can change: the brush's part outside the region, or outside a
      // superpixel region's own shape, would promise paint that never lands.
      if (this.paintable(x + dx, y + dy)) ctx.fillRect(this.ox + x + dx, this.oy + y + dy, 1, 1);
    }
  }

  /** Whether a region pixel can be painted: inside the box and, for a superpixel region, its shape. */
  paintable(x, y) {
    const { w, h } = this.region;
    return x >= 0 && y >= 0 && x < w && y < h && (!this.allowed || this.allowed[y * w + x] === 1);
  }
}

/** "#rrggbb" → [r, g, b] */
export function parseColor(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
