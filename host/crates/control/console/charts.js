// Hand-made SVG line charts for figures sampled by polling (no library, no inline style:
// colours come from console.css by series class).
const NS = 'http://www.w3.org/2000/svg';
const W = 320, H = 120, PAD = 4, TOP = 18; // TOP leaves room for the scale

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A time series kept to the last `keep` samples. */
export class Series {
  constructor(name, keep = 60) { this.name = name; this.keep = keep; this.points = []; }
  push(t, v) {
    if (v === null || v === undefined || Number.isNaN(v)) return;
    this.points.push([t, v]);
    if (this.points.length > this.keep) this.points.shift();
  }
  last() { return this.points.length ? this.points[this.points.length - 1][1] : null; }
}

/** Turns a counter into a per-second rate between two samples. */
export class Rate {
  constructor() { this.prev = null; }
  next(t, total) {
    const prev = this.prev;
    this.prev = [t, total];
    if (!prev || t <= prev[0] || total < prev[1]) return null;
    return (total - prev[1]) / ((t - prev[0]) / 1000);
  }
}

/** Draws `series` (an array of Series) into a fresh <figure> titled `title`. */
export function lineChart(title, series, unit = '') {
  const all = series.flatMap((s) => s.points);
  const max = Math.max(1e-9, ...all.map((p) => p[1]));
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const span = Math.max(1, t1 - t0);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  root.append(svg('line', { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: 'axis' }));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const pts = s.points.map(([t, v]) => {
      const x = PAD + ((t - t0) / span) * (W - 2 * PAD);
      const y = H - PAD - (v / max) * (H - PAD - TOP);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    if (pts.length === 1) pts.push(pts[0].replace(/^[^,]+/, String(W - PAD)));
    root.append(svg('polyline', { points: pts.join(' '), class: `line s${i % 6}` }));
  });
  const top = svg('text', { x: W - PAD, y: 12, class: 'scale', 'text-anchor': 'end' });
  top.textContent = `max ${fmtNum(max)}${unit}`;
  root.append(top);
  const fig = document.createElement('figure');
  fig.className = 'chart-box';
  const cap = document.createElement('figcaption');
  cap.append(title);
  for (const [i, s] of series.entries()) {
    const key = document.createElement('span');
    key.className = `key s${i % 6}`;
    const v = s.last();
    key.textContent = `${s.name} ${v === null ? '–' : fmtNum(v) + unit}`;
    cap.append(' ', key);
  }
  fig.append(cap, root);
  return fig;
}

function fmtNum(v) {
  if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(v >= 10 ? 1 : 2);
}
