// {{name}}: a Heliograph authenticator in JavaScript (WIT world `authenticator`).
//
// Configuration: {"users": {"alice": "secret"}}. Plain passwords keep the example short;
// store salted hashes in a real plugin (see heliograph's plugins/js/allowlist).
import { ConfigRefused, NotAuthorized, User, authenticator, config, log } from "./heliograph_plugin.js";

export const {{Type}} = {
  authenticate(request) {
    const expected = config.get(`users.${request.username}`);
    if (expected === undefined || !request.connection.tls || request.credential !== expected) {
      throw new NotAuthorized();
    }
    log.info("login", { user: request.username });
    return new User(request.username).role("member");
  },

  init(_configJson) {
    // The configuration is readable here too: refuse one without users.
    if (config.withPrefix("users").length === 0) {
      throw new ConfigRefused("the configuration has no users");
    }
  },
};

export const { authentication, lifecycle } = authenticator({{Type}});
