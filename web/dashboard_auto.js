// The auto-cycle line of the dashboard: whether the project starts its next cycle by itself, and how
// far it is from doing so ("7/20 labeled since cycle 3").

import { api, clear, el } from "./common.js";

export function describeAutoCycle(s) {
  if (!s.enabled) return ["Auto cycle: off"];
  const since = s.last_cycle === null ? "so far" : `since cycle ${s.last_cycle}`;
  const rules = [];
  if (s.after_labeled) rules.push(`${s.labeled_since}/${s.after_labeled} labeled ${since}`);
  if (s.when_queue_below) rules.push(`${s.waiting} waiting in the queue (starts below ${s.when_queue_below})`);
  const parts = [`Auto cycle: on — ${rules.join("; or ")}`];
  if (s.active) parts.push(`cycle ${s.last_cycle} is active: the next starts once it ends`);
  return parts;
}

export async function refreshAutoCycle(projectId) {
  const box = document.getElementById("auto-cycle");
  try {
    const status = await api(`/api/projects/${projectId}/auto-cycle`);
    const lines = describeAutoCycle(status);
    clear(box).append(el("span", {}, lines[0]), ...lines.slice(1).map((t) => el("span", { class: "small" }, ` · ${t}`)));
    box.dataset.enabled = String(status.enabled);
    box.dataset.labeledSince = String(status.labeled_since);
  } catch (err) {
    clear(box).append(`Auto cycle: could not read (${err.message})`);
  }
}
