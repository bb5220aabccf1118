package groups

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/keys"
)

// Additions for the client-server façade (package csapi), which creates
// rooms with the bot's own createRoom request (its presets, initial
// state, power levels...) and adds only what makes the room a DMLS room.

// Algorithm returns the DMLS algorithm of the service's cipher suite, as
// m.room.create and m.room.encrypted name it.
func (s *Service) Algorithm() string { return keys.Algorithm(s.suite.ID()) }

// CreationContent returns the m.room.create content fields that make a
// room created by puppet's device (its first device if empty) a DMLS
// room whose first epoch that device holds, and the device. It fails with
// ErrNoDevice if the device has no MLS identity.
func (s *Service) CreationContent(ctx context.Context, puppet id.UserID, device id.DeviceID) (map[string]any, id.DeviceID, error) {
	if err := s.ownPuppet(puppet); err != nil {
		return nil, "", err
	}
	if device == "" {
		devs, err := ourDevicesWhere(ctx, s.cfg.DB, []id.UserID{puppet}, false)
		if err != nil {
			return nil, "", err
		}
		if len(devs[puppet]) == 0 {
			return nil, "", fmt.Errorf("%s: %w", puppet, ErrNoDevice)
		}
		device = devs[puppet][0]
	}
	if _, err := s.cfg.Keys.SignatureKey(ctx, s.cfg.DB, keys.Device{UserID: puppet, DeviceID: device}); err != nil {
		return nil, "", fmt.Errorf("%s/%s: %w (%w)", puppet, device, ErrNoDevice, err)
	}
	return map[string]any{
		"encryption":       map[string]string{"algorithm": s.Algorithm()},
		creatorDeviceField: string(device),
	}, device, nil
}

// WaitActive waits up to groups.send_timeout until the group of a room
// we created is made (when its create event comes back), and reports
// whether it was.
func (s *Service) WaitActive(ctx context.Context, roomID id.RoomID) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		state, ok, err := isDMLS(ctx, s.cfg.DB, roomID)
		if err == nil && ok && state == "active" {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}
