package botapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"
)

// defaultDevice names a puppet's first device when the bot names none.
const defaultDevice = "MAIN"

func (s *Server) createPuppet(w http.ResponseWriter, r *http.Request, bot string) error {
	var req createPuppetRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, false); e != nil {
		return e
	}
	if req.Name == "" {
		return missing("name")
	}
	if !namePattern.MatchString(req.Name) {
		return badField("name", "name must be 1 to 64 of a-z, 0-9 and ._=-")
	}
	if e := checkText("display_name", req.DisplayName, 256); e != nil {
		return e
	}
	if e := checkContentURI("avatar_url", req.AvatarURL); e != nil {
		return e
	}
	device := id.DeviceID(defaultDevice)
	if req.DeviceID != "" {
		var e *Error
		if device, e = checkDeviceID("device_id", req.DeviceID); e != nil {
			return e
		}
	}
	ctx := r.Context()
	user := s.cfg.Groups.PuppetID(req.Name)
	if err := s.cfg.Registry.Claim(ctx, bot, user); err != nil {
		return classify(err, "name")
	}
	// The feed of the bot's event log watches its puppets: tell it.
	defer s.hub.poke(bot)
	if _, err := s.cfg.Groups.CreatePuppet(ctx, req.Name, req.DisplayName, id.ContentURIString(req.AvatarURL), device); err != nil {
		return err
	}
	devices, err := s.cfg.Groups.Devices(ctx, user)
	if err != nil {
		return err
	}
	s.log.Info().Str("bot", bot).Stringer("puppet", user).Msg("Bot created a puppet")
	writeJSON(w, http.StatusCreated, Puppet{UserID: user, Devices: nonNil(devices)})
	return nil
}

func (s *Server) listPuppets(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r); e != nil {
		return e
	}
	puppets, err := s.cfg.Registry.Puppets(r.Context(), bot)
	if err != nil {
		return err
	}
	out := make([]Puppet, 0, len(puppets))
	for _, p := range puppets {
		devices, err := s.cfg.Groups.Devices(r.Context(), p)
		if err != nil {
			return err
		}
		out = append(out, Puppet{UserID: p, Devices: nonNil(devices)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"puppets": out})
	return nil
}

func (s *Server) getPuppet(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	devices, err := s.cfg.Groups.Devices(r.Context(), puppet)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, Puppet{UserID: puppet, Devices: nonNil(devices)})
	return nil
}

// deletePuppet makes the puppet leave its rooms and removes its devices,
// then marks it deleted. A failure half-way leaves it the bot's, and the
// request can be made again.
func (s *Server) deletePuppet(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	ctx := r.Context()
	rooms, err := s.cfg.Groups.Memberships(ctx, puppet)
	if err != nil {
		return err
	}
	for _, m := range rooms {
		if m.Membership == "join" || m.Membership == "invite" {
			if err := s.cfg.Groups.Leave(ctx, puppet, m.RoomID); err != nil {
				return err
			}
		}
	}
	devices, err := s.cfg.Groups.Devices(ctx, puppet)
	if err != nil {
		return err
	}
	for _, d := range devices {
		if err := s.cfg.Groups.RemoveDevice(ctx, puppet, d); err != nil {
			return err
		}
	}
	if err := s.cfg.Registry.Delete(ctx, bot, puppet); err != nil {
		return err
	}
	s.log.Info().Str("bot", bot).Stringer("puppet", puppet).Msg("Bot deleted a puppet")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	devices, err := s.cfg.Groups.Devices(r.Context(), puppet)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": nonNil(devices)})
	return nil
}

func (s *Server) addDevice(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	var req addDeviceRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, false); e != nil {
		return e
	}
	device, e := checkDeviceID("device_id", req.DeviceID)
	if e != nil {
		return e
	}
	if e := checkText("display_name", req.DisplayName, 256); e != nil {
		return e
	}
	if err := s.cfg.Groups.AddDevice(r.Context(), puppet, device, req.DisplayName); err != nil {
		return classify(err, "device_id")
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user_id": puppet, "device_id": device})
	return nil
}

// device reads the {device} path value and checks that it is one of
// puppet's devices.
func (s *Server) device(r *http.Request, puppet id.UserID) (id.DeviceID, error) {
	device, e := checkDeviceID("device", r.PathValue("device"))
	if e != nil {
		return "", e
	}
	devices, err := s.cfg.Groups.Devices(r.Context(), puppet)
	if err != nil {
		return "", err
	}
	for _, d := range devices {
		if d == device {
			return device, nil
		}
	}
	return "", apiErr(http.StatusNotFound, CodeUnknownDevice, "device", "%s has no device %s", puppet, device)
}

func (s *Server) removeDevice(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	device, err := s.device(r, puppet)
	if err != nil {
		return err
	}
	if err := s.cfg.Groups.RemoveDevice(r.Context(), puppet, device); err != nil {
		return err
	}
	if err := s.cfg.Registry.RevokeDeviceTokens(r.Context(), puppet, device); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// issueAccessToken gives the bot an access token of one of its puppets'
// devices, for the client-server façade.
func (s *Server) issueAccessToken(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &struct{}{}, true); e != nil {
		return e
	}
	device, err := s.device(r, puppet)
	if err != nil {
		return err
	}
	token, err := s.cfg.Registry.IssueAccessToken(r.Context(), bot, puppet, device)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user_id": puppet, "device_id": device, "access_token": token})
	return nil
}
