// Native test helpers (the Rust SDK's testing::FakeHost): an in-memory key-value store, a
// configuration flattened exactly like the server does it, and captured log lines, so
// `node --test` runs a plugin's logic without the server:
//
//     const host = new FakeHost().configJson('{"password": "s3cret"}').kv("greeting", "hi").install();
//     assert.equal(config.get("password"), "s3cret");
//     log.info("hello", { k: "v" });
//     assert.equal(host.logs()[0].message, "hello");
//
// install() replaces whatever host was installed.
import { KvError, setBackend } from "./heliograph_plugin.js";

/** JSON text as the server writes it: compact, keys sorted. */
export function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The server's flattening: nested objects become dotted keys, strings stay as they are,
 * other values become compact JSON text; sorted by key. */
export function flatten(value, prefix = "") {
  const out = [];
  const walk = (obj, prefix) => {
    for (const [key, val] of Object.entries(obj)) {
      const full = prefix ? `${prefix}.${key}` : key;
      if (val !== null && typeof val === "object" && !Array.isArray(val)) walk(val, full);
      else if (typeof val === "string") out.push([full, val]);
      else out.push([full, canonicalJson(val)]);
    }
  };
  walk(value, prefix);
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

const utf8 = new TextEncoder();

export class FakeHost {
  constructor() {
    this._json = "{}";
    this._entries = [];
    this._kv = new Map();
    this._logs = [];
    this._kvUnavailable = false;
  }

  /** Sets the configuration from JSON text (an object). */
  configJson(text) {
    const value = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error("configJson: the configuration must be a JSON object");
    }
    this._json = canonicalJson(value);
    this._entries = flatten(value);
    return this;
  }

  /** Pre-stores a key-value entry. */
  kv(key, value) {
    this._kv.set(key, typeof value === "string" ? utf8.encode(value) : Uint8Array.from(value));
    return this;
  }

  /** Makes every key-value operation fail with `unavailable`. */
  kvUnavailable() {
    this._kvUnavailable = true;
    return this;
  }

  /** Makes this the host the SDK talks to; keep it to inspect it. */
  install() {
    setBackend(this);
    return this;
  }

  /** Log lines so far: { level, message, fields: [[key, value]] }. */
  logs() {
    return [...this._logs];
  }

  kvValue(key) {
    return this._kv.get(key);
  }

  // --- the host API (used by config, kv and log) ---
  log(level, message, fields) {
    this._logs.push({ level, message, fields });
  }

  _check(key) {
    if (this._kvUnavailable) throw new KvError("unavailable", "fake host: unavailable");
    if (!key || utf8.encode(key).length > 256) {
      throw new KvError("invalid-key", "empty or over 256 bytes");
    }
  }

  kvGet(key) {
    this._check(key);
    return this._kv.get(key);
  }

  kvSet(key, value) {
    this._check(key);
    if (value.length > 64 * 1024) throw new KvError("value-too-large", String(64 * 1024));
    this._kv.set(key, value);
  }

  kvDelete(key) {
    this._check(key);
    return this._kv.delete(key);
  }

  kvListKeys(prefix, limit) {
    if (this._kvUnavailable) throw new KvError("unavailable", "fake host: unavailable");
    return [...this._kv.keys()].filter((k) => k.startsWith(prefix)).sort().slice(0, Math.min(limit, 1000));
  }

  configText() {
    return this._json;
  }

  configGet(key) {
    const found = this._entries.find(([k]) => k === key);
    return found === undefined ? undefined : found[1];
  }

  configEntries() {
    return this._entries.map(([k, v]) => [k, v]);
  }
}
