package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Purposes of the secrets this package seals.
const (
	purposeSignatureKey    seal.Purpose = "keys.signature_key"
	purposeKeyPackage      seal.Purpose = "keys.key_package"
	purposeKeyPackageBatch seal.Purpose = "keys.key_package_batch"
	purposeMasterKey       seal.Purpose = "keys.master_key"
	purposeSelfSigningKey  seal.Purpose = "keys.self_signing_key"
)

// ErrNoIdentity is returned for a device that has no MLS identity (yet).
var ErrNoIdentity = errors.New("keys: device has no MLS identity")

// identity is a device's stored identity.
type identity struct {
	dev            Device
	sig            *suite.SignaturePrivateKey
	deviceKeys     []byte // as uploaded, if stored (rows made before migration 0013)
	deviceKeysTxn  string
	deviceKeysSent bool
	crossSigned    bool
	otkSent        int64
	otkClaimed     int64
	lastResort     *lastResort // nil: none, or one stored before migration 0031 (legacyLastResort)
}

// identityBinding is the table name a device's signature key is sealed
// to: it was kept in device_identity until migration 0024 moved it into
// puppet_device.
const identityBinding = "device_identity"

func identityRow(dev Device) seal.Binding {
	return seal.Row(identityBinding, string(dev.UserID), string(dev.DeviceID))
}

// loadIdentity reads a device's identity; nil if it has none (its
// puppet_device row's identity columns are NULL) or is not a device.
func (m *Manager) loadIdentity(ctx context.Context, q database.Querier, dev Device) (*identity, error) {
	var suiteID int
	var sealed []byte
	id := &identity{dev: dev}
	lastResortDest, scanned := scanLastResort()
	err := q.QueryRow(ctx, `SELECT suite, signature_key, device_keys, device_keys_txn, device_keys_sent_at IS NOT NULL,
		cross_signed_at IS NOT NULL, otk_sent, otk_claimed, `+lastResortColumns+` FROM puppet_device
		WHERE user_id = $1 AND device_id = $2 AND signature_key IS NOT NULL`,
		dev.UserID, dev.DeviceID).Scan(append([]any{&suiteID, &sealed, &id.deviceKeys, &id.deviceKeysTxn, &id.deviceKeysSent,
		&id.crossSigned, &id.otkSent, &id.otkClaimed}, lastResortDest...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read identity of %s: %w", dev, err)
	}
	s, err := suite.Lookup(suite.ID(suiteID))
	if err != nil {
		return nil, fmt.Errorf("identity of %s: %w", dev, err)
	}
	id.lastResort = scanned()
	plain, err := m.cfg.Sealer.Open(purposeSignatureKey, identityRow(dev), sealed)
	if err != nil {
		return nil, fmt.Errorf("identity of %s: %w", dev, err)
	}
	if id.sig, err = s.NewSignaturePrivateKey(plain); err != nil {
		return nil, fmt.Errorf("identity of %s: stored signature key: %w", dev, err)
	}
	return id, nil
}

// signedDeviceKeys returns the device keys object the device uploaded.
// Rows made since migration 0013 do not store it: it is rebuilt from the
// signature key, and comes out byte for byte as uploaded because every
// suite's signatures are deterministic (Ed25519, and ECDSA by RFC 6979).
func (id *identity) signedDeviceKeys() (json.RawMessage, error) {
	if id.deviceKeys != nil {
		return id.deviceKeys, nil
	}
	dk, err := buildDeviceKeys(id.dev, id.sig)
	if err != nil {
		return nil, fmt.Errorf("device keys of %s: %w", id.dev, err)
	}
	return dk, nil
}

// SignatureKey returns the signature key of our device dev, which signs
// its KeyPackages, its leaf and its commits. ErrNoIdentity if it has none.
func (m *Manager) SignatureKey(ctx context.Context, q database.Querier, dev Device) (*suite.SignaturePrivateKey, error) {
	id, err := m.loadIdentity(ctx, q, dev)
	if err != nil {
		return nil, err
	}
	if id == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoIdentity, dev)
	}
	return id.sig, nil
}

