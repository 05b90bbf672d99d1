// Moving around the crop without painting: Space+drag or the middle button pans, two fingers pan and
// pinch-zoom (the stroke the first finger began is dropped), and a minimap shows the whole image with
// the crop and the region marked. The view changes, never the labels.

const DRAG_CURSOR = "grabbing";

export class Navigator {
  constructor(editor, viewport, minimap = null) {
    this.editor = editor;
    this.viewport = viewport;
    this.minimap = minimap;
    this.space = false;
    this.pan = null; // {id, x, y, left, top}
    this.touches = new Map(); // pointerId -> {x, y}
    this.pinch = null; // {distance, zoom, mid}
    this.image = null; // {id, bitmap} of the minimap
    this._bind();
  }

  _bind() {
    const vp = this.viewport;
    window.addEventListener("keydown", (e) => {
      if (e.code !== "Space" || e.target instanceof HTMLInputElement) return;
      e.preventDefault(); // no page scroll, no button press
      this.space = true;
      vp.classList.add("can-pan");
    });
    window.addEventListener("keyup", (e) => {
      if (e.code !== "Space") return;
      this.space = false;
      vp.classList.remove("can-pan");
    });
    window.addEventListener("blur", () => { this.space = false; vp.classList.remove("can-pan"); });
    // Capture phase: the viewport sees a pointer before the canvas would start painting with it.
    vp.addEventListener("pointerdown", (e) => this._down(e), { capture: true });
    vp.addEventListener("pointermove", (e) => this._move(e), { capture: true });
    for (const type of ["pointerup", "pointercancel"]) vp.addEventListener(type, (e) => this._up(e), { capture: true });
    vp.addEventListener("auxclick", (e) => { if (e.button === 1) e.preventDefault(); });
    vp.addEventListener("scroll", () => this.drawMinimap());
  }

  _stop(e) {
    e.preventDefault();
    e.stopPropagation();
  }

  _down(e) {
    if (e.pointerType === "touch") {
      this.touches.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (this.touches.size === 2) {
        this.editor.cancelStroke();
        this.pinch = this._pinchState();
        this._stop(e);
      } else if (this.touches.size > 2) this._stop(e);
      return;
    }
    if (e.button === 1 || (e.button === 0 && this.space)) {
      this._stop(e);
      this.viewport.setPointerCapture(e.pointerId);
      this.pan = { id: e.pointerId, x: e.clientX, y: e.clientY, left: this.viewport.scrollLeft, top: this.viewport.scrollTop };
      this.viewport.style.cursor = DRAG_CURSOR;
    }
  }

  _move(e) {
    if (this.touches.has(e.pointerId)) {
      this.touches.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (!this.pinch) return;
      this._stop(e);
      const now = this._pinchState(), vp = this.viewport;
      this.editor.setZoom(this.pinch.zoom * (now.distance / this.pinch.distance), now.mid);
      vp.scrollLeft -= now.mid.x - this.pinch.last.x;
      vp.scrollTop -= now.mid.y - this.pinch.last.y;
      this.pinch.last = now.mid;
      return;
    }
    if (this.pan && e.pointerId === this.pan.id) {
      this._stop(e);
      this.viewport.scrollLeft = this.pan.left - (e.clientX - this.pan.x);
      this.viewport.scrollTop = this.pan.top - (e.clientY - this.pan.y);
    }
  }

  _up(e) {
    if (this.touches.delete(e.pointerId)) {
      if (this.pinch) this._stop(e);
      if (this.touches.size < 2) this.pinch = null; // the finger left behind does not paint: its stroke was dropped
      return;
    }
    if (this.pan && e.pointerId === this.pan.id) {
      this._stop(e);
      this.pan = null;
      this.viewport.style.cursor = "";
    }
  }

  _pinchState() {
    const [a, b] = [...this.touches.values()];
    const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
    return { distance: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)), zoom: this.editor.zoom, mid, last: mid };
  }

  /** The minimap for `image` ({id, width, height}); `load(id)` gives its bitmap (cached per image). */
  async showImage(image, load) {
    if (!this.minimap) return;
    this.imageInfo = image;
    if (this.image?.id !== image.id) {
      this.image = { id: image.id, bitmap: null };
      try {
        // Kept small: every region of this image redraws the minimap from it.
        const full = await load(image.id), width = Math.min(full.width, 320);
        const bitmap = await createImageBitmap(full, { resizeWidth: width,
                                                       resizeHeight: Math.max(1, Math.round((full.height * width) / full.width)) });
        full.close();
        if (this.image.id === image.id) this.image.bitmap = bitmap;
      } catch (err) {
        console.warn("minimap image failed", err);
      }
    }
    this.drawMinimap();
  }

  drawMinimap() {
    const c = this.minimap, info = this.imageInfo, ed = this.editor;
    if (!c || !info || !ed.crop) return;
    const scale = Math.min(c.clientWidth / info.width, 160 / info.height) || 0.1;
    c.width = Math.max(1, Math.round(info.width * scale));
    c.height = Math.max(1, Math.round(info.height * scale));
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#444";
    ctx.fillRect(0, 0, c.width, c.height);
    if (this.image?.bitmap) ctx.drawImage(this.image.bitmap, 0, 0, c.width, c.height);
    const box = (b, style, width) => {
      ctx.strokeStyle = style;
      ctx.lineWidth = width;
      ctx.strokeRect(b.x * scale, b.y * scale, Math.max(2, b.w * scale), Math.max(2, b.h * scale));
    };
    box(ed.crop, "rgba(255, 255, 255, 0.8)", 1);
    box(ed.region, "#ffd400", 2);
  }
}
