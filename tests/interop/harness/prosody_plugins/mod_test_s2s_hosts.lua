-- Test-only Prosody module (tests/interop/test_federation.py): reach the domains listed in
-- `test_s2s_hosts = { ["domain"] = { "127.0.0.1", port } }` at that address instead of
-- through DNS, so a test can federate with a server on an ephemeral loopback port.
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";
local service = require "net.resolvers.service";

local hosts = module:get_option("test_s2s_hosts", {});

if not service.heliograph_test_original then
	service.heliograph_test_original = service.new;
end
local original = service.heliograph_test_original;

service.new = function (hostname, srvname, proto, opts, ...)
	local target = hosts[hostname];
	if target then
		if srvname == "xmpp-server" then
			return basic.new(target[1], target[2], proto, opts);
		end
		-- No direct TLS (_xmpps-server) target: STARTTLS on the address above.
		return manual.new({}, proto, opts);
	end
	return original(hostname, srvname, proto, opts, ...);
end
