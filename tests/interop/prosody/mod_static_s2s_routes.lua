-- mod_static_s2s_routes: static server-to-server routes for Prosody 0.12 (tested with
-- 0.12.3), for interop tests on loopback without DNS. Used by ../prosody_peer.py.
--
--   plugin_paths = { "/path/to/tests/interop/prosody" }
--   modules_enabled = { ..., "static_s2s_routes" }
--   static_s2s_routes = {
--     ["hub.test"] = { host = "127.0.0.1", port = 5270 };                     -- STARTTLS
--     ["tls.test"] = { host = "127.0.0.1", port = 5271, direct_tls = true };  -- XEP-0368
--   }
--   static_s2s_routes_only = true -- unrouted domains fail at once instead of using DNS
--
-- How: Prosody 0.12 has no route option. mod_s2s's route_to_new_session() builds its
-- resolver with `service.new(to_host, "xmpp-server", "tcp", extra)`, chained after
-- `service.new(to_host, "xmpps-server", "tcp", extra_with_sslctx)` (Direct TLS, tried
-- first), where `service` is the shared table `require "net.resolvers.service"` and the
-- field is looked up at call time. This module wraps that `new` field: for a routed
-- domain it returns a net.resolvers.basic resolver for the route's IP literal (no DNS),
-- keeping Prosody's `extra` (TLS context, SNI name for Direct TLS); the other service
-- of the pair gets an empty net.resolvers.manual resolver so Prosody moves on.
-- The patch is process-wide, so the module is global (module:set_global()) and undone
-- on unload.

module:set_global();

local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";

local routes = {};
for domain, route in pairs(module:get_option("static_s2s_routes", {})) do
	assert(type(route) == "table" and route.host and tonumber(route.port),
		"static_s2s_routes[" .. tostring(domain) .. "] needs host and port");
	routes[domain:lower()] = { host = route.host, port = tonumber(route.port), direct_tls = route.direct_tls == true };
end
local routes_only = module:get_option_boolean("static_s2s_routes_only", false);

local original_new = service.new;

local function no_targets(conn_type, extra, why)
	local resolver = manual.new({}, conn_type, extra);
	resolver.last_error = why;
	return resolver;
end

local function routed_new(hostname, srv, conn_type, extra)
	if srv ~= "xmpp-server" and srv ~= "xmpps-server" then
		return original_new(hostname, srv, conn_type, extra);
	end
	local route = type(hostname) == "string" and routes[hostname:lower()];
	if not route then
		if routes_only then
			module:log("warn", "No static s2s route to %s (%s); static_s2s_routes_only is set", hostname, srv);
			return no_targets(conn_type, extra, "no static s2s route to " .. tostring(hostname));
		end
		return original_new(hostname, srv, conn_type, extra);
	end
	if route.direct_tls ~= (srv == "xmpps-server") then
		module:log("debug", "Static s2s route to %s is %s: no %s target", hostname,
			route.direct_tls and "Direct TLS" or "STARTTLS", srv);
		return no_targets(conn_type, extra, "static route uses the other service");
	end
	module:log("info", "Static s2s route: %s (%s) -> %s:%d (%s)", hostname, srv, route.host, route.port,
		route.direct_tls and "Direct TLS" or "STARTTLS");
	return basic.new(route.host, route.port, conn_type, extra);
end

service.new = routed_new;
module:log("info", "Static s2s routes installed for: %s", (function ()
	local names = {};
	for domain in pairs(routes) do names[#names + 1] = domain; end
	table.sort(names);
	return #names > 0 and table.concat(names, ", ") or "(none)";
end)());

function module.unload()
	if service.new == routed_new then
		service.new = original_new;
	end
end
