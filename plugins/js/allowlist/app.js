// The allowlist authenticator in JavaScript: the twin of plugins/allowlist (Rust) and
// plugins/python/allowlist, with the same configuration and key-value data, run by the
// same host tests.
//
// Configuration (all optional):
//   users          {"alice": "sha256$SALT$HEX"}   HEX = sha256(SALT + password)
//   allow          ["alice", "bob"]               only these may log in
//   disabled       ["carol"]                      account-disabled
//   roles          {"alice": "moderator,member"}
//   display_names  {"alice": "Alice Liddell"}
//   require_tls    true (default)
//   lowercase      true (default): canonical usernames
//   policy         "v1"                           returned as attribute "policy"
//   seed_kv        {"dave": "sha256$SALT$HEX"}    written to the key-value store by init
//
// Key-value data: user/NAME = sha256$SALT$HEX adds password users at runtime,
// token/TOKEN = NAME accepts a bearer token for NAME.
import {
  AccountDisabled,
  ConfigRefused,
  KvError,
  Mechanism,
  NotAuthorized,
  TemporaryFailure,
  User,
  authenticator,
  config,
  kv,
  log,
} from "./heliograph_plugin.js";
import { sha256Hex } from "./sha256.js";

/** sha256$SALT$HEX -> [salt, hex], or undefined. */
export function parse(stored) {
  const parts = stored.split("$");
  if (parts.length !== 3 || parts[0] !== "sha256") return undefined;
  if (!/^[0-9a-fA-F]{64}$/.test(parts[2])) return undefined;
  return [parts[1], parts[2]];
}

/** The stored form of `password` with `salt`. */
export function hashPassword(salt, password) {
  return `sha256$${salt}$${sha256Hex(salt + password)}`;
}

/** Compares without stopping at the first difference. */
function sameText(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export function verify(stored, password) {
  const parsed = parse(stored);
  return parsed !== undefined && sameText(hashPassword(parsed[0], password), stored);
}

export const AllowList = {
  authenticate(request) {
    if (config.getBool("require_tls", true) && !request.connection.tls) {
      log.warn("refused: no TLS", { user: request.username });
      throw new NotAuthorized();
    }
    const name = config.getBool("lowercase", true) ? request.username.toLowerCase() : request.username;
    const allow = config.getList("allow");
    if (allow.length > 0 && !allow.includes(name)) throw new NotAuthorized();
    let verified;
    try {
      if (request.mechanism === Mechanism.PASSWORD) {
        const stored = config.get(`users.${name}`) ?? kv.getString(`user/${name}`);
        verified = stored !== undefined && verify(stored, request.credential);
      } else {
        verified = kv.getString(`token/${request.credential}`) === name;
      }
    } catch (e) {
      if (e instanceof KvError) throw new TemporaryFailure(e.message);
      throw e;
    }
    if (!verified) throw new NotAuthorized();
    if (config.getList("disabled").includes(name)) throw new AccountDisabled();
    const user = new User(name, { displayName: config.get(`display_names.${name}`) });
    for (const role of (config.get(`roles.${name}`) ?? "").split(",")) {
      if (role.trim()) user.role(role.trim());
    }
    const policy = config.get("policy");
    if (policy !== undefined) user.attribute("policy", policy);
    return user;
  },

  init(_configJson) {
    for (const [name, stored] of config.withPrefix("users")) {
      if (parse(stored) === undefined) throw new ConfigRefused(`users.${name}: expected sha256$SALT$HEX`);
    }
    for (const [name, stored] of config.withPrefix("seed_kv")) {
      if (parse(stored) === undefined) throw new ConfigRefused(`seed_kv.${name}: expected sha256$SALT$HEX`);
      try {
        kv.set(`user/${name}`, stored);
      } catch (e) {
        if (e instanceof KvError) throw new ConfigRefused(e.message);
        throw e;
      }
    }
  },
};

export const { authentication, lifecycle } = authenticator(AllowList);
