package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// ErrUnknownKeyPackage is returned for a KeyPackageRef that names none of
// the device's KeyPackages whose private keys are still kept.
var ErrUnknownKeyPackage = errors.New("keys: no such KeyPackage of ours")

// newKeyPackage is a KeyPackage just made, as uploaded.
type newKeyPackage struct {
	keyID string // keyID(KeyPackageRef): the one-time key id
	wire  []byte // MLSMessage(KeyPackage), as uploaded
}

// uploadForm is a KeyPackage as uploaded: an MLSMessage (package doc).
func uploadForm(kp *message.KeyPackage) []byte {
	return codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatKeyPackage, KeyPackage: kp})
}

// keyPackageRow is the binding of a KeyPackage stored in a row of its own
// (key_package): a retired last-resort one, or one made before batches
// and migration 0031.
func keyPackageRow(dev Device, keyID string) seal.Binding {
	return seal.Row("key_package", string(dev.UserID), string(dev.DeviceID), keyID)
}

// FindKeyPackage returns the first of refs (a Welcome's KeyPackageRefs)
// that names a KeyPackage of our device dev whose private keys are still
// kept, and that KeyPackage with its private keys and the device's
// signature key: what joining from the Welcome needs.
// ErrUnknownKeyPackage if none does.
func (m *Manager) FindKeyPackage(ctx context.Context, q database.Querier, dev Device, refs [][]byte) ([]byte, *group.KeyPackageBundle, error) {
	ident, err := m.loadIdentity(ctx, q, dev)
	if err != nil {
		return nil, nil, err
	}
	if ident == nil {
		// A device without an identity never published a KeyPackage.
		return nil, nil, fmt.Errorf("%w: %s has no MLS identity", ErrUnknownKeyPackage, dev)
	}
	hit, err := m.findInBatches(ctx, q, ident, refs, false)
	if err != nil {
		return nil, nil, err
	}
	if hit != nil {
		hit.wipe()
		return hit.ref, hit.bundle, nil
	}
	if ref, b := m.findLastResort(ident, refs); b != nil {
		return ref, b, nil
	}
	return m.findStored(ctx, q, ident, refs)
}

// findStored looks refs up among the KeyPackages stored one per row:
// retired last-resort ones, and those made before batches and migration
// 0031.
func (m *Manager) findStored(ctx context.Context, q database.Querier, ident *identity, refs [][]byte) ([]byte, *group.KeyPackageBundle, error) {
	dev := ident.dev
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = keyID(r)
	}
	var id string
	var template, sealed []byte
	err := q.QueryRow(ctx, `SELECT key_id, template, private FROM key_package WHERE user_id = $1 AND device_id = $2 AND key_id = ANY($3)
		ORDER BY array_position($3, key_id) LIMIT 1`, dev.UserID, dev.DeviceID, ids).Scan(&id, &template, &sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: %s, %d refs", ErrUnknownKeyPackage, dev, len(refs))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read key package of %s: %w", dev, err)
	}
	private, err := m.cfg.Sealer.Open(purposeKeyPackage, keyPackageRow(dev, id), sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("key package %s of %s: %w", id, dev, err)
	}
	defer clear(private)
	b, err := storedBundle(ident.dev, template, private, ident.sig)
	if err != nil {
		return nil, nil, fmt.Errorf("key package %s of %s: %w", id, dev, err)
	}
	// The template is not sealed: a KeyPackage derived from another one
	// has another ref.
	ref := b.KeyPackage.Ref(ident.sig.Suite())
	if keyID(ref) != id {
		return nil, nil, fmt.Errorf("key package %s of %s: stored under another ref", id, dev)
	}
	return ref, b, nil
}

// storedBundle is a stored KeyPackage of dev with its private keys:
// derived from its template and secret, or, for rows made before
// migration 0014 (template NULL), the bundle as it was sealed.
func storedBundle(dev Device, template, private []byte, sig *suite.SignaturePrivateKey) (*group.KeyPackageBundle, error) {
	if template == nil {
		return group.UnmarshalKeyPackageBundle(private, sig)
	}
	t, err := decodeTemplate(template, dev)
	if err != nil {
		return nil, err
	}
	return group.DeriveKeyPackage(t, private, sig)
}

