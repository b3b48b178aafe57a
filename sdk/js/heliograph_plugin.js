// Heliograph plugin SDK for JavaScript: the Rust SDK's types and helpers for plugins built
// with componentize-js against the same WIT worlds (wit/heliograph-plugin.wit).
//
// A plugin is an ES module (app.js) that exports what the world exports, made by this
// module's authenticator(), roomPolicy() or component() from a plain object:
//
//     export const { authentication, lifecycle } = authenticator({
//       authenticate(request) { ...; return new User(request.username).role("member"); },
//       init(configJson) { ... },          // optional: throw new ConfigRefused(message)
//     });
//
// Failures are exceptions, as in the Python SDK: throw new NotAuthorized(),
// new AccountDisabled(), new TemporaryFailure(reason), new ConfigRefused(message) from
// init, new Refuse(reason) from a component. config, kv and log talk to the host: inside
// a component through wasm_backend.js (which the build adds), in unit tests (node --test)
// through testing.js's FakeHost.

let backend = null;

/** Installs the host the helpers talk to (wasm_backend.js, or testing.js's FakeHost). */
export function setBackend(b) {
  backend = b;
}

function host() {
  if (backend === null) {
    throw new Error("no host: inside a component wasm_backend.js sets it, in tests a FakeHost");
  }
  return backend;
}

// --- failures ------------------------------------------------------------------------
// `payload` is what componentize-js returns as the `err` of a result.

/** Wrong credentials, unknown user: the login fails with not-authorized. */
export class NotAuthorized extends Error {
  constructor() {
    super("not authorized");
    this.payload = { tag: "not-authorized" };
  }
}

/** The account exists but may not log in (account-disabled). */
export class AccountDisabled extends Error {
  constructor() {
    super("account disabled");
    this.payload = { tag: "account-disabled" };
  }
}

/** The plugin cannot decide now (temporary-auth-failure); the reason is logged. */
export class TemporaryFailure extends Error {
  constructor(reason) {
    super(reason);
    this.payload = { tag: "temporary-failure", val: String(reason) };
  }
}

/** From init: the configuration is refused, and so is the install. */
export class ConfigRefused extends Error {
  constructor(message) {
    super(message);
    this.payload = String(message);
  }
}

/** From a component's handle: the stanza is refused; the sender gets an error reply. */
export class Refuse extends Error {
  constructor(reason) {
    super(reason);
    this.payload = String(reason);
  }
}

// --- authentication ------------------------------------------------------------------

export const Mechanism = Object.freeze({ PASSWORD: "password", TOKEN: "token" });
export const Transport = Object.freeze({ TCP: "tcp", BOSH: "bosh", WEBSOCKET: "websocket" });

/** Requests as the host sends them (and as tests build them). */
export const AuthRequest = Object.freeze({
  /** A password login over TLS (TCP) to example.com, tenant "default". */
  password(username, credential) {
    return {
      tenant: "default",
      domain: "example.com",
      mechanism: Mechanism.PASSWORD,
      username,
      credential,
      connection: { clientAddress: "192.0.2.1", transport: Transport.TCP, tls: true },
    };
  },
  /** A token login (the token as the credential). */
  token(username, token) {
    return { ...AuthRequest.password(username, token), mechanism: Mechanism.TOKEN };
  },
  /** The same request over a connection without TLS. */
  withoutTls(request) {
    return { ...request, connection: { ...request.connection, tls: false } };
  },
});

/** The user an authenticator accepts. */
export class User {
  constructor(username, { displayName } = {}) {
    this.username = username;
    this.displayName = displayName ?? undefined;
    this.roles = [];
    this.attributes = [];
    this.expiresAt = undefined;
  }

  role(role) {
    this.roles.push(role);
    return this;
  }

  attribute(key, value) {
    this.attributes.push([key, String(value)]);
    return this;
  }

  /** Seconds since the Unix epoch after which the session must log in again. */
  expires(at) {
    this.expiresAt = at;
    return this;
  }
}

// --- rooms ---------------------------------------------------------------------------

export const Role = Object.freeze({
  NONE: "none",
  VISITOR: "visitor",
  PARTICIPANT: "participant",
  MODERATOR: "moderator",
});
export const Affiliation = Object.freeze({
  OUTCAST: "outcast",
  NONE: "none",
  MEMBER: "member",
  ADMIN: "admin",
  OWNER: "owner",
});

