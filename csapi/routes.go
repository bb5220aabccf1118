package csapi

import (
	"fmt"
	"net/http"
	"strings"
)

// versions are the path prefixes under which the façade answers: r0 and
// v3, which the SDKs call, and the unstable and api/v1 prefixes, under
// which Synapse serves the same sends and /sync too: passed through, they
// would put a bot's plaintext into a DMLS room.
var versions = []string{"r0", "v3", "unstable", "api/v1"}

// routes are the endpoints the façade answers itself (doc.go says why),
// under every prefix of versions.
func (s *Server) routes() []route {
	var out []route
	for _, v := range versions {
		c := "/_matrix/client/" + v
		out = append(out,
			route{pattern: "GET " + c + "/sync", name: "sync", handle: s.sync},
			route{pattern: "PUT " + c + "/rooms/{room}/send/{type}/{txn}", name: "send", handle: s.send},
			// Synapse still takes the old send without a transaction id.
			route{pattern: "POST " + c + "/rooms/{room}/send/{type}", name: "send", handle: s.sendWithoutTxn},
			route{pattern: "GET " + c + "/rooms/{room}/messages", name: "messages", handle: s.messages},
			route{pattern: "GET " + c + "/rooms/{room}/context/{event}", name: "context", handle: s.context},
			route{pattern: "GET " + c + "/rooms/{room}/event/{event}", name: "event", handle: s.event},
			route{pattern: "POST " + c + "/createRoom", name: "createRoom", handle: s.createRoom},
			route{pattern: "POST " + c + "/user/{user}/filter", name: "filter", handle: s.createFilter},
			route{pattern: "GET " + c + "/account/whoami", name: "whoami", handle: s.whoami},
			route{pattern: "POST " + c + "/logout", name: "logout", handle: s.logout},
			route{pattern: "GET " + c + "/login", name: "login", public: true, handle: s.loginFlows},
			route{pattern: "POST " + c + "/login", name: "login", public: true,
				handle: refuse(http.StatusBadRequest, errUnknown, "no login type is offered here: access tokens are issued by the operator (mls-appservice bots token) or the bot API")},
			route{pattern: "POST " + c + "/register", name: "register", public: true,
				handle: refuse(http.StatusForbidden, errForbidden, "registration is disabled: puppets are made by the bot API")},
		)
		for _, p := range refused {
			out = append(out, route{pattern: p.method + " " + c + p.path, name: "refused", handle: refuse(http.StatusNotFound, errUnrecognized, p.why)})
		}
	}
	out = append(out,
		route{pattern: "GET /.well-known/matrix/client", name: "well-known", public: true, handle: s.wellKnown},
		route{pattern: "GET /_matrix/client/versions", name: "versions", public: true, handle: s.serveVersions},
		route{pattern: "POST /_matrix/client/v1/login/get_token", name: "refused",
			handle: refuse(http.StatusNotFound, errUnrecognized, "login tokens are not offered here")},
	)
	// Sliding sync (Synapse serves MSC4186) would give encrypted events
	// undecrypted: refused, so that a client uses /sync.
	for _, p := range []string{"org.matrix.simplified_msc3575", "org.matrix.msc3575"} {
		out = append(out, route{pattern: "POST /_matrix/client/unstable/" + p + "/sync", name: "refused",
			handle: refuse(http.StatusNotFound, errUnrecognized, "sliding sync is not offered here: use /sync")})
	}
	return out
}

// refused are the endpoints that make no sense for a puppet device whose
// keys and devices the service manages: they answer 404 M_UNRECOGNIZED,
// as the spec says a server answers for a feature it does not offer.
var refused = []struct{ method, path, why string }{
	{"POST", "/keys/upload", "the service holds this device's keys (MLS, DMLS); turn the client's own encryption off"},
	{"POST", "/keys/claim", "the service holds this device's keys; turn the client's own encryption off"},
	{"POST", "/keys/device_signing/upload", "the service cross-signs its puppets' devices"},
	{"POST", "/keys/signatures/upload", "the service cross-signs its puppets' devices"},
	{"GET", "/room_keys/version", "no key backup: the service keeps the room keys"},
	{"POST", "/room_keys/version", "no key backup: the service keeps the room keys"},
	{"GET", "/room_keys/keys", "no key backup: the service keeps the room keys"},
	{"PUT", "/room_keys/keys", "no key backup: the service keeps the room keys"},
	{"DELETE", "/devices/{device}", "the service manages its puppets' devices"},
	{"POST", "/delete_devices", "the service manages its puppets' devices"},
	{"POST", "/logout/all", "log out one access token at a time (POST /logout), or ask the operator to revoke the bot"},
	{"POST", "/account/password", "puppets have no password"},
	{"POST", "/account/deactivate", "puppets are deleted through the bot API"},
	{"POST", "/refresh", "access tokens of the façade do not expire"},
	{"GET", "/events", "the deprecated /events gives encrypted events undecrypted: use /sync"},
	{"GET", "/initialSync", "the deprecated /initialSync gives encrypted events undecrypted: use /sync"},
	{"GET", "/rooms/{room}/initialSync", "the deprecated /initialSync gives encrypted events undecrypted: use /sync"},
}

// refuse answers with an error, always.
func refuse(status int, errcode, why string) func(http.ResponseWriter, *http.Request, *access) error {
	return func(http.ResponseWriter, *http.Request, *access) error {
		return mxErr(status, errcode, "%s", why)
	}
}

// whoami answers for the token itself: the homeserver would name the
// appservice's user without the masquerading parameters, and the device
// the token stands for is the façade's to say.
func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, a *access) error {
	writeJSON(w, http.StatusOK, map[string]any{"user_id": a.UserID, "device_id": a.DeviceID, "is_guest": false})
	return nil
}

// logout revokes the token the request carries. The device stays: it is
// the puppet's, and the service's MLS member in its rooms.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, a *access) error {
	if err := s.cfg.Registry.RevokeAccessToken(r.Context(), a.token); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// loginFlows says that no login type is offered.
func (s *Server) loginFlows(w http.ResponseWriter, _ *http.Request, _ *access) error {
	writeJSON(w, http.StatusOK, map[string]any{"flows": []any{}})
	return nil
}

// wellKnown points clients at the façade itself.
func (s *Server) wellKnown(w http.ResponseWriter, _ *http.Request, _ *access) error {
	writeJSON(w, http.StatusOK, map[string]any{"m.homeserver": map[string]string{"base_url": s.publicURL()}})
	return nil
}

func (s *Server) publicURL() string {
	if u := s.cfg.Settings.PublicURL; u != "" {
		return strings.TrimRight(u, "/")
	}
	host := s.cfg.Settings.Hostname
	if host == "0.0.0.0" || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("http://%s", joinHostPort(host, s.cfg.Settings.Port))
}