// EnsureIdentity gives our device dev its MLS identity if it has none, in
// the caller's transaction: a signature key (sealed), the signed device
// keys object, a full stock of KeyPackages and a last-resort one, all
// uploaded by one outbox row written through out. A caller that creates a
// device calls it in the same transaction; devices it misses get theirs
// from the sweep. The device must be in puppet_device. It reports whether
// it made one.
func (m *Manager) EnsureIdentity(ctx context.Context, q database.Querier, out *database.Producer, dev Device) (bool, error) {
	// Lock the device's row so that two callers cannot both make one.
	var has bool
	err := q.QueryRow(ctx, `SELECT signature_key IS NOT NULL FROM puppet_device WHERE user_id = $1 AND device_id = $2 FOR UPDATE`,
		dev.UserID, dev.DeviceID).Scan(&has)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("identity for %s: not a device of ours", dev)
	}
	if err != nil {
		return false, fmt.Errorf("identity for %s: %w", dev, err)
	}
	if has {
		return false, nil
	}
	sig, err := m.suite.GenerateSignatureKey()
	if err != nil {
		return false, fmt.Errorf("identity for %s: %w", dev, err)
	}
	deviceKeys, err := buildDeviceKeys(dev, sig)
	if err != nil {
		return false, fmt.Errorf("identity for %s: %w", dev, err)
	}
	sealed, err := m.cfg.Sealer.Seal(purposeSignatureKey, identityRow(dev), sig.Bytes())
	if err != nil {
		return false, err
	}
	otks, err := m.makeBatch(dev, sig, m.cfg.Stock)
	if err != nil {
		return false, err
	}
	defer otks.wipe()
	lastResort, err := m.makeLastResort(dev, sig)
	if err != nil {
		return false, err
	}
	defer lastResort.wipe()
	txn, err := m.enqueueUpload(ctx, out, dev, uploadBody{DeviceKeys: deviceKeys, OneTimeKeys: otks.kps, Fallback: []newKeyPackage{lastResort.kp}})
	if err != nil {
		return false, err
	}
	current, err := lastResort.seal(m.cfg.Sealer, dev, txn)
	if err != nil {
		return false, err
	}
	// device_keys stays NULL: signedDeviceKeys rebuilds it.
	if _, err := q.Exec(ctx, `UPDATE puppet_device SET suite = $3, signature_key = $4, device_keys_txn = $5,
		(`+lastResortColumns+`) = ($6, $7, $8, $9, $10) WHERE user_id = $1 AND device_id = $2`,
		append([]any{dev.UserID, dev.DeviceID, int(m.suite.ID()), sealed, txn}, current.values()...)...); err != nil {
		return false, fmt.Errorf("store identity of %s: %w", dev, err)
	}
	if err := m.insertBatch(ctx, q, dev, txn, otks); err != nil {
		return false, err
	}
	now := m.cfg.Now()
	if err := m.scheduleDevice(ctx, q, dev, now.Add(m.cfg.CheckInterval), database.Replace); err != nil {
		return false, err
	}
	if err := m.schedulePuppet(ctx, q, dev, now); err != nil {
		return false, err
	}
	m.cfg.Log.Info().Stringer("user_id", dev.UserID).Stringer("device_id", dev.DeviceID).Str("suite", m.suite.String()).
		Int("key_packages", len(otks.kps)).Str("outbox_txn_id", txn).Msg("Device got its MLS identity")
	return true, nil
}

// uploadBody is a /keys/upload request of our own.
type uploadBody struct {
	DeviceKeys  json.RawMessage
	OneTimeKeys []newKeyPackage
	Fallback    []newKeyPackage
}

func (m *Manager) marshalUpload(b uploadBody) []byte {
	alg := KeyPackageAlgorithm(m.suite.ID())
	keyMap := func(kps []newKeyPackage) map[string]string {
		out := make(map[string]string, len(kps))
		for _, kp := range kps {
			out[alg+":"+kp.keyID] = b64.EncodeToString(kp.wire)
		}
		return out
	}
	body := map[string]any{}
	if b.DeviceKeys != nil {
		body["device_keys"] = b.DeviceKeys
	}
	if len(b.OneTimeKeys) > 0 {
		body["one_time_keys"] = keyMap(b.OneTimeKeys)
	}
	if len(b.Fallback) > 0 {
		body["fallback_keys"] = keyMap(b.Fallback)
	}
	data, err := json.Marshal(body)
	if err != nil {
		panic("keys: marshal upload: " + err.Error()) // strings and valid raw JSON only
	}
	return data
}

// HookName is the outbox hook of key uploads: register Manager.Sent
// under it with the outbox sender.
const HookName = "keys.upload"

// enqueueUpload adds a /keys/upload of dev to the outbox and returns its
// transaction id. The body is fixed now, so a retry after a crash sends
// exactly the same keys under the same ids.
func (m *Manager) enqueueUpload(ctx context.Context, out *database.Producer, dev Device, b uploadBody) (string, error) {
	_, txn, err := out.AddOutgoing(ctx, database.OutgoingEvent{Kind: database.KeyUpload, UserID: string(dev.UserID),
		DeviceID: string(dev.DeviceID), Content: m.marshalUpload(b), Hook: HookName})
	if err != nil {
		return "", fmt.Errorf("upload keys of %s: %w", dev, err)
	}
	return txn, nil
}

// Timer kinds.
const (
	// TimerSweep (one timer, key "all") finds devices without an
	// identity or a check timer.
	TimerSweep = "keys.sweep"
	// TimerDevice (key "<user>|<device>", on the device's queue) checks
	// one device's identity, stock, last-resort KeyPackage and
	// cross-signing signature.
	TimerDevice = "keys.device"
	// TimerPuppet (key "<user>") makes and uploads a puppet's
	// cross-signing keys.
	TimerPuppet = "keys.puppet"
)

func (m *Manager) scheduleDevice(ctx context.Context, q database.Querier, dev Device, due time.Time, mode database.Schedule) error {
	return database.ScheduleTimer(ctx, q, database.Timer{Kind: TimerDevice, Key: dev.String(),
		Queue: inbound.DeviceQueue(dev.UserID, dev.DeviceID), DueAt: due}, mode)
}

func (m *Manager) schedulePuppet(ctx context.Context, q database.Querier, dev Device, due time.Time) error {
	return database.ScheduleTimer(ctx, q, database.Timer{Kind: TimerPuppet, Key: string(dev.UserID), DueAt: due}, database.Earliest)
}