export const Decision = Object.freeze({
  ALLOW: Object.freeze({ tag: "allow" }),
  deny: (reason) => ({ tag: "deny", val: String(reason) }),
});
export const JoinDecision = Object.freeze({
  /** XEP-0045's rules decide. */
  DEFAULT: Object.freeze({ tag: "default" }),
  allow: ({ role, affiliation } = {}) => ({ tag: "allow", val: { role, affiliation } }),
  withRole: (role) => ({ tag: "allow", val: { role, affiliation: undefined } }),
  deny: (reason) => ({ tag: "deny", val: String(reason) }),
});
export const MessageDecision = Object.freeze({
  ALLOW: Object.freeze({ tag: "allow" }),
  deny: (reason) => ({ tag: "deny", val: String(reason) }),
  replaceBody: (body) => ({ tag: "replace-body", val: String(body) }),
});

/** Whether a room user (or occupant.user) has the authenticator role. */
export function hasRole(user, role) {
  return user.roles.includes(role);
}

/** A room user's authenticator attribute, or undefined. */
export function attribute(user, key) {
  const found = user.attributes.find(([k]) => k === key);
  return found === undefined ? undefined : found[1];
}

/** Test helpers for room-policy unit tests. */
export const Rooms = Object.freeze({
  room(name, { occupants = 0, config = [], tenant = "default" } = {}) {
    return { tenant, jid: `${name}@conference.example.com`, name, occupants, config };
  },
  user(jid, { roles = [], attributes = [] } = {}) {
    return { jid, roles, attributes };
  },
  occupant(user, nick, { role = Role.PARTICIPANT, affiliation = Affiliation.NONE } = {}) {
    return { user, nick, role, affiliation };
  },
});

// --- components ----------------------------------------------------------------------

export const StanzaKind = Object.freeze({ MESSAGE: "message", PRESENCE: "presence", IQ: "iq" });