// Consume records, in the caller's transaction, that the Welcome which
// used our KeyPackage ref was processed. A one-time KeyPackage's private
// keys are deleted. A last-resort one may be used by several joiners
// (RFC 9420 16.8): it is replaced by a new one (uploaded through out) and
// its keys are kept for keys.last_resort_grace, for Welcomes from those
// who claimed it before the replacement.
func (m *Manager) Consume(ctx context.Context, w *inbound.Work, dev Device, ref []byte) error {
	q := w.Q
	var id string
	var lastResort, retired bool
	err := q.QueryRow(ctx, `SELECT key_id, last_resort, retired_at IS NOT NULL FROM key_package
		WHERE user_id = $1 AND device_id = $2 AND key_id = $3 FOR UPDATE`, dev.UserID, dev.DeviceID, keyID(ref)).Scan(&id, &lastResort, &retired)
	if errors.Is(err, pgx.ErrNoRows) {
		return m.consumeCurrent(ctx, w, dev, ref)
	}
	if err != nil {
		return fmt.Errorf("consume key package of %s: %w", dev, err)
	}
	if !lastResort {
		if _, err := q.Exec(ctx, `DELETE FROM key_package WHERE user_id = $1 AND device_id = $2 AND key_id = $3`,
			dev.UserID, dev.DeviceID, id); err != nil {
			return fmt.Errorf("consume key package %s of %s: %w", id, dev, err)
		}
		return nil
	}
	if retired {
		return nil
	}
	ident, err := m.loadIdentity(ctx, q, dev)
	if err != nil || ident == nil {
		return errors.Join(err, ErrNoIdentity)
	}
	return m.replaceLastResort(ctx, w, ident, "consumed")
}

// consumeCurrent consumes ref, which no row of key_package names: the
// device's current last-resort KeyPackage, replaced, or a one-time one of
// its batches, whose index is punctured so that its private keys can no
// longer be derived. Two transactions that replace the same current one
// both move it to key_package under its key id: the second waits for the
// first and fails on the key, and its work, retried, finds it retired.
func (m *Manager) consumeCurrent(ctx context.Context, w *inbound.Work, dev Device, ref []byte) error {
	ident, err := m.loadIdentity(ctx, w.Q, dev)
	if err != nil || ident == nil {
		return errors.Join(err, ErrNoIdentity)
	}
	if _, b := m.findLastResort(ident, [][]byte{ref}); b != nil {
		return m.replaceLastResort(ctx, w, ident, "consumed")
	}
	hit, err := m.findInBatches(ctx, w.Q, ident, [][]byte{ref}, true)
	if err != nil {
		return err
	}
	if hit == nil {
		return fmt.Errorf("%w: %s, ref %x", ErrUnknownKeyPackage, dev, ref)
	}
	return m.consumeFromBatch(ctx, w.Q, dev, hit)
}

