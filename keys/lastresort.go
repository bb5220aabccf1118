package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// A device's current last-resort KeyPackage is kept in its puppet_device
// row (migration 0031): every device has exactly one, and a row of its
// own cost a fifth of what a device takes. A replaced one moves to
// key_package, retired, where a Welcome from someone who claimed it before
// the replacement still finds it for keys.last_resort_grace. A current
// one stored in key_package before that migration is used until it is
// replaced (legacyLastResort).

// lastResort is a device's current last-resort KeyPackage as its
// puppet_device row holds it.
type lastResort struct {
	txn      string // the outbox row that uploads it
	ref      []byte // refPrefixLen bytes of its KeyPackageRef
	template []byte // encodeTemplate
	sealed   []byte // sealed to lastResortRow: the secret group.DeriveKeyPackage takes
	notAfter time.Time
}

// lastResortBinding is the table name a current last-resort KeyPackage's
// secret is sealed to; the row is further named by its upload, so that
// the secret of one cannot pass for another's.
const lastResortBinding = "puppet_device.last_resort"

func lastResortRow(dev Device, txn string) seal.Binding {
	return seal.Row(lastResortBinding, string(dev.UserID), string(dev.DeviceID), txn)
}

// newLastResort is a last-resort KeyPackage just made: what is uploaded,
// what is stored, and until it is sealed its secret.
type newLastResort struct {
	kp     newKeyPackage
	stored lastResort // all but txn and sealed
	secret []byte
}

// wipe zeroes the unsealed secret.
func (n *newLastResort) wipe() { clear(n.secret) }

// makeLastResort makes a last-resort KeyPackage of dev. Unlike the
// one-time ones (batch.go), its keys come from a secret of its own: it
// may serve several joiners and is replaced, not punctured.
func (m *Manager) makeLastResort(dev Device, sig *suite.SignaturePrivateKey) (*newLastResort, error) {
	template, notAfter, err := m.keyPackageTemplate(dev, sig)
	if err != nil {
		return nil, err
	}
	n := &newLastResort{secret: make([]byte, sig.Suite().HashSize())}
	if _, err := rand.Read(n.secret); err != nil {
		return nil, fmt.Errorf("key package for %s: %w", dev, err)
	}
	b, err := group.DeriveKeyPackage(template, n.secret, sig)
	if err != nil {
		n.wipe()
		return nil, fmt.Errorf("key package for %s: %w", dev, err)
	}
	ref := b.KeyPackage.Ref(sig.Suite())
	n.kp = newKeyPackage{keyID: keyID(ref), wire: uploadForm(&b.KeyPackage)}
	n.stored = lastResort{ref: bytes.Clone(ref[:refPrefixLen]), template: encodeTemplate(template, dev), notAfter: notAfter}
	m.cfg.Metrics.Generated.WithLabelValues("last_resort").Inc()
	return n, nil
}

// seal seals n's secret to its row, uploaded by the outbox row txn, and
// wipes it.
func (n *newLastResort) seal(sealer *seal.Sealer, dev Device, txn string) (*lastResort, error) {
	defer n.wipe()
	cur := n.stored
	cur.txn = txn
	var err error
	if cur.sealed, err = sealer.Seal(purposeKeyPackage, lastResortRow(dev, txn), n.secret); err != nil {
		return nil, err
	}
	return &cur, nil
}

// lastResortColumns are puppet_device's columns for a lastResort, in the
// order of its values; all NULL for none.
const lastResortColumns = "last_resort_txn, last_resort_ref, last_resort_template, last_resort_secret, last_resort_not_after"

func (c *lastResort) values() []any { return []any{c.txn, c.ref, c.template, c.sealed, c.notAfter} }

// scanLastResort returns the scan targets for lastResortColumns and a
// function giving the scanned lastResort, nil if the columns are NULL.
func scanLastResort() ([]any, func() *lastResort) {
	var txn *string
	var notAfter *time.Time
	var c lastResort
	return []any{&txn, &c.ref, &c.template, &c.sealed, &notAfter}, func() *lastResort {
		if txn == nil || notAfter == nil {
			return nil
		}
		c.txn, c.notAfter = *txn, *notAfter
		return &c
	}
}

