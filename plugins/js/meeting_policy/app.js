// The meeting-room policy in JavaScript: the twin of plugins/meeting-policy (Rust) and
// plugins/python/meeting_policy, with the same configuration, run by the same host tests.
//
// Configuration (all optional; an empty one allows everything XEP-0045 allows and makes
// the first joiner of a room its moderator):
//   room_patterns      ["team-*", "*-standup"]   names rooms may have (* and ? globs)
//   max_participants   20                         joins beyond are refused
//   moderator_if       "role=host"                KEY=VALUE: an authenticator role (KEY
//                                                 `role`) or attribute
//   max_message_bytes  2000                       longer groupchat bodies are refused
//   redact_words       ["secret"]                 replaced by asterisks in bodies
//   nick_changes       "everyone"                 or "moderators" or "nobody"
//   locked_config      {"muc#roomconfig_persistentroom": "0"}
import {
  ConfigRefused,
  Decision,
  JoinDecision,
  MessageDecision,
  Role,
  attribute,
  config,
  hasRole,
  log,
  roomPolicy,
} from "./heliograph_plugin.js";

/** `*` any run of characters, `?` one (no [...] classes, as in the Rust twin). */
export function globMatch(pattern, name) {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "s").test(name);
}

/** Whether the authenticator's facts about `user` match KEY=VALUE (the key `role` also
 * matches the user's roles). */
export function userMatches(user, rule) {
  const eq = rule.indexOf("=");
  if (eq < 0) return false;
  const key = rule.slice(0, eq).trim();
  const value = rule.slice(eq + 1).trim();
  return (key === "role" && hasRole(user, value)) || attribute(user, key) === value;
}

/** `body` with every case-insensitive occurrence of the words replaced by asterisks, or
 * undefined if none occurs. */
export function redact(body, words) {
  let out = body;
  let changed = false;
  for (const word of words.filter((w) => w)) {
    const lowerWord = word.toLowerCase();
    const result = [];
    let rest = out;
    for (;;) {
      const lower = rest.toLowerCase();
      const i = lower.indexOf(lowerWord);
      if (i < 0 || lower.length !== rest.length) {
        result.push(rest);
        break;
      }
      result.push(rest.slice(0, i) + "*".repeat(word.length));
      rest = rest.slice(i + word.length);
      changed = true;
    }
    out = result.join("");
  }
  return changed ? out : undefined;
}

function numberOrUndefined(key) {
  try {
    return config.getNumber(key);
  } catch (e) {
    if (e instanceof ConfigRefused) return undefined;
    throw e;
  }
}

const utf8 = new TextEncoder();

export const MeetingPolicy = {
  createRoom(room, creator) {
    const patterns = config.getList("room_patterns");
    if (patterns.length === 0 || patterns.some((p) => globMatch(p, room.name))) return Decision.ALLOW;
    log.info("room name refused", { room: room.jid, creator: creator.jid });
    return Decision.deny(`room names must match ${patterns.join(" or ")}`);
  },

  join(room, occupant) {
    const limit = numberOrUndefined("max_participants");
    if (limit !== undefined && room.occupants >= limit) {
      return JoinDecision.deny(`the meeting is full (${limit} participants)`);
    }
    const rule = config.get("moderator_if");
    if (room.occupants === 0 || (rule !== undefined && userMatches(occupant.user, rule))) {
      return JoinDecision.withRole(Role.MODERATOR);
    }
    // XEP-0045 makes owners and admins moderators; keep that.
    if (occupant.role === Role.MODERATOR) return JoinDecision.DEFAULT;
    return JoinDecision.withRole(Role.PARTICIPANT);
  },

  message(room, occupant, body) {
    const limit = numberOrUndefined("max_message_bytes");
    const size = utf8.encode(body).length;
    if (limit !== undefined && size > limit) {
      return MessageDecision.deny(`messages are limited to ${limit} bytes (this one has ${size})`);
    }
    const redacted = redact(body, config.getList("redact_words"));
    return redacted === undefined ? MessageDecision.ALLOW : MessageDecision.replaceBody(redacted);
  },

  configure(room, actor, newConfig) {
    for (const [field, locked] of config.withPrefix("locked_config")) {
      const found = newConfig.find(([k]) => k === field);
      if (found !== undefined && found[1] !== locked) {
        return Decision.deny(`${field} is fixed to ${locked} for meetings`);
      }
    }
    return Decision.ALLOW;
  },

  changeNick(room, occupant, newNick) {
    const rule = config.get("nick_changes");
    if (rule === undefined || rule === "everyone") return Decision.ALLOW;
    if (rule === "moderators") {
      return occupant.role === Role.MODERATOR
        ? Decision.ALLOW
        : Decision.deny("only moderators may change their nickname");
    }
    return Decision.deny("nicknames cannot be changed in meetings");
  },

  init(_configJson) {
    config.getNumber("max_participants");
    config.getNumber("max_message_bytes");
    const rule = config.get("moderator_if");
    if (rule !== undefined && !rule.includes("=")) {
      throw new ConfigRefused(`\`moderator_if\` must be KEY=VALUE, not ${JSON.stringify(rule)}`);
    }
    const nick = config.get("nick_changes");
    if (![undefined, "everyone", "moderators", "nobody"].includes(nick)) {
      throw new ConfigRefused(
        `\`nick_changes\` must be everyone, moderators or nobody, not ${JSON.stringify(nick)}`,
      );
    }
  },
};

export const { roomDecisions, lifecycle } = roomPolicy(MeetingPolicy);
