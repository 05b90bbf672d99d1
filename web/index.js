// The project list: name, images, queue length, cycles, latest mIoU, with links to annotate and dashboard.

import { api, el, formatPercent, requireToken } from "./common.js";

const $ = (id) => document.getElementById(id);

async function row(project) {
  const [stats, metrics] = await Promise.all([
    api(`/api/projects/${project.id}/queue/stats`).catch(() => null),
    api(`/api/projects/${project.id}/metrics`).catch(() => null),
  ]);
  const cycles = metrics ? metrics.cycles : [];
  const scored = cycles.filter((c) => c.miou !== null && c.miou !== undefined);
  const latest = scored.length ? scored[scored.length - 1].miou : null;
  return el("tr", { "data-project": project.id },
    el("td", {}, el("a", { href: `/projects/${project.id}` }, project.name)),
    el("td", {}, String(project.image_count ?? "–")),
    el("td", { class: "queue" }, stats ? String(stats.queued) : "–"),
    el("td", {}, String(cycles.length)),
    el("td", { class: "miou" }, formatPercent(latest)),
    el("td", {}, el("a", { href: `/annotate/${project.id}` }, "annotate"), " · ",
       el("a", { href: `/tag/${project.id}` }, "tag"), " · ",
       el("a", { href: `/projects/${project.id}` }, "dashboard")));
}

async function main() {
  const me = await requireToken($("gate"));
  $("who").textContent = `${me.name} (${me.role})`;
  try {
    const projects = await api("/api/projects");
    const body = document.querySelector("#projects tbody");
    body.append(...(await Promise.all(projects.map(row))));
    $("no-projects").hidden = projects.length > 0;
  } catch (err) {
    $("message").hidden = false;
    $("message").className = "message error";
    $("message").textContent = `Error: ${err.message}`;
  }
}

main();