// derive derives c, a last-resort KeyPackage of dev, with its private
// keys; it also returns its secret, which the caller clears. Stored state
// is checked, never trusted: a secret that does not open, a template that
// does not decode or a KeyPackage whose ref does not start as stored is
// an error naming the row.
func (c *lastResort) derive(sealer *seal.Sealer, dev Device, sig *suite.SignaturePrivateKey) (*group.KeyPackageBundle, []byte, error) {
	where := fmt.Sprintf("last-resort key package %s of %s", c.txn, dev)
	secret, err := sealer.Open(purposeKeyPackage, lastResortRow(dev, c.txn), c.sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	b, err := storedBundle(dev, c.template, secret, sig)
	if err == nil && !bytes.HasPrefix(b.KeyPackage.Ref(sig.Suite()), c.ref) {
		err = errors.New("derives another ref than stored")
	}
	if err != nil {
		clear(secret)
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	return b, secret, nil
}

// findLastResort returns the first of refs that names id's current
// last-resort KeyPackage, and that KeyPackage with its private keys; nil
// if none does. One that does not derive is logged and counted and
// found by none: the device's other KeyPackages must still work.
func (m *Manager) findLastResort(id *identity, refs [][]byte) ([]byte, *group.KeyPackageBundle) {
	c := id.lastResort
	if c == nil {
		return nil, nil
	}
	var b *group.KeyPackageBundle
	for _, ref := range refs {
		if !bytes.HasPrefix(ref, c.ref) {
			continue
		}
		if b == nil {
			var secret []byte
			var err error
			if b, secret, err = c.derive(m.cfg.Sealer, id.dev, id.sig); err != nil {
				m.unreadableLastResort(id.dev, c, err, "it cannot be used")
				return nil, nil
			}
			clear(secret)
		}
		if full := b.KeyPackage.Ref(id.sig.Suite()); bytes.Equal(full, ref) {
			return full, b
		}
	}
	return nil, nil
}

// unreadableLastResort logs and counts c, dev's current last-resort
// KeyPackage, which did not derive (err), saying what becomes of it.
func (m *Manager) unreadableLastResort(dev Device, c *lastResort, err error, outcome string) {
	m.cfg.Metrics.UnreadableLastResort.Inc()
	m.cfg.Log.Error().Err(err).Stringer("user_id", dev.UserID).Stringer("device_id", dev.DeviceID).
		Str("upload_txn", c.txn).Msg("Stored last-resort KeyPackage unreadable; " + outcome)
}

// replaceLastResort makes a new last-resort KeyPackage, retires the
// current one and uploads the new one as the fallback key, which the
// homeserver then hands out instead.
func (m *Manager) replaceLastResort(ctx context.Context, w *inbound.Work, id *identity, why string) error {
	q := w.Q
	n, err := m.makeLastResort(id.dev, id.sig)
	if err != nil {
		return err
	}
	defer n.wipe()
	if err := m.retireLastResort(ctx, q, id); err != nil {
		return err
	}
	txn, err := m.enqueueUpload(ctx, w.Out, id.dev, uploadBody{Fallback: []newKeyPackage{n.kp}})
	if err != nil {
		return err
	}
	cur, err := n.seal(m.cfg.Sealer, id.dev, txn)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `UPDATE puppet_device SET (`+lastResortColumns+`) = ($3, $4, $5, $6, $7)
		WHERE user_id = $1 AND device_id = $2`, append([]any{id.dev.UserID, id.dev.DeviceID}, cur.values()...)...); err != nil {
		return fmt.Errorf("store last-resort key package of %s: %w", id.dev, err)
	}
	id.lastResort = cur
	w.Count(m.cfg.Metrics.LastResortReplaced.WithLabelValues(why), 1)
	m.cfg.Log.Info().Stringer("user_id", id.dev.UserID).Stringer("device_id", id.dev.DeviceID).Str("why", why).
		Str("outbox_txn_id", txn).Msg("Last-resort KeyPackage replaced")
	return nil
}

// retireLastResort moves id's current last-resort KeyPackage to
// key_package, retired: a row keyed by its key id, its secret sealed to
// that row, as retired ones were stored before migration 0031. One that
// does not derive is dropped (logged and counted): it could not serve a
// Welcome, and keeping it must not keep the device from a new one.
func (m *Manager) retireLastResort(ctx context.Context, q database.Querier, id *identity) error {
	dev := id.dev
	if _, err := q.Exec(ctx, `UPDATE key_package SET retired_at = now() WHERE user_id = $1 AND device_id = $2
		AND last_resort AND retired_at IS NULL`, dev.UserID, dev.DeviceID); err != nil {
		return fmt.Errorf("retire last-resort key package of %s: %w", dev, err)
	}
	c := id.lastResort
	if c == nil {
		return nil
	}
	b, secret, err := c.derive(m.cfg.Sealer, dev, id.sig)
	if err != nil {
		m.unreadableLastResort(dev, c, err, "dropped on replacement")
		return nil
	}
	defer clear(secret)
	kid := keyID(b.KeyPackage.Ref(id.sig.Suite()))
	sealed, err := m.cfg.Sealer.Seal(purposeKeyPackage, keyPackageRow(dev, kid), secret)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `INSERT INTO key_package (user_id, device_id, key_id, last_resort, template, private, upload_txn,
		not_after, retired_at) VALUES ($1, $2, $3, true, $4, $5, $6, $7, now())`,
		dev.UserID, dev.DeviceID, kid, c.template, sealed, c.txn, c.notAfter); err != nil {
		return fmt.Errorf("retire last-resort key package of %s: %w", dev, err)
	}
	return nil
}

