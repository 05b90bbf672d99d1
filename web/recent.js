// Going back: the annotator's last submissions in this project (the server's list), any of which can be
// reopened and painted again while no cycle has used it. A reopened region starts from the mask as it
// was submitted; Enter sends the new mask through the outbox to the region's revision address, where it
// replaces the earlier one (the latest wins), and the page returns to the region it put aside.
// Shift+Backspace reopens the latest one, and pressed again the one before it.

import { apiFetch, clear, el } from "./common.js";
import { decodeGray8 } from "./png.js";
import { UNLABELED } from "./editor.js";
import { mapNeededToShow } from "./tools/superpixels.js";

export const RECENT_LIMIT = 5;

/** Whether a key event asks to go back (Shift+Backspace; Backspace alone drops a polygon vertex). */
export function isBackKey(e) {
  return e.key === "Backspace" && e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey;
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
}

/** The submitted mask of a recent submission as an item the page can show (as a leased region's); a grid
 * region's superpixel map is left to the page to fetch when a tool uses it, as for a leased one. */
export async function loadRevision(entry, { fetchBitmap, fetchSuperpixels }) {
  const { w, h } = entry.region;
  const [bitmap, mask, superpixels] = await Promise.all([
    fetchBitmap(entry.crop.url),
    apiFetch(entry.mask_url).then(async (res) => decodeGray8(await res.arrayBuffer())),
    mapNeededToShow(entry.region) ? fetchSuperpixels({ region: entry.region, crop: entry.crop }) : null]);
  const labels = mask.width === w && mask.height === h ? mask.data : new Uint8Array(w * h).fill(UNLABELED);
  const lease = { lease_id: null, region: entry.region, image: entry.image, crop: entry.crop,
                  prelabel_url: entry.prelabel_url, ttl_seconds: 0 };
  return { lease, bitmap, labels, superpixels, expiresAt: Infinity, activeSeconds: 0,
           revision: { annotationId: entry.annotation_id, url: entry.mask_url } };
}

/** The "Recent" list in `host`: `onOpen(entry)` reopens one; `refresh()` asks the server again. */
export class RecentList {
  constructor(host, { projectId, call, onOpen, message }) {
    Object.assign(this, { host, projectId, call, onOpen, message });
    this.entries = [];
  }

  async refresh() {
    try {
      this.entries = await this.call(`/api/projects/${this.projectId}/my-recent?limit=${RECENT_LIMIT}`) ?? [];
    } catch (err) {
      console.warn("recent submissions failed to load", err);
    }
    this.render();
    return this.entries;
  }

  render(openRegionId = this.openRegionId) {
    this.openRegionId = openRegionId;
    const list = clear(this.host);
    if (!this.entries.length) {
      list.append(el("li", { class: "small" }, "Nothing submitted yet."));
      return;
    }
    for (const entry of this.entries) {
      const r = entry.region;
      const button = el("button", {
        type: "button", "data-annotation": entry.annotation_id, "data-region": r.id,
        disabled: !entry.editable, class: r.id === openRegionId ? "active" : undefined,
        title: entry.editable ? "Reopen and edit this region" : `Can no longer be edited: ${entry.reason}`,
      }, el("span", { class: "name" }, `${entry.image.stem} (${r.x}, ${r.y})`),
      el("span", { class: "small" }, entry.editable ? ago(entry.created_at) : "used"));
      button.addEventListener("click", () => this.open(entry));
      list.append(el("li", {}, button));
    }
  }

  async open(entry) {
    if (!entry.editable) {
      this.message(`That region can no longer be edited: ${entry.reason}.`, "warn");
      return;
    }
    await this.onOpen(entry);
    this.render(entry.region.id);
  }

  /** Reopen the next editable submission further back than the one open now (the latest if none is). */
  async back() {
    const entries = await this.refresh();
    const at = entries.findIndex((e) => e.region.id === this.openRegionId);
    const entry = entries.slice(at + 1).find((e) => e.editable);
    if (entry) await this.open(entry);
    else this.message(entries.length ? "No earlier submission can be edited (a cycle has used them, or a " +
                                       "reviewer has judged them)." : "You have not submitted a region here yet.", "warn");
  }

  /** The page left the reopened region. */
  closed() {
    this.render(null);
  }
}
