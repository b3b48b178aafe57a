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

/** The cumulative bucket counts of histogram `name`, summed over its label sets: a Map
 * from each upper bound (`le`, `+Inf` as Infinity) to the count of values at or below it. */
export function buckets(samples, name) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || s.labels.le === undefined) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    out.set(le, (out.get(le) ?? 0) + s.value);
  }
  return out;
}

/** `now` minus `before`, bound by bound: the values observed between two scrapes. */
export function bucketDelta(now, before) {
  const out = new Map();
  for (const [le, n] of now) out.set(le, n - (before.get(le) ?? 0));
  return out;
}

/** The q-quantile of cumulative buckets, interpolated linearly inside its bucket as
 * Prometheus' histogram_quantile does (the highest finite bound when it falls in +Inf);
 * null when the buckets hold no value. */
export function bucketQuantile(cumulative, q) {
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  const total = bounds.length ? cumulative.get(bounds[bounds.length - 1]) : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = cumulative.get(le);
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / Math.max(count - below, 1e-12));
    }
    lower = le;
    below = count;
  }
  return lower;
}

/** The value of the unlabelled sample `name`, or null when the server has none. */
export function value(samples, name) {
  const s = samples.find((x) => x.name === name && Object.keys(x.labels).length === 0);
  return s ? s.value : null;
}