// legacyLastResort reads dev's current last-resort KeyPackage as stored
// in key_package before migration 0031: its upload row and expiry.
// pgx.ErrNoRows if there is none.
func legacyLastResort(ctx context.Context, q database.Querier, dev Device) (txn string, notAfter time.Time, err error) {
	err = q.QueryRow(ctx, `SELECT upload_txn, not_after FROM key_package WHERE user_id = $1 AND device_id = $2
		AND last_resort AND retired_at IS NULL`, dev.UserID, dev.DeviceID).Scan(&txn, &notAfter)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		err = fmt.Errorf("read last-resort key package of %s: %w", dev, err)
	}
	return txn, notAfter, err
}

// currentUpload returns the outbox row that uploads id's current
// last-resort KeyPackage; pgx.ErrNoRows if it has none.
func currentUpload(ctx context.Context, q database.Querier, id *identity) (string, error) {
	if id.lastResort != nil {
		return id.lastResort.txn, nil
	}
	txn, _, err := legacyLastResort(ctx, q, id.dev)
	return txn, err
}

// checkLastResort replaces a missing or expiring last-resort KeyPackage
// (one with less than a quarter of its lifetime left), so that the
// homeserver never hands out an expired one as the fallback.
func (m *Manager) checkLastResort(ctx context.Context, w *inbound.Work, id *identity) error {
	var notAfter time.Time
	if id.lastResort != nil {
		notAfter = id.lastResort.notAfter
	} else {
		var err error
		_, notAfter, err = legacyLastResort(ctx, w.Q, id.dev)
		if errors.Is(err, pgx.ErrNoRows) {
			return m.replaceLastResort(ctx, w, id, "missing")
		}
		if err != nil {
			return err
		}
	}
	if notAfter.Sub(m.cfg.Now()) < m.cfg.Lifetime/4 {
		return m.replaceLastResort(ctx, w, id, "expiring")
	}
	return nil
}

// dropFailedLastResort forgets id's current last-resort KeyPackage if the
// outbox gave its upload up: never published, no Welcome can name it, and
// checkLastResort then makes another.
func (m *Manager) dropFailedLastResort(ctx context.Context, q database.Querier, id *identity) error {
	if id.lastResort == nil {
		return nil
	}
	tag, err := q.Exec(ctx, `UPDATE puppet_device d SET (`+lastResortColumns+`) = (NULL, NULL, NULL, NULL, NULL)
		WHERE d.user_id = $1 AND d.device_id = $2 AND EXISTS (SELECT 1 FROM outbox o
			WHERE o.txn_id = d.last_resort_txn AND o.failed_at IS NOT NULL)`, id.dev.UserID, id.dev.DeviceID)
	if err != nil {
		return fmt.Errorf("prune last-resort key package of %s: %w", id.dev, err)
	}
	if tag.RowsAffected() > 0 {
		m.cfg.Log.Info().Stringer("user_id", id.dev.UserID).Stringer("device_id", id.dev.DeviceID).
			Str("upload_txn", id.lastResort.txn).Msg("Dropped the last-resort KeyPackage whose upload was given up")
		id.lastResort = nil
	}
	return nil
}
