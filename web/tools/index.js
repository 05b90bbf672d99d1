// The painting tools beyond brush, eraser and fill, wired to their buttons, sliders and keys:
// G polygon/lasso, W magic wand (, and . change its tolerance), X superpixel brush, K superpixel
// boundaries, H the pre-label only, O every overlay. The page calls `onKey` before its own shortcuts.
// A tool that uses superpixels asks the page for the region's map (`needSuperpixels`) when it is on and
// the editor has none: a grid region comes without one (web/tools/superpixels.js says why).

import { PolygonTool } from "./polygon.js";
import { SuperpixelTool } from "./superpixels.js";
import { WandTool } from "./wand.js";

const TOOL_KEYS = { g: "polygon", w: "wand", x: "superpixel" };
const TOLERANCE_STEP = 4;
const SUPERPIXEL_TOOLS = ["superpixel", "polygon"]; // the superpixel brush, and the polygon's snap

export function installTools(editor, { message, needSuperpixels = () => {} }) {
  const $ = (id) => document.getElementById(id);
  const polygon = new PolygonTool(editor, { message });
  const wand = new WandTool(editor, { onTolerance: (v) => { $("wand-tolerance").value = String(v); $("wand-tolerance-value").textContent = String(v); } });
  const superpixel = new SuperpixelTool(editor, { message });
  editor.addTool("polygon", polygon);
  editor.addTool("wand", wand);
  editor.addTool("superpixel", superpixel);
  wand.setTolerance(wand.tolerance);

  $("brush-size-range").addEventListener("input", (e) => editor.setSize(Number(e.target.value)));
  $("wand-tolerance").addEventListener("input", (e) => wand.setTolerance(Number(e.target.value)));
  $("prelabel-visible").addEventListener("change", () => editor.togglePrelabel());
  $("superpixels-visible").addEventListener("change", () => superpixel.toggleBoundaries());

  const usesSuperpixels = () => SUPERPIXEL_TOOLS.includes(editor.tool);

  function refresh() {
    if (editor.region && editor.superpixels === null && usesSuperpixels()) needSuperpixels();
    // On a grid region the superpixels are only an aid: their lines show while a tool that uses them is
    // on, not over every region all the time. A superpixel region's own shape always shows.
    const aid = editor.region?.kind !== "superpixel" && !usesSuperpixels();
    editor.stage.classList.toggle("superpixels-idle", aid);
    $("brush-size-range").value = String(editor.size);
    $("prelabel-visible").checked = editor.prelabelVisible;
    $("superpixels-visible").checked = superpixel.visible;
    const sp = editor.superpixels;
    $("superpixel-state").textContent = sp?.ids ? "" : sp?.problem ? `Superpixels: ${sp.problem}.` : "";
  }

  /** True when the key was a tool's: the page then leaves it alone. */
  function onKey(e) {
    if (editor.tool === "polygon" && polygon.key(e)) { e.preventDefault(); return true; }
    if (e.ctrlKey || e.metaKey || e.altKey) return false;
    const lower = e.key.toLowerCase();
    if (TOOL_KEYS[lower] && !e.shiftKey) editor.setTool(TOOL_KEYS[lower]);
    else if (e.key === ",") wand.setTolerance(wand.tolerance - TOLERANCE_STEP);
    else if (e.key === ".") wand.setTolerance(wand.tolerance + TOLERANCE_STEP);
    else if (lower === "h" && !e.shiftKey) editor.togglePrelabel();
    else if (lower === "o") editor.toggleOverlay();
    else if (lower === "k") { superpixel.toggleBoundaries(); refresh(); }
    else return false;
    e.preventDefault();
    return true;
  }

  return { onKey, refresh, usesSuperpixels, polygon, wand, superpixel };
}
