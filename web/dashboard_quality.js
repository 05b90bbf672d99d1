// The dashboard's effort and label-quality panels: annotation hours, seconds per region, the share of
// pre-labels accepted unchanged, the learning curve against hours; review queue, per-annotator
// acceptance and gold scores (flagged below the project's threshold), consensus agreement per class.

import { clear, el, formatPercent, formatSeconds } from "./common.js";
import { drawCurve } from "./chart.js";

const $ = (id) => document.getElementById(id);

function stat(label, value) {
  return el("div", { "data-stat": label }, el("strong", {}, value), el("span", { class: "small" }, label));
}

const hours = (h) => (h >= 10 ? h.toFixed(0) : h >= 1 ? h.toFixed(1) : h.toFixed(2));

export function renderEffort(effort) {
  const t = effort.total;
  clear($("effort-stats")).append(
    stat("annotation hours", hours(t.active_hours)), stat("seconds per region", formatSeconds(t.seconds_per_region)),
    stat("accepted unchanged", formatPercent(t.unchanged_share)), stat("regions", String(t.annotations)));
  const points = effort.curve.filter((p) => p.miou !== null).map((p) => ({ x: p.hours, y: p.miou, label: `#${p.number}` }));
  drawCurve($("hours-curve"), points, { xLabel: "annotation hours",
    xFormat: (x) => (x < 1 ? `${Math.round(60 * x)} min` : `${+x.toFixed(1)} h`) });
  $("hours-curve").dataset.points = String(points.length);
  const body = clear(document.querySelector("#effort-annotators tbody"));
  for (const a of effort.annotators) {
    body.append(el("tr", {}, el("td", {}, a.name), el("td", {}, String(a.annotations)),
                   el("td", {}, formatSeconds(a.seconds_per_region)), el("td", {}, formatPercent(a.unchanged_share)),
                   el("td", {}, hours(a.active_hours))));
  }
}

export function renderQuality(q, projectId) {
  $("review-link").href = `/review/${projectId}`;
  $("review-link").hidden = q.review === "none" && !q.review_pending;
  clear($("quality-stats")).append(
    stat("awaiting review", String(q.review_pending)), stat("review", q.review),
    stat("gold regions", String(q.gold_regions)),
    stat("consensus regions", `${q.consensus_complete}/${q.consensus_regions}`));
  const body = clear(document.querySelector("#quality-annotators tbody"));
  for (const a of q.annotators) {
    const row = el("tr", { "data-annotator": a.name, class: a.flagged ? "flagged" : "" },
      el("td", {}, a.name), el("td", {}, String(a.reviewed)), el("td", {}, formatPercent(a.acceptance)),
      el("td", {}, String(a.gold_scored)), el("td", {}, formatPercent(a.gold_miou)),
      el("td", {}, formatPercent(a.gold_accuracy)), el("td", {}, a.flagged ? "⚑ below threshold" : ""));
    body.append(row);
  }
  const agreement = clear(document.querySelector("#agreement tbody"));
  const entries = Object.entries(q.agreement_iou);
  if (entries.length) agreement.append(el("tr", {}, el("th", { colspan: 2 }, "Agreement IoU (consensus votes)")));
  for (const [name, iou] of entries) agreement.append(el("tr", {}, el("td", {}, name), el("td", {}, formatPercent(iou))));
}
