package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Cross-signing (DESIGN 6): each puppet has a master key and a
// self-signing key (Ed25519, as Matrix requires), the master key signs
// the self-signing key, and the self-signing key signs each of the
// puppet's devices, so that clients that trust only cross-signed devices
// (MSC4153) accept ours. The keys are made and sealed in one transaction
// and uploaded from the stored values in a later one, so an upload is
// never of keys that a rollback could lose; uploading the same keys
// again is a no-op for the homeserver. Synapse asks an appservice user
// for no interactive authentication on /keys/device_signing/upload.

// crossSigning is a puppet's stored cross-signing keys.
type crossSigning struct {
	user     id.UserID
	master   ed25519.PrivateKey
	self     ed25519.PrivateKey
	uploaded bool
}

// crossSigningBinding is the table name the keys are sealed to: they
// were kept in puppet_cross_signing until migration 0023 moved them into
// puppet.
const crossSigningBinding = "puppet_cross_signing"

func crossSigningRow(user id.UserID) seal.Binding {
	return seal.Row(crossSigningBinding, string(user))
}

// selfSigningLabel is the HKDF info that derives a puppet's self-signing
// key seed from its master key seed. A puppet stores one sealed seed: the
// master key can sign any self-signing key anyway, so deriving one from
// it gives nothing away that its holder lacks, while the self-signing key
// (which signs every device) does not reveal the master key.
const selfSigningLabel = "mls-appservice self-signing key from master key"

// selfSigningSeed derives the self-signing key seed of a puppet whose
// master key seed is master.
func selfSigningSeed(master []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, selfSigningLabel, ed25519.SeedSize)
}

// loadCrossSigning reads a puppet's cross-signing keys; nil if it has
// none yet. A puppet made before migration 0023 has a self-signing key of
// its own, sealed; one made since has it derived from the master key.
func (m *Manager) loadCrossSigning(ctx context.Context, q database.Querier, user id.UserID) (*crossSigning, error) {
	var master, self []byte
	cs := &crossSigning{user: user}
	err := q.QueryRow(ctx, `SELECT master_key, self_signing_key, cross_signing_uploaded_at IS NOT NULL FROM puppet
		WHERE user_id = $1`, user).Scan(&master, &self, &cs.uploaded)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && master == nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cross-signing keys of %s: %w", user, err)
	}
	open := func(p seal.Purpose, sealed []byte) ([]byte, error) {
		seed, err := m.cfg.Sealer.Open(p, crossSigningRow(user), sealed)
		if err != nil {
			return nil, fmt.Errorf("cross-signing keys of %s: %w", user, err)
		}
		if len(seed) != ed25519.SeedSize {
			clear(seed)
			return nil, fmt.Errorf("cross-signing keys of %s: stored seed of %d bytes", user, len(seed))
		}
		return seed, nil
	}
	masterSeed, err := open(purposeMasterKey, master)
	if err != nil {
		return nil, err
	}
	defer clear(masterSeed)
	var selfSeed []byte
	if self != nil {
		selfSeed, err = open(purposeSelfSigningKey, self)
	} else {
		selfSeed, err = selfSigningSeed(masterSeed)
	}
	if err != nil {
		return nil, err
	}
	defer clear(selfSeed)
	cs.master, cs.self = ed25519.NewKeyFromSeed(masterSeed), ed25519.NewKeyFromSeed(selfSeed)
	return cs, nil
}

