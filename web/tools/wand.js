// Magic wand: a click floods the 4-connected area of pixels whose colour is within `tolerance` of the
// clicked pixel's (largest difference over R, G, B), inside the region only, and fills it with the class.

export const DEFAULT_TOLERANCE = 24;
export const MAX_TOLERANCE = 255;

/**
 * A w×h Uint8Array, 1 on the pixels connected to (x, y) whose RGB differs from the seed's by at most
 * `tolerance` in every channel. `rgba` holds the region's pixels (w*h*4); `allowed` (optional) bounds it.
 */
export function wandSelection(rgba, w, h, x, y, tolerance, allowed = null) {
  const out = new Uint8Array(w * h);
  if (x < 0 || y < 0 || x >= w || y >= h || (allowed && !allowed[y * w + x])) return out;
  const s = 4 * (y * w + x), r = rgba[s], g = rgba[s + 1], b = rgba[s + 2];
  const near = (i) => Math.abs(rgba[4 * i] - r) <= tolerance && Math.abs(rgba[4 * i + 1] - g) <= tolerance
    && Math.abs(rgba[4 * i + 2] - b) <= tolerance && (!allowed || allowed[i]);
  const queue = new Int32Array(w * h);
  let head = 0, tail = 0;
  queue[tail++] = y * w + x;
  out[y * w + x] = 1;
  while (head < tail) {
    const i = queue[head++], px = i % w;
    const next = [px > 0 ? i - 1 : -1, px < w - 1 ? i + 1 : -1, i >= w ? i - w : -1, i + w < w * h ? i + w : -1];
    for (const j of next) {
      if (j >= 0 && !out[j] && near(j)) { out[j] = 1; queue[tail++] = j; }
    }
  }
  return out;
}

export class WandTool {
  constructor(editor, { onTolerance = () => {} } = {}) {
    this.editor = editor;
    this.tolerance = DEFAULT_TOLERANCE;
    this.onTolerance = onTolerance;
    this.pointCursor = true;
  }

  setTolerance(value) {
    this.tolerance = Math.max(0, Math.min(MAX_TOLERANCE, Math.round(value)));
    this.onTolerance(this.tolerance);
  }

  down(p) {
    const { w, h } = this.editor.region;
    const sel = wandSelection(this.editor.pixels, w, h, p.x, p.y, this.tolerance, this.editor.allowed);
    this.editor.applySelection(sel);
  }
}
