// The console's Prometheus helpers (host/crates/control/console/prometheus.js), run in
// Node: the histogram quantiles the metrics page charts must match Prometheus'
// histogram_quantile on known buckets. The module has no imports, so it is loaded as a
// data: URL (it lives outside this package).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const source = readFileSync(join(dirname(fileURLToPath(import.meta.url)),
  '../../../host/crates/control/console/prometheus.js'));
const { parse, buckets, bucketDelta, bucketQuantile } =
  await import(`data:text/javascript;base64,${source.toString('base64')}`);

const scrape = (counts) => parse([
  '# TYPE heliograph_plugin_call_seconds histogram',
  ...['0.001', '0.01', '0.1', '+Inf'].flatMap((le, i) => [
    `heliograph_plugin_call_seconds_bucket{world="auth",le="${le}"} ${counts.auth[i]}`,
    `heliograph_plugin_call_seconds_bucket{world="room",le="${le}"} ${counts.room[i]}`,
  ]),
  `heliograph_plugin_call_seconds_sum{world="auth"} 1`,
  `heliograph_plugin_call_seconds_count{world="auth"} ${counts.auth[3]}`,
].join('\n'));

test('buckets add up across label sets, by bound', () => {
  const b = buckets(scrape({ auth: [1, 2, 3, 4], room: [0, 10, 10, 10] }), 'heliograph_plugin_call_seconds');
  assert.deepEqual([...b.entries()].sort((x, y) => x[0] - y[0]),
    [[0.001, 1], [0.01, 12], [0.1, 13], [Infinity, 14]]);
});

test('quantiles interpolate inside the bucket as histogram_quantile does', () => {
  const b = new Map([[0.001, 0], [0.01, 50], [0.1, 100], [Infinity, 100]]);
  assert.ok(Math.abs(bucketQuantile(b, 0.5) - 0.01) < 1e-12);
  // rank 75 is half way through the (0.01, 0.1] bucket
  assert.ok(Math.abs(bucketQuantile(b, 0.75) - 0.055) < 1e-12);
  assert.ok(Math.abs(bucketQuantile(b, 0.25) - (0.001 + 0.009 * 0.5)) < 1e-12);
  // in +Inf: the highest finite bound
  assert.equal(bucketQuantile(new Map([[0.1, 1], [Infinity, 10]]), 0.99), 0.1);
  assert.equal(bucketQuantile(new Map([[0.1, 0], [Infinity, 0]]), 0.5), null);
  assert.equal(bucketQuantile(new Map(), 0.5), null);
});

test('the delta between two scrapes holds only the calls made in between', () => {
  const before = buckets(scrape({ auth: [10, 10, 10, 10], room: [0, 0, 0, 0] }), 'heliograph_plugin_call_seconds');
  const after = buckets(scrape({ auth: [10, 10, 20, 20], room: [0, 0, 0, 0] }), 'heliograph_plugin_call_seconds');
  const recent = bucketDelta(after, before);
  // all ten new calls took 10-100 ms, though most calls so far took under 1 ms
  assert.ok(bucketQuantile(recent, 0.5) > 0.01);
  assert.ok(bucketQuantile(after, 0.5) <= 0.001);
  assert.equal(bucketQuantile(bucketDelta(before, before), 0.5), null);
});
