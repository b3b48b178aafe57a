// The host inside a component: the SDK's helpers on the WIT imports. The build
// (plugins/js/build.sh, or the command in sdk/README.md) imports this module first.
import { json, get as configGet, entries } from "heliograph:plugin/host-config@0.1.2";
import { get, set, delete as del, listKeys } from "heliograph:plugin/host-kv@0.1.2";
import { log } from "heliograph:plugin/host-log@0.1.2";
import { KvError, setBackend } from "./heliograph_plugin.js";

function kvCall(f) {
  try {
    return f();
  } catch (e) {
    const p = e && e.payload;
    if (p && typeof p.tag === "string") {
      throw new KvError(p.tag, p.val === undefined ? undefined : String(p.val));
    }
    throw e;
  }
}

setBackend({
  configText: () => json(),
  configGet: (key) => configGet(key) ?? undefined,
  configEntries: () => entries().map(({ key, value }) => [key, value]),
  kvGet: (key) => kvCall(() => get(key) ?? undefined),
  kvSet: (key, value) => kvCall(() => set(key, value)),
  kvDelete: (key) => kvCall(() => del(key)),
  kvListKeys: (prefix, limit) => kvCall(() => listKeys(prefix, limit)),
  log: (level, message, fields) =>
    log(level, message, fields.map(([key, value]) => ({ key, value }))),
});
