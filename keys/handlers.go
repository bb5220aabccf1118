package keys

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// countHandler takes the homeserver's MSC3202 counts of our devices.
type countHandler struct{ m *Manager }

// KeyCounts asks for a check of the device when its stock is below low
// water, and replaces its last-resort KeyPackage when the homeserver says
// it was handed out. The count itself is not trusted for the top-up: it
// may have been computed before our latest upload arrived, so the check
// asks the homeserver again (see the package doc).
func (h countHandler) KeyCounts(ctx context.Context, w *inbound.Work, k inbound.KeyCounts) error {
	m := h.m
	dev := Device{UserID: k.UserID, DeviceID: k.DeviceID}
	ident, err := m.loadIdentity(ctx, w.Q, dev)
	if err != nil {
		return err
	}
	if ident == nil {
		return nil // the sweep gives it one; nothing to count yet
	}
	alg := KeyPackageAlgorithm(m.suite.ID())
	// Synapse reports a device that holds no one-time keys at all with
	// an empty map, which reaches us as no map: an absent count is zero.
	n := k.OneTimeKeys[alg]
	m.cfg.Metrics.Stock.WithLabelValues(string(dev.UserID), string(dev.DeviceID)).Set(float64(n))
	if n < m.cfg.LowWater {
		if err := m.scheduleDevice(ctx, w.Q, dev, m.cfg.Now(), database.Earliest); err != nil {
			return err
		}
	}
	if !k.HasFallback || slices.Contains(k.UnusedFallback, alg) {
		return nil
	}
	// The fallback key was handed out. Replace it unless the report may
	// predate the current one: the homeserver computed it before it sent
	// the transaction, so only a report made into a work item after our
	// upload was acknowledged is known to be about the current key.
	var sentAt *time.Time
	txn, err := currentUpload(ctx, w.Q, ident)
	if err == nil {
		err = w.Q.QueryRow(ctx, `SELECT sent_at FROM outbox WHERE txn_id = $1`, txn).Scan(&sentAt)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return m.scheduleDevice(ctx, w.Q, dev, m.cfg.Now(), database.Earliest)
	}
	if err != nil {
		return fmt.Errorf("read last-resort key package of %s: %w", dev, err)
	}
	if sentAt == nil || !sentAt.Before(w.Item.CreatedAt) {
		return nil
	}
	return m.replaceLastResort(ctx, w, ident, "used")
}

// sweepTimer makes sure every device of ours has a check timer, due at
// once for devices without an identity, and every puppet whose
// cross-signing keys are not uploaded has its timer.
type sweepTimer struct{ m *Manager }

