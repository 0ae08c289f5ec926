// Interactive time-series charts on top of uPlot (vendored, MIT): zoom by dragging, double-click to reset,
// a legend that follows the cursor. Each chart container gets data-points="<n>" once drawn, so tests and
// people can tell an empty chart from a drawn one.

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

function toSeconds(ts) {
  const t = typeof ts === "number" ? ts : Date.parse(ts);
  return Number.isFinite(t) ? (t > 1e11 ? t / 1000 : t) : NaN;
}

// Draw a line chart into `el`.
//   x:       array of timestamps (ISO strings, epoch ms or epoch s)
//   series:  [{label, values, color?}] with values aligned to x
//   options: {title, height, yFormat}
// Returns a handle with destroy(); charts are re-created rather than mutated when data changes.
export function lineChart(el, x, series, options = {}) {
  el.replaceChildren();
  const xs = x.map(toSeconds);
  const keep = xs.map((v) => Number.isFinite(v));
  const data = [xs.filter((_, i) => keep[i])];
  for (const s of series) data.push(s.values.filter((_, i) => keep[i]).map((v) => (v == null ? null : Number(v))));
  const n = data[0].length;
  el.dataset.points = String(n);
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", `${options.title || "chart"}: ${n} points`);
  if (n === 0) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No data yet.";
    el.append(p);
    return { destroy() {} };
  }
  if (typeof window.uPlot !== "function") {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = "The chart library did not load (ui/vendor/uplot/uPlot.iife.min.js).";
    el.append(p);
    return { destroy() {} };
  }
  const yFormat = options.yFormat || ((v) => fmtNumber(v));
  const width = () => Math.max(320, el.clientWidth || 800);
  const opts = {
    title: options.title,
    width: width(),
    height: options.height || 320,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true } },
    axes: [{}, { values: (_u, ticks) => ticks.map(yFormat), size: 70 }],
    series: [
      { label: "time" },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.color || PALETTE[i % PALETTE.length],
        width: 2,
        value: (_u, v) => (v == null ? "–" : yFormat(v)),
      })),
    ],
  };
  const chart = new window.uPlot(opts, data, el);
  const ro = new ResizeObserver(() => chart.setSize({ width: width(), height: opts.height }));
  ro.observe(el);
  return {
    chart,
    destroy() {
      ro.disconnect();
      chart.destroy();
    },
  };
}

export function fmtNumber(v, digits = 2) {
  if (v == null || Number.isNaN(Number(v))) return "–";
  const x = Number(v);
  const abs = Math.abs(x);
  if (abs >= 1e9) return `${(x / 1e9).toFixed(digits)}B`;
  if (abs >= 1e6) return `${(x / 1e6).toFixed(digits)}M`;
  if (abs >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  return x.toLocaleString(undefined, { maximumFractionDigits: digits });
}

// A horizontal bar showing a probability or confidence in [0, 1]; accessible as a meter.
export function meter(value, label) {
  const v = Math.max(0, Math.min(1, Number(value) || 0));
  const wrap = document.createElement("span");
  wrap.className = "meter";
  wrap.setAttribute("role", "meter");
  wrap.setAttribute("aria-valuemin", "0");
  wrap.setAttribute("aria-valuemax", "1");
  wrap.setAttribute("aria-valuenow", v.toFixed(3));
  wrap.setAttribute("aria-label", label || "value");
  const bar = document.createElement("span");
  bar.className = "meter-bar";
  bar.style.width = `${(v * 100).toFixed(1)}%`;
  const text = document.createElement("span");
  text.className = "meter-text";
  text.textContent = `${(v * 100).toFixed(1)}%`;
  wrap.append(bar, text);
  return wrap;
}
