// {{name}}: a Heliograph room policy in JavaScript (WIT world `room-policy`): room names
// start with `team-`, meetings hold `max_participants` (configuration, default 20), hosts
// (users whose authenticator gave them the role `host`) and the first joiner moderate.
import {
  ConfigRefused,
  Decision,
  JoinDecision,
  MessageDecision,
  Role,
  config,
  hasRole,
  roomPolicy,
} from "./heliograph_plugin.js";

function maxParticipants() {
  const value = config.get("max_participants");
  return value !== undefined && /^[0-9]+$/.test(value) ? Number(value) : 20;
}

export const {{Type}} = {
  createRoom(room, _creator) {
    return room.name.startsWith("team-") ? Decision.ALLOW : Decision.deny("room names must start with team-");
  },

  join(room, occupant) {
    if (room.occupants >= maxParticipants()) return JoinDecision.deny("the meeting is full");
    if (room.occupants === 0 || hasRole(occupant.user, "host")) return JoinDecision.withRole(Role.MODERATOR);
    return JoinDecision.DEFAULT;
  },

  message(_room, _occupant, body) {
    return new TextEncoder().encode(body).length > 2000 ? MessageDecision.deny("too long") : MessageDecision.ALLOW;
  },

  configure(_room, _actor, _newConfig) {
    return Decision.ALLOW; // owners may configure their rooms
  },

  changeNick(_room, _occupant, newNick) {
    return newNick.trim() ? Decision.ALLOW : Decision.deny("a nickname cannot be blank");
  },

  init(_configJson) {
    const value = config.get("max_participants");
    if (value !== undefined && !/^[0-9]+$/.test(value)) {
      throw new ConfigRefused(`max_participants must be a number, not ${value}`);
    }
  },
};

export const { roomDecisions, lifecycle } = roomPolicy({{Type}});