// makeCrossSigning stores new cross-signing keys for user unless it has
// some (then it does nothing): a fresh master key seed, sealed, from
// which the self-signing key is derived (selfSigningSeed).
func (m *Manager) makeCrossSigning(ctx context.Context, q database.Querier, user id.UserID) error {
	seed := make([]byte, ed25519.SeedSize)
	defer clear(seed)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("cross-signing key for %s: %w", user, err)
	}
	sealed, err := m.cfg.Sealer.Seal(purposeMasterKey, crossSigningRow(user), seed)
	if err != nil {
		return err
	}
	tag, err := q.Exec(ctx, `UPDATE puppet SET master_key = $2, self_signing_key = NULL, cross_signing_uploaded_at = NULL
		WHERE user_id = $1 AND master_key IS NULL`, user, sealed)
	if err != nil {
		return fmt.Errorf("store cross-signing keys of %s: %w", user, err)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM puppet WHERE user_id = $1)`, user).Scan(&exists); err != nil {
			return fmt.Errorf("store cross-signing keys of %s: %w", user, err)
		}
		if !exists {
			return fmt.Errorf("store cross-signing keys of %s: no such puppet", user)
		}
	}
	return nil
}

func ed25519Name(pub ed25519.PublicKey) (name, value string) {
	value = b64.EncodeToString(pub)
	return "ed25519:" + value, value
}

// crossSigningKey returns a cross-signing key object (master or
// self_signing) of user, signed by signer if not nil.
func crossSigningKey(user id.UserID, usage string, key, signer ed25519.PrivateKey) (map[string]any, error) {
	name, value := ed25519Name(key.Public().(ed25519.PublicKey))
	obj := map[string]any{"user_id": string(user), "usage": []any{usage}, "keys": map[string]any{name: value}}
	if signer != nil {
		if err := signObject(obj, user, signer); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// signObject adds signer's signature of obj under user.
func signObject(obj map[string]any, user id.UserID, signer ed25519.PrivateKey) error {
	content, err := signedContent(obj)
	if err != nil {
		return err
	}
	name, _ := ed25519Name(signer.Public().(ed25519.PublicKey))
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
		obj["signatures"] = sigs
	}
	byUser, _ := sigs[string(user)].(map[string]any)
	if byUser == nil {
		byUser = map[string]any{}
		sigs[string(user)] = byUser
	}
	byUser[name] = b64.EncodeToString(ed25519.Sign(signer, content))
	return nil
}

// uploadCrossSigning uploads a puppet's stored keys and records it.
func (m *Manager) uploadCrossSigning(ctx context.Context, q database.Querier, cs *crossSigning) error {
	master, err := crossSigningKey(cs.user, "master", cs.master, nil)
	if err != nil {
		return err
	}
	self, err := crossSigningKey(cs.user, "self_signing", cs.self, cs.master)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"master_key": master, "self_signing_key": self})
	if err != nil {
		return err
	}
	if err := m.cfg.Homeserver.UploadSigningKeys(ctx, cs.user, body); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `UPDATE puppet SET cross_signing_uploaded_at = now() WHERE user_id = $1`, cs.user); err != nil {
		return fmt.Errorf("record cross-signing upload of %s: %w", cs.user, err)
	}
	m.cfg.Log.Info().Stringer("user_id", cs.user).Msg("Cross-signing keys uploaded")
	return nil
}

// crossSignDevice signs our device's uploaded device keys with its
// puppet's self-signing key and uploads the signature, with those of the
// puppet's other devices whose keys are uploaded and not signed yet (at
// most crossSignBatch in all): Synapse takes about a dozen of these
// requests a second, so a fleet of puppets with many devices each took
// minutes to publish one request a device. It does nothing (and has the
// puppet's keys made) while the puppet has no uploaded keys.
//
// The devices signed are locked, skipping any that another transaction
// holds (a worker checking that device, or signing it in its own batch):
// each is signed by one request, and two workers of one puppet never wait
// on each other's rows. It reports whether ident's device is still to be
// signed (left to another transaction, which may fail, or refused): the
// caller then looks again soon. Devices of the batch that the homeserver
// accepted stay recorded even if it refused others.
func (m *Manager) crossSignDevice(ctx context.Context, q database.Querier, ident *identity) (again bool, err error) {
	dev := ident.dev
	cs, err := m.loadCrossSigning(ctx, q, dev.UserID)
	if err != nil {
		return false, err
	}
	if cs == nil || !cs.uploaded {
		return false, m.schedulePuppet(ctx, q, dev, m.cfg.Now())
	}
	rows, err := q.Query(ctx, `SELECT device_id FROM puppet_device
		WHERE user_id = $1 AND signature_key IS NOT NULL AND device_keys_sent_at IS NOT NULL AND cross_signed_at IS NULL
		ORDER BY device_id <> $2, device_id LIMIT $3 FOR UPDATE SKIP LOCKED`, dev.UserID, dev.DeviceID, crossSignBatch)
	if err != nil {
		return false, fmt.Errorf("devices of %s to cross-sign: %w", dev.UserID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[id.DeviceID])
	if err != nil {
		return false, fmt.Errorf("devices of %s to cross-sign: %w", dev.UserID, err)
	}
	again = len(ids) == 0 || ids[0] != dev.DeviceID
	if len(ids) == 0 {
		return again, nil
	}
	signed := map[string]any{}
	for _, d := range ids {
		of := ident
		if d != dev.DeviceID {
			if of, err = m.loadIdentity(ctx, q, Device{UserID: dev.UserID, DeviceID: d}); err != nil {
				return false, err
			}
		}
		obj, err := selfSigned(of, cs)
		if err != nil {
			return false, err
		}
		signed[string(d)] = obj
	}
	body, err := json.Marshal(map[string]any{string(dev.UserID): signed})
	if err != nil {
		return false, err
	}
	resp, err := m.cfg.Homeserver.UploadSignatures(ctx, dev.UserID, body)
	if err != nil {
		return false, err
	}
	var answer struct {
		Failures map[string]map[string]json.RawMessage `json:"failures"`
	}
	if err := json.Unmarshal(resp, &answer); err != nil {
		return false, fmt.Errorf("cross-sign devices of %s: answer does not parse: %w", dev.UserID, err)
	}
	failed := answer.Failures[string(dev.UserID)]
	if len(answer.Failures) > 0 && failed == nil {
		return false, fmt.Errorf("cross-sign devices of %s: homeserver refused: %.300s", dev.UserID, resp)
	}
	done := slices.DeleteFunc(slices.Clone(ids), func(d id.DeviceID) bool { _, ok := failed[string(d)]; return ok })
	if _, err := q.Exec(ctx, `UPDATE puppet_device SET cross_signed_at = now() WHERE user_id = $1 AND device_id = ANY($2)`,
		dev.UserID, done); err != nil {
		return false, fmt.Errorf("record cross-signing of %s's devices: %w", dev.UserID, err)
	}
	m.cfg.Metrics.CrossSigned.Add(float64(len(done)))
	m.cfg.Metrics.CrossSignRequests.Inc()
	m.cfg.Log.Info().Stringer("user_id", dev.UserID).Int("devices", len(done)).Msg("Devices cross-signed")
	if len(failed) > 0 {
		// Each is tried again by its own device's check.
		m.cfg.Metrics.CrossSignRefused.Add(float64(len(failed)))
		m.cfg.Log.Warn().Stringer("user_id", dev.UserID).Int("devices", len(failed)).Str("answer", fmt.Sprintf("%.300s", resp)).
			Msg("Homeserver refused some devices' cross-signing signatures")
	}
	_, refused := failed[string(dev.DeviceID)]
	return again || refused, nil
}

// crossSignBatch is the most devices one signatures upload signs, and
// crossSignRecheck how soon a device left to another worker's upload is
// looked at again.
const (
	crossSignBatch   = 100
	crossSignRecheck = 15 * time.Second
)

// selfSigned returns the device keys of our device ident signed by its
// puppet's self-signing key.
func selfSigned(ident *identity, cs *crossSigning) (map[string]any, error) {
	dk, err := ident.signedDeviceKeys()
	if err != nil {
		return nil, err
	}
	v, err := decodeValue(dk)
	if err != nil {
		return nil, fmt.Errorf("stored device keys of %s: %w", ident.dev, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("stored device keys of %s are not an object", ident.dev)
	}
	if err := signObject(obj, ident.dev.UserID, cs.self); err != nil {
		return nil, err
	}
	return obj, nil
}
