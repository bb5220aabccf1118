package groups

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
)

// ErrNotPuppet means a user is not one of our puppets, or a device not
// one of a puppet's devices.
var ErrNotPuppet = errors.New("not a puppet of this service")

// CreatePuppet registers the puppet with the given name (the namespace
// prefix is added), sets its profile, and gives it its first device with
// an MLS identity. It is idempotent: an existing puppet and device are
// kept (and the profile set again).
func (s *Service) CreatePuppet(ctx context.Context, name, displayName string, avatar id.ContentURIString, device id.DeviceID) (id.UserID, error) {
	user := s.cfg.Puppets.PuppetID(name)
	if err := s.cfg.Puppets.Register(ctx, user); err != nil {
		return "", err
	}
	if err := s.cfg.Puppets.SetProfile(ctx, user, displayName, avatar); err != nil {
		return "", err
	}
	if err := s.AddDevice(ctx, user, device, displayName); err != nil {
		return "", err
	}
	return user, nil
}

// AddDevice gives a puppet a device (MSC4190) with its MLS identity,
// KeyPackages and cross-signing, in one transaction with the device's
// record, and asks every DMLS room the puppet is in to add it.
func (s *Service) AddDevice(ctx context.Context, user id.UserID, device id.DeviceID, displayName string) error {
	if !s.cfg.Puppets.Owns(user) {
		return fmt.Errorf("add device to %s: %w", user, ErrNotPuppet)
	}
	if err := s.cfg.Puppets.CreateDevice(ctx, user, device, displayName); err != nil {
		return err
	}
	dev := keys.Device{UserID: user, DeviceID: device}
	return s.inWork(ctx, func(w *inbound.Work) error {
		if _, err := s.cfg.Keys.EnsureIdentity(ctx, w.Q, w.Out, dev); err != nil {
			return err
		}
		return s.devicesChanged(ctx, w.Q, w.Out, user)
	})
}

// RemoveDevice deletes a puppet's device from the homeserver and from
// every group it is in (the rooms' next commits remove it).
func (s *Service) RemoveDevice(ctx context.Context, user id.UserID, device id.DeviceID) error {
	if !s.cfg.Puppets.Owns(user) {
		return fmt.Errorf("remove device of %s: %w", user, ErrNotPuppet)
	}
	if err := s.cfg.Puppets.DeleteDevice(ctx, user, device); err != nil {
		return err
	}
	return s.inWork(ctx, func(w *inbound.Work) error {
		if _, err := w.Q.Exec(ctx, `DELETE FROM puppet_device WHERE user_id = $1 AND device_id = $2`, user, device); err != nil {
			return fmt.Errorf("forget device %s of %s: %w", device, user, err)
		}
		return s.devicesChanged(ctx, w.Q, w.Out, user)
	})
}

// inWork runs fn in a database transaction (retried on serialization
// failures) as a unit of work that may queue items and outgoing
// requests, and wakes their workers once it is committed.
func (s *Service) inWork(ctx context.Context, fn func(w *inbound.Work) error) error {
	err := s.cfg.DB.InTxRetry(ctx, func(tx pgx.Tx) error {
		out := database.NewProducer(tx)
		if err := fn(&inbound.Work{Q: tx, Out: out}); err != nil {
			return err
		}
		return out.Flush(ctx)
	})
	if err != nil {
		return err
	}
	s.cfg.Wake()
	return nil
}

// Devices lists a puppet's devices.
func (s *Service) Devices(ctx context.Context, user id.UserID) ([]id.DeviceID, error) {
	ids, err := database.PuppetDevices(ctx, s.cfg.DB, string(user))
	if err != nil {
		return nil, err
	}
	out := make([]id.DeviceID, len(ids))
	for i, d := range ids {
		out[i] = id.DeviceID(d)
	}
	return out, nil
}

// ourDevices returns the devices of our puppets whose MLS identity is on
// the homeserver (its upload was sent: until then others cannot claim its
// KeyPackages), for users (all puppets if users is nil). A device that
// gets there later reaches the rooms through the device-list change the
// homeserver announces.
func ourDevices(ctx context.Context, q database.Querier, users []id.UserID) (map[id.UserID][]id.DeviceID, error) {
	return ourDevicesWhere(ctx, q, users, true)
}

// ourDevicesWhere is ourDevices, optionally with devices whose identity
// is not uploaded yet.
func ourDevicesWhere(ctx context.Context, q database.Querier, users []id.UserID, uploaded bool) (map[id.UserID][]id.DeviceID, error) {
	rows, err := q.Query(ctx, `SELECT user_id, device_id FROM puppet_device
		WHERE signature_key IS NOT NULL AND ($1::text[] IS NULL OR user_id = ANY($1))
		AND (NOT $2 OR device_keys_sent_at IS NOT NULL)
		ORDER BY 1, 2`, userStrings(users), uploaded)
	if err != nil {
		return nil, fmt.Errorf("list our devices: %w", err)
	}
	out := map[id.UserID][]id.DeviceID{}
	var u, d string
	if _, err := pgx.ForEachRow(rows, []any{&u, &d}, func() error {
		out[id.UserID(u)] = append(out[id.UserID(u)], id.DeviceID(d))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list our devices: %w", err)
	}
	return out, nil
}

func userStrings(users []id.UserID) []string {
	if users == nil {
		return nil
	}
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = string(u)
	}
	return out
}
