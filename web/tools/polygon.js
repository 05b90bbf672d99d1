// Polygon / lasso fill: click vertices (or drag to lay a lasso), Enter or a double-click closes and fills
// with the current class, Backspace drops the last vertex, Esc cancels. Vertices sit on pixel centres; a
// pixel is inside when its centre is (even-odd rule), so the fill is exactly the rasterised polygon.
// Shift+Enter snaps to superpixels: it fills every superpixel at least half inside the polygon.

/** Does segment p1-p2 properly cross segment p3-p4 (touching at an end does not count)? */
function crosses(p1, p2, p3, p4) {
  const d = (a, b, c) => (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
  const d1 = d(p3, p4, p1), d2 = d(p3, p4, p2), d3 = d(p1, p2, p3), d4 = d(p1, p2, p4);
  return ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0));
}

/** Why `points` cannot be filled ("" when it can): fewer than 3 vertices, or edges that cross. */
export function polygonProblem(points) {
  const distinct = new Set(points.map((p) => `${p.x},${p.y}`));
  if (distinct.size < 3) return "a polygon needs at least 3 vertices";
  const n = points.length;
  for (let i = 0; i < n; i++) {
    for (let j = i + 2; j < n; j++) {
      if (i === 0 && j === n - 1) continue; // neighbours through the closing edge
      if (crosses(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n])) {
        return "the polygon crosses itself";
      }
    }
  }
  return "";
}

/**
 * A w×h Uint8Array of the polygon whose vertices are pixel centres: 1 where the pixel centre is inside
 * (even-odd crossing rule, as PNPOLY) or on the outline (Bresenham between vertices), so the pixels an
 * annotator clicked are always part of the fill.
 */
export function rasterisePolygon(points, w, h) {
  const out = new Uint8Array(w * h), n = points.length;
  const set = (x, y) => { if (x >= 0 && y >= 0 && x < w && y < h) out[y * w + x] = 1; };
  for (let y = 0; y < h; y++) {
    const xs = [];
    for (let i = 0; i < n; i++) {
      const a = points[i], b = points[(i + 1) % n];
      if ((a.y > y) !== (b.y > y)) xs.push(a.x + ((y - a.y) * (b.x - a.x)) / (b.y - a.y));
    }
    xs.sort((p, q) => p - q);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // inside ⇔ an odd number of crossings lie strictly right of x ⇔ xs[k] <= x < xs[k+1]
      for (let x = Math.max(0, Math.ceil(xs[k])); x < Math.min(w, xs[k + 1]); x++) out[y * w + x] = 1;
    }
  }
  for (let i = 0; i < n; i++) line(points[i], points[(i + 1) % n], set);
  return out;
}

function line(a, b, set) {
  let x = a.x, y = a.y;
  const dx = Math.abs(b.x - x), dy = -Math.abs(b.y - y), sx = x < b.x ? 1 : -1, sy = y < b.y ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    set(x, y);
    if (x === b.x && y === b.y) break;
    const e2 = 2 * err;
    if (e2 >= dy) { err += dy; x += sx; }
    if (e2 <= dx) { err += dx; y += sy; }
  }
}

/** The superpixels (region-sized `ids`) with at least half of their pixels in `selection`. */
export function snapToSuperpixels(selection, ids) {
  const inside = new Map(), total = new Map();
  for (let i = 0; i < ids.length; i++) {
    total.set(ids[i], (total.get(ids[i]) || 0) + 1);
    if (selection[i]) inside.set(ids[i], (inside.get(ids[i]) || 0) + 1);
  }
  const out = new Uint8Array(ids.length);
  for (let i = 0; i < ids.length; i++) out[i] = 2 * (inside.get(ids[i]) || 0) >= total.get(ids[i]) ? 1 : 0;
  return out;
}

export class PolygonTool {
  constructor(editor, { message = () => {} } = {}) {
    this.editor = editor;
    this.message = message;
    this.points = [];
    this.dragging = false;
    this.pointCursor = true;
  }

  get open() {
    return this.points.length > 0;
  }

  down(p, e) {
    if (e.detail >= 2 && this.points.length >= 3) { this.close(e.shiftKey); return; } // double-click closes
    this.points.push(p);
    this.dragging = true;
    this.draw(p);
  }

  move(p) {
    if (!this.open) return;
    const last = this.points[this.points.length - 1];
    // Dragging lays a lasso: a vertex every few pixels along the pointer's path.
    if (this.dragging && Math.hypot(p.x - last.x, p.y - last.y) >= 3) this.points.push(p);
    this.draw(p);
  }

  up() {
    this.dragging = false;
    if (this.points.length > 8) this.close(); // a lasso closes when the button is let go
  }

  key(e) {
    if (!this.open) return false;
    if (e.key === "Enter") this.close(e.shiftKey);
    else if (e.key === "Escape") this.cancel();
    else if (e.key === "Backspace") { this.points.pop(); this.draw(); }
    else return false;
    return true;
  }

  close(snap = false) {
    const { w, h } = this.editor.region, ids = this.editor.plugins.superpixel?.ids;
    if (snap && !ids) { // the polygon stays open: Enter fills it as drawn, or Shift+Enter once the map came
      const why = this.editor.superpixels?.pending ? "the superpixels are still loading" : "no superpixels to snap to";
      this.message(`Polygon not filled yet: ${why} (Enter fills it as drawn).`, "warn");
      return;
    }
    const points = this.points;
    this.cancel();
    const problem = polygonProblem(points);
    if (problem) { this.message(`Polygon not filled: ${problem}.`, "warn"); return; }
    const inside = rasterisePolygon(points, w, h);
    this.editor.applySelection(snap ? snapToSuperpixels(inside, ids) : inside);
  }

  /** A second finger came down: the vertex the first one laid was the start of a pinch, not a click. */
  cancelStroke() {
    if (this.dragging) this.points.pop();
    this.dragging = false;
    this.draw();
  }

  cancel() {
    this.points = [];
    this.dragging = false;
    this.draw();
  }

  load() {
    this.cancel();
  }

  draw(hover = null) {
    const { tool } = this.editor.layers, ctx = tool.getContext("2d"), { ox, oy } = this.editor;
    ctx.clearRect(0, 0, tool.width, tool.height);
    if (!this.points.length) return;
    const path = [...this.points, ...(hover ? [hover] : [])];
    ctx.lineWidth = Math.max(0.5, 1.5 / this.editor.zoom);
    ctx.strokeStyle = "rgba(255, 255, 0, 0.95)";
    ctx.beginPath();
    path.forEach((q, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, ox + q.x + 0.5, oy + q.y + 0.5));
    ctx.closePath();
    ctx.stroke();
  }
}
