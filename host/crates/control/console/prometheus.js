// Parses the Prometheus text format of the server's /metrics into samples and reads the
// figures the console charts from them.

/** [{name, labels: {k: v}, value}] from the text format (comments skipped). */
export function parse(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    }
    const value = Number(m[4]);
    if (!Number.isNaN(value)) out.push({ name: m[1], labels, value });
  }
  return out;
}

/** Sum of the samples of `name` whose labels pass `keep`. */
export function sum(samples, name, keep = () => true) {
  return samples.filter((s) => s.name === name && keep(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** The largest value of `name` with `quantile="q"` (summaries), or null. */
export function quantile(samples, name, q) {
  const vals = samples.filter((s) => s.name === name && s.labels.quantile === q).map((s) => s.value);
  return vals.length ? Math.max(...vals) : null;
}

/** The value of the unlabelled sample `name`, or null when the server has none. */
export function value(samples, name) {
  const s = samples.find((x) => x.name === name && Object.keys(x.labels).length === 0);
  return s ? s.value : null;
}
