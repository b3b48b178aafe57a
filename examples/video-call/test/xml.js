// A small XML reader for the test fixtures: elements, attributes (either quote), text,
// self-closing tags; comments and the XML declaration are skipped. Produces the
// { name, attrs, children } elements jingle-sdp.js reads (like ltx in the browser).
export function parseXml(src) {
  const stack = [{ name: '#root', attrs: {}, children: [] }];
  const re = /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<\/([\w:.-]+)\s*>|<([\w:.-]+)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/g;
  let m;
  while ((m = re.exec(src))) {
    const top = stack[stack.length - 1];
    if (m[1]) {
      if (top.name !== m[1]) throw new Error(`</${m[1]}> closes <${top.name}>`);
      stack.pop();
    } else if (m[2]) {
      const attrs = {};
      for (const a of m[3].matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs[a[1]] = unescape(a[2] ?? a[3]);
      const node = { name: m[2], attrs, children: [] };
      top.children.push(node);
      if (!m[4]) stack.push(node);
    } else if (m[5] !== undefined && m[5].trim()) {
      top.children.push(unescape(m[5]));
    }
  }
  if (stack.length !== 1) throw new Error('unclosed <' + stack[stack.length - 1].name + '>');
  return stack[0].children.find((c) => typeof c === 'object');
}

function unescape(s) {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** A canonical form for comparing element trees: each element as
 * { ns (resolved), name, attrs (sorted, minus `ignore`), text, children } */
export function canonical(node, ignore = [], parentNs = '') {
  const ns = node.attrs.xmlns || parentNs;
  const attrs = Object.fromEntries(Object.entries(node.attrs)
    .filter(([k]) => k !== 'xmlns' && !ignore.includes(`${node.name}@${k}`))
    .sort(([a], [b]) => a.localeCompare(b)));
  const kids = node.children.filter((c) => typeof c === 'object').map((c) => canonical(c, ignore, ns));
  const text = node.children.filter((c) => typeof c === 'string').join('').trim();
  return { ns, name: node.name, attrs, ...(text ? { text } : {}), children: kids };
}
