// A small line chart on a canvas (no chart library): mIoU against the labeled fraction of pixels.

function niceStep(range, ticks) {
  const raw = range / ticks, mag = 10 ** Math.floor(Math.log10(raw)), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/** Draw `points` [{x, y, label}] (fractions in 0..1) on `canvas`; returns the number drawn. */
export function drawCurve(canvas, points, { xLabel = "labeled fraction", yLabel = "mIoU", xFormat = null } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || canvas.width, cssH = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const m = { left: 52, right: 16, top: 14, bottom: 42 };
  const w = cssW - m.left - m.right, h = cssH - m.top - m.bottom;
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  // x is a fraction (shown as %) unless `xFormat` formats another quantity (e.g. hours)
  const xMax = xFormat ? Math.max(0.1, ...xs) * 1.15 : Math.min(1, Math.max(0.05, ...xs) * 1.15), yMax = Math.min(1, Math.max(0.1, ...ys) * 1.15);
  const X = (x) => m.left + (x / xMax) * w, Y = (y) => m.top + h - (y / yMax) * h;

  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#d8dce3";
  ctx.fillStyle = "#5b6475";
  ctx.lineWidth = 1;
  const xStep = niceStep(xMax, 5), yStep = niceStep(yMax, 5);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    ctx.beginPath(); ctx.moveTo(X(x), m.top); ctx.lineTo(X(x), m.top + h); ctx.stroke();
    ctx.fillText(xFormat ? xFormat(x) : `${+(100 * x).toFixed(1)}%`, X(x), m.top + h + 6);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    ctx.beginPath(); ctx.moveTo(m.left, Y(y)); ctx.lineTo(m.left + w, Y(y)); ctx.stroke();
    ctx.fillText(`${+(100 * y).toFixed(1)}%`, m.left - 6, Y(y));
  }
  ctx.strokeStyle = "#1d2330";
  ctx.beginPath(); ctx.moveTo(m.left, m.top); ctx.lineTo(m.left, m.top + h); ctx.lineTo(m.left + w, m.top + h);
  ctx.stroke();
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(xLabel, m.left + w / 2, cssH - 2);
  ctx.save();
  ctx.translate(12, m.top + h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(yLabel, 0, 0);
  ctx.restore();

  if (!points.length) {
    ctx.fillStyle = "#5b6475";
    ctx.fillText("no finished cycle yet", m.left + w / 2, m.top + h / 2);
    return 0;
  }
  const sorted = [...points].sort((a, b) => a.x - b.x);
  ctx.strokeStyle = "#2f6fde";
  ctx.lineWidth = 2;
  ctx.beginPath();
  sorted.forEach((p, i) => (i ? ctx.lineTo(X(p.x), Y(p.y)) : ctx.moveTo(X(p.x), Y(p.y))));
  ctx.stroke();
  ctx.fillStyle = "#2f6fde";
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  for (const p of sorted) {
    ctx.beginPath(); ctx.arc(X(p.x), Y(p.y), 4, 0, 2 * Math.PI); ctx.fill();
    if (p.label) ctx.fillText(p.label, X(p.x) + 6, Y(p.y) - 4);
  }
  return sorted.length;
}