func (t sweepTimer) Timer(ctx context.Context, w *inbound.Work, _ database.Timer) (time.Time, error) {
	m := t.m
	now := m.cfg.Now()
	rows, err := w.Q.Query(ctx, `SELECT user_id, device_id, signature_key IS NULL, cross_signed_at IS NULL
		FROM puppet_device ORDER BY user_id, device_id`)
	if err != nil {
		return time.Time{}, fmt.Errorf("list devices: %w", err)
	}
	type row struct {
		dev              Device
		noIdentity, noXS bool
	}
	var devices []row
	var r row
	_, err = pgx.ForEachRow(rows, []any{&r.dev.UserID, &r.dev.DeviceID, &r.noIdentity, &r.noXS}, func() error {
		devices = append(devices, r)
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("list devices: %w", err)
	}
	fresh := 0
	for _, r := range devices {
		due := now.Add(m.cfg.CheckInterval)
		if r.noIdentity || r.noXS {
			due, fresh = now, fresh+1
		}
		if err := m.scheduleDevice(ctx, w.Q, r.dev, due, database.Earliest); err != nil {
			return time.Time{}, err
		}
	}
	if fresh > 0 {
		m.cfg.Log.Info().Int("devices", len(devices)).Int("to_complete", fresh).Msg("Key sweep scheduled device checks")
	}
	return now.Add(m.cfg.CheckInterval), nil
}

// deviceTimer is one device's check: identity, undelivered uploads,
// pruning, stock, last resort and cross-signing, in that order.
type deviceTimer struct{ m *Manager }

func (t deviceTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	m := t.m
	dev, err := parseDeviceKey(timer.Key)
	if err != nil {
		m.cfg.Log.Error().Err(err).Str("key", timer.Key).Msg("Dropping a device key timer with a bad key")
		return time.Time{}, nil
	}
	next := m.cfg.Now().Add(m.cfg.CheckInterval)
	ident, err := m.loadIdentity(ctx, w.Q, dev)
	if err != nil {
		return time.Time{}, err
	}
	if ident == nil {
		var exists bool
		if err := w.Q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM puppet_device WHERE user_id = $1 AND device_id = $2)`,
			dev.UserID, dev.DeviceID).Scan(&exists); err != nil {
			return time.Time{}, fmt.Errorf("look up device %s: %w", dev, err)
		}
		if !exists {
			return time.Time{}, nil // the device is gone: so is its timer
		}
		_, err := m.EnsureIdentity(ctx, w.Q, w.Out, dev)
		return next, err
	}
	if err := m.resendDeviceKeys(ctx, w.Q, w.Out, ident); err != nil {
		return time.Time{}, err
	}
	if err := m.prune(ctx, w.Q, ident); err != nil {
		return time.Time{}, err
	}
	if err := m.checkStock(ctx, w, ident); err != nil {
		return time.Time{}, err
	}
	if err := m.checkLastResort(ctx, w, ident); err != nil {
		return time.Time{}, err
	}
	if ident.deviceKeysSent && !ident.crossSigned {
		again, err := m.crossSignDevice(ctx, w.Q, ident)
		if err != nil {
			return time.Time{}, err
		}
		if again {
			next = m.cfg.Now().Add(crossSignRecheck)
		}
	}
	return next, nil
}

// resendDeviceKeys uploads the stored device keys again if the outbox gave
// their upload up (the homeserver refused it, or it was dropped).
func (m *Manager) resendDeviceKeys(ctx context.Context, q database.Querier, out *database.Producer, ident *identity) error {
	if ident.deviceKeysSent {
		return nil
	}
	var failed bool
	err := q.QueryRow(ctx, `SELECT failed_at IS NOT NULL FROM outbox WHERE txn_id = $1`, ident.deviceKeysTxn).Scan(&failed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read device keys upload of %s: %w", ident.dev, err)
	}
	if !failed && err == nil {
		return nil
	}
	dk, err := ident.signedDeviceKeys()
	if err != nil {
		return err
	}
	txn, err := m.enqueueUpload(ctx, out, ident.dev, uploadBody{DeviceKeys: dk})
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `UPDATE puppet_device SET device_keys_txn = $3 WHERE user_id = $1 AND device_id = $2`,
		ident.dev.UserID, ident.dev.DeviceID, txn); err != nil {
		return fmt.Errorf("record device keys upload of %s: %w", ident.dev, err)
	}
	m.cfg.Log.Warn().Stringer("user_id", ident.dev.UserID).Stringer("device_id", ident.dev.DeviceID).
		Str("outbox_txn_id", txn).Msg("Device keys upload was given up; uploading the same keys again")
	return nil
}

// puppetTimer makes a puppet's cross-signing keys and, in its next run
// (after they are committed), uploads them and has its devices signed.
type puppetTimer struct{ m *Manager }

func (t puppetTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	m := t.m
	user := id.UserID(timer.Key)
	cs, err := m.loadCrossSigning(ctx, w.Q, user)
	if err != nil {
		return time.Time{}, err
	}
	if cs == nil {
		if err := m.makeCrossSigning(ctx, w.Q, user); err != nil {
			return time.Time{}, err
		}
		return m.cfg.Now(), nil
	}
	if !cs.uploaded {
		if err := m.uploadCrossSigning(ctx, w.Q, cs); err != nil {
			return time.Time{}, err
		}
	}
	devices, err := database.PuppetDevices(ctx, w.Q, string(user))
	if err != nil {
		return time.Time{}, err
	}
	for _, d := range devices {
		if err := m.scheduleDevice(ctx, w.Q, Device{UserID: user, DeviceID: id.DeviceID(d)}, m.cfg.Now(), database.Earliest); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, nil
}

func parseDeviceKey(key string) (Device, error) {
	user, device, ok := strings.Cut(key, "|")
	if !ok || user == "" || device == "" {
		return Device{}, fmt.Errorf("timer key %q is not <user>|<device>", key)
	}
	return Device{UserID: id.UserID(user), DeviceID: id.DeviceID(device)}, nil
}