// checkStock is the device check's top-up (see the package doc for the
// accounting). It returns the homeserver's count.
func (m *Manager) checkStock(ctx context.Context, w *inbound.Work, id *identity) error {
	q := w.Q
	dev := id.dev
	alg := KeyPackageAlgorithm(m.suite.ID())
	// Read what we sent and what is on its way BEFORE asking the
	// homeserver: a row sent in between is then counted twice (too few
	// generated, made up next time) rather than not at all (too many).
	var pending int
	if err := q.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM key_package k JOIN outbox o ON o.txn_id = k.upload_txn
		 WHERE k.user_id = $1 AND k.device_id = $2 AND NOT k.last_resort AND o.sent_at IS NULL AND o.failed_at IS NULL) +
		(SELECT coalesce(sum(length(b.refs) / $3), 0) FROM key_package_batch b JOIN outbox o ON o.txn_id = b.upload_txn
		 WHERE b.user_id = $1 AND b.device_id = $2 AND o.sent_at IS NULL AND o.failed_at IS NULL)`,
		dev.UserID, dev.DeviceID, refPrefixLen).Scan(&pending); err != nil {
		return fmt.Errorf("count pending key packages of %s: %w", dev, err)
	}
	var sent, claimed int64
	if err := q.QueryRow(ctx, `SELECT otk_sent, otk_claimed FROM puppet_device WHERE user_id = $1 AND device_id = $2`,
		dev.UserID, dev.DeviceID).Scan(&sent, &claimed); err != nil {
		return fmt.Errorf("read counters of %s: %w", dev, err)
	}
	counts, err := m.cfg.Homeserver.OneTimeKeyCounts(ctx, dev.UserID, dev.DeviceID)
	if err != nil {
		return err
	}
	held := counts[alg]
	if held < 0 || held > 100000 {
		return fmt.Errorf("homeserver counts %d key packages of %s", held, dev)
	}
	m.cfg.Metrics.Stock.WithLabelValues(string(dev.UserID), string(dev.DeviceID)).Set(float64(held))
	if c := sent - int64(held); c > claimed {
		w.Count(m.cfg.Metrics.ClaimedByOthers, float64(c-claimed))
		if _, err := q.Exec(ctx, `UPDATE puppet_device SET otk_claimed = $3 WHERE user_id = $1 AND device_id = $2`,
			dev.UserID, dev.DeviceID, c); err != nil {
			return fmt.Errorf("record claims of %s: %w", dev, err)
		}
	}
	if held+pending >= m.cfg.LowWater {
		return nil
	}
	w.Count(m.cfg.Metrics.BelowLowWater, 1)
	n := m.cfg.Stock - held - pending
	b, err := m.makeBatch(dev, id.sig, n)
	if err != nil {
		return err
	}
	defer b.wipe()
	txn, err := m.enqueueUpload(ctx, w.Out, dev, uploadBody{OneTimeKeys: b.kps})
	if err != nil {
		return err
	}
	if err := m.insertBatch(ctx, q, dev, txn, b); err != nil {
		return err
	}
	w.Count(m.cfg.Metrics.TopUps, 1)
	m.cfg.Log.Info().Stringer("user_id", dev.UserID).Stringer("device_id", dev.DeviceID).Int("held", held).
		Int("pending", pending).Int("generated", n).Str("outbox_txn_id", txn).Msg("KeyPackage stock topped up")
	return nil
}

// prune deletes private keys that no Welcome can need any more:
// KeyPackages whose upload the outbox gave up (never published), retired
// last-resort ones after the grace period, and expired ones after it.
func (m *Manager) prune(ctx context.Context, q database.Querier, id *identity) error {
	if err := m.dropFailedLastResort(ctx, q, id); err != nil {
		return err
	}
	dev := id.dev
	grace := m.cfg.Now().Add(-m.cfg.LastResortGrace)
	tag, err := q.Exec(ctx, `DELETE FROM key_package k WHERE k.user_id = $1 AND k.device_id = $2 AND (
		k.retired_at < $3 OR k.not_after < $3 OR
		EXISTS (SELECT 1 FROM outbox o WHERE o.txn_id = k.upload_txn AND o.failed_at IS NOT NULL))`,
		dev.UserID, dev.DeviceID, grace)
	if err != nil {
		return fmt.Errorf("prune key packages of %s: %w", dev, err)
	}
	n := tag.RowsAffected()
	tag, err = q.Exec(ctx, `DELETE FROM key_package_batch b WHERE b.user_id = $1 AND b.device_id = $2 AND (
		b.not_after < $3 OR EXISTS (SELECT 1 FROM outbox o WHERE o.txn_id = b.upload_txn AND o.failed_at IS NOT NULL))`,
		dev.UserID, dev.DeviceID, grace)
	if err != nil {
		return fmt.Errorf("prune key packages of %s: %w", dev, err)
	}
	if n += tag.RowsAffected(); n > 0 {
		m.cfg.Log.Info().Stringer("user_id", dev.UserID).Stringer("device_id", dev.DeviceID).Int64("deleted", n).
			Msg("Deleted private keys of KeyPackages no longer usable (rows: KeyPackages or batches)")
	}
	return nil
}

// Sent is the outbox hook of key uploads (HookName), run in the
// transaction that marks the upload sent: it counts the KeyPackages the
// homeserver now holds, and when the device keys were in it, has the
// device checked at once so that it gets its cross-signing signature.
func (m *Manager) Sent(ctx context.Context, q database.Querier, ev *database.OutgoingEvent, _ string) error {
	var body struct {
		DeviceKeys  json.RawMessage   `json:"device_keys"`
		OneTimeKeys map[string]string `json:"one_time_keys"`
		Fallback    map[string]string `json:"fallback_keys"`
	}
	if err := json.Unmarshal(ev.Content, &body); err != nil {
		// Our own row, but read back from the database: do not fail the
		// send over it.
		m.cfg.Log.Error().Err(err).Str("outbox_txn_id", ev.TxnID).Msg("Key upload row does not parse; its keys are not counted")
		return nil
	}
	_, err := q.Exec(ctx, `UPDATE puppet_device SET otk_sent = otk_sent + $3,
		device_keys_sent_at = CASE WHEN device_keys_txn = $4 THEN now() ELSE device_keys_sent_at END
		WHERE user_id = $1 AND device_id = $2 AND signature_key IS NOT NULL`, ev.UserID, ev.DeviceID, len(body.OneTimeKeys), ev.TxnID)
	if err != nil {
		return fmt.Errorf("record key upload %s: %w", ev.TxnID, err)
	}
	m.cfg.Metrics.Uploaded.WithLabelValues("one_time").Add(float64(len(body.OneTimeKeys)))
	m.cfg.Metrics.Uploaded.WithLabelValues("last_resort").Add(float64(len(body.Fallback)))
	if len(body.DeviceKeys) > 0 {
		return m.scheduleDevice(ctx, q, Device{UserID: id.UserID(ev.UserID), DeviceID: id.DeviceID(ev.DeviceID)}, m.cfg.Now(), database.Earliest)
	}
	return nil
}