/** The client namespace of the stanzas a component receives and sends. */
export const CLIENT = "jabber:client";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** `text` escaped for XML character data or a quoted attribute value. */
const ENTITIES = { "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" };
export function escapeXml(text) {
  return String(text).replace(/[<>&'"]/g, (c) => ENTITIES[c]);
}

/** Helpers on a stanza as the host hands it over: { kind, from, to, type, id, domain, xml }. */
export const Stanzas = Object.freeze({
  /** A stanza for tests. */
  of(kind, from, to, type, xml, { id = "1", domain = to } = {}) {
    return { kind, from, to, type, id, domain, xml };
  },
  /** True for an iq get or set, which must be answered. */
  isRequest: (stanza) => stanza.kind === StanzaKind.IQ && (stanza.type === "get" || stanza.type === "set"),
  /** An iq result to this request, from the address it was sent to, with `payload` inside. */
  iqResult: (stanza, payload = "") =>
    `<iq xmlns='${CLIENT}' type='result' id='${escapeXml(stanza.id)}' from='${escapeXml(stanza.to)}' ` +
    `to='${escapeXml(stanza.from)}'>${payload}</iq>`,
  /** An error reply of the stanza's own kind (RFC 6120 section 8.3). */
  errorReply(stanza, errorType, condition) {
    const id = stanza.id ? ` id='${escapeXml(stanza.id)}'` : "";
    return (
      `<${stanza.kind} xmlns='${CLIENT}' type='error'${id} from='${escapeXml(stanza.to)}' ` +
      `to='${escapeXml(stanza.from)}'><error type='${escapeXml(errorType)}'>` +
      `<${condition} xmlns='${STANZAS}'/></error></${stanza.kind}>`
    );
  },
});

// --- host API ------------------------------------------------------------------------

/** The plugin's configuration: the tenant's JSON, flattened (`users.alice`); strings
 * stay as they are, other values are JSON text. JSON.parse(config.json()) gives it all. */
export const config = Object.freeze({
  json: () => host().configText(),
  get: (key) => host().configGet(key),
  /** Every flattened entry as [key, value], sorted by key. */
  entries: () => host().configEntries(),
  /** Entries under `prefix.`, with the prefix removed. */
  withPrefix(prefix) {
    const dotted = prefix + ".";
    return config
      .entries()
      .filter(([k]) => k.startsWith(dotted))
      .map(([k, v]) => [k.slice(dotted.length), v]);
  },
  /** A boolean entry (JSON booleans or those strings); `dflt` if absent. */
  getBool(key, dflt) {
    const v = config.get(key);
    return v === "true" ? true : v === "false" ? false : dflt;
  },
  /** A JSON array of strings or a comma-separated string; items trimmed, empties dropped. */
  getList(key) {
    const v = config.get(key);
    if (v === undefined) return [];
    const text = v.trim();
    let items;
    if (text.startsWith("[")) {
      try {
        items = JSON.parse(text);
      } catch {
        items = text.slice(1, -1).split(",");
      }
    } else {
      items = text.split(",");
    }
    return items.map((i) => String(i).trim()).filter((i) => i !== "");
  },
  /** A non-negative integer entry, or undefined if absent; throws ConfigRefused if not one. */
  getNumber(key) {
    const v = config.get(key);
    if (v === undefined) return undefined;
    if (!/^[0-9]+$/.test(v)) {
      throw new ConfigRefused(`\`${key}\` must be a non-negative integer, not ${v}`);
    }
    return Number(v);
  },
});

/** A key-value failure: kind is invalid-key, value-too-large, quota-exceeded,
 * call-budget-exhausted or unavailable. */
export class KvError extends Error {
  constructor(kind, detail) {
    super(detail === undefined ? kind : `${kind}: ${detail}`);
    this.kind = kind;
    this.detail = detail;
  }
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** The (tenant, plugin)'s key-value store; values are bytes (strings are stored as UTF-8). */
export const kv = Object.freeze({
  get: (key) => host().kvGet(key),
  getString(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : fromUtf8.decode(v);
  },
  set: (key, value) => host().kvSet(key, typeof value === "string" ? utf8.encode(value) : value),
  delete: (key) => host().kvDelete(key),
  listKeys: (prefix, limit = 1000) => host().kvListKeys(prefix, limit),
});

function logAt(level) {
  return (message, fields = {}) =>
    host().log(level, String(message), Object.entries(fields).map(([k, v]) => [k, String(v)]));
}

/** Log lines, with the tenant, plugin and version added by the server. */
export const log = Object.freeze({
  trace: logAt("trace"),
  debug: logAt("debug"),
  info: logAt("info"),
  warn: logAt("warn"),
  error: logAt("error"),
});

// --- exports (the Rust SDK's authenticator!, room_policy!, component! macros) ---------

const pairs = (kvs) => kvs.map(({ key, value }) => [key, value]);
const keyValues = (ps) => ps.map(([key, value]) => ({ key, value }));

/** Converts a failure to what the WIT result's err carries; rethrows anything else (a
 * bug: the call traps and the server logs it). */
function failure(e, ...classes) {
  if (classes.some((c) => e instanceof c)) throw e; // carries its payload
  throw e instanceof Error ? e : new Error(String(e));
}

function lifecycle(impl) {
  return {
    init(configJson) {
      if (typeof impl.init !== "function") return;
      try {
        impl.init(configJson);
      } catch (e) {
        failure(e, ConfigRefused);
      }
    },
  };
}

function roomFromWit(room) {
  return { ...room, config: pairs(room.config) };
}

function userFromWit(user) {
  return { ...user, attributes: pairs(user.attributes) };
}

function occupantFromWit(occupant) {
  return { ...occupant, user: userFromWit(occupant.user) };
}

/** The exports of the authenticator world: { authentication, lifecycle }. */
export function authenticator(impl) {
  return {
    authentication: {
      authenticate(request) {
        let user;
        try {
          user = impl.authenticate(request);
        } catch (e) {
          failure(e, NotAuthorized, AccountDisabled, TemporaryFailure);
        }
        return {
          username: user.username,
          displayName: user.displayName,
          roles: user.roles,
          expiresAt: user.expiresAt === undefined ? undefined : BigInt(user.expiresAt),
          attributes: keyValues(user.attributes),
        };
      },
    },
    lifecycle: lifecycle(impl),
  };
}

/** The exports of the room-policy world: { roomDecisions, lifecycle }. Methods the
 * implementation leaves out allow (join: DEFAULT). */
export function roomPolicy(impl) {
  const call = (name, dflt, ...args) =>
    typeof impl[name] === "function" ? impl[name](...args) : dflt;
  return {
    roomDecisions: {
      createRoom: (room, creator) =>
        call("createRoom", Decision.ALLOW, roomFromWit(room), userFromWit(creator)),
      join: (room, occupant) =>
        call("join", JoinDecision.DEFAULT, roomFromWit(room), occupantFromWit(occupant)),
      message: (room, occupant, body) =>
        call("message", MessageDecision.ALLOW, roomFromWit(room), occupantFromWit(occupant), body),
      configure: (room, actor, newConfig) =>
        call("configure", Decision.ALLOW, roomFromWit(room), userFromWit(actor), pairs(newConfig)),
      changeNick: (room, occupant, newNick) =>
        call("changeNick", Decision.ALLOW, roomFromWit(room), occupantFromWit(occupant), newNick),
    },
    lifecycle: lifecycle(impl),
  };
}

/** The exports of the component world: { stanzaHandler, lifecycle }. handle(stanza)
 * returns the stanzas (XML strings) to send, or throws Refuse(reason). */
export function component(impl) {
  return {
    stanzaHandler: {
      handle(stanza) {
        try {
          return impl.handle(stanza);
        } catch (e) {
          failure(e, Refuse);
        }
      },
    },
    lifecycle: lifecycle(impl),
  };
}
