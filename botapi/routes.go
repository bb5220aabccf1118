package botapi

import (
	"net/http"
)

// table is every operation of the API. openapi.json documents exactly
// these (TestOpenAPIMatchesRoutes).
func (s *Server) table() []route {
	return []route{
		{method: "GET", path: "/v1/openapi.json", public: true, handle: s.openAPI},
		{method: "GET", path: "/v1/whoami", handle: s.whoami},

		{method: "POST", path: "/v1/puppets", handle: s.createPuppet},
		{method: "GET", path: "/v1/puppets", handle: s.listPuppets},
		{method: "GET", path: "/v1/puppets/{puppet}", handle: s.getPuppet},
		{method: "DELETE", path: "/v1/puppets/{puppet}", handle: s.deletePuppet},
		{method: "GET", path: "/v1/puppets/{puppet}/devices", handle: s.listDevices},
		{method: "POST", path: "/v1/puppets/{puppet}/devices", handle: s.addDevice},
		{method: "DELETE", path: "/v1/puppets/{puppet}/devices/{device}", handle: s.removeDevice},
		{method: "POST", path: "/v1/puppets/{puppet}/devices/{device}/access_token", handle: s.issueAccessToken},

		{method: "POST", path: "/v1/puppets/{puppet}/rooms", handle: s.createRoom},
		{method: "GET", path: "/v1/puppets/{puppet}/rooms", handle: s.listRooms},
		{method: "GET", path: "/v1/puppets/{puppet}/rooms/{room}", handle: s.getRoom},
		{method: "GET", path: "/v1/puppets/{puppet}/rooms/{room}/members", handle: s.roomMembers},
		{method: "POST", path: "/v1/puppets/{puppet}/rooms/{room}/join", handle: s.join},
		{method: "POST", path: "/v1/puppets/{puppet}/rooms/{room}/leave", handle: s.leave},
		{method: "POST", path: "/v1/puppets/{puppet}/rooms/{room}/invite", handle: s.invite},
		{method: "POST", path: "/v1/puppets/{puppet}/rooms/{room}/kick", handle: s.kick},
		{method: "POST", path: "/v1/puppets/{puppet}/rooms/{room}/messages", handle: s.send},
		{method: "GET", path: "/v1/puppets/{puppet}/rooms/{room}/messages", handle: s.history},

		{method: "GET", path: "/v1/events", stream: true, handle: s.stream},

		{method: "PUT", path: "/v1/webhook", handle: s.putWebhook},
		{method: "GET", path: "/v1/webhook", handle: s.getWebhook},
		{method: "DELETE", path: "/v1/webhook", handle: s.deleteWebhook},
		{method: "POST", path: "/v1/webhook/resume", handle: s.resumeWebhook},
	}
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r); e != nil {
		return e
	}
	puppets, err := s.cfg.Registry.Puppets(r.Context(), bot)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"bot": bot, "puppets": nonNil(puppets)})
	return nil
}
