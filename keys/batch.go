package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/pprf"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// refPrefixLen is how much of each KeyPackageRef a batch row keeps: enough
// to find the index a Welcome names among a device's few batches. The
// whole ref is checked on the KeyPackage derived again, so two refs that
// share a prefix cost a derivation, never a wrong key. With 2 bytes, a
// Welcome's ref matches one of a device's 50 prefixes by chance with
// probability 50/2^16: a Welcome of 10,000 new members costs each of our
// devices it names about 8 needless derivations of 79 µs each
// (BenchmarkDeriveFromBatch, suite 1), one of a few members almost never
// one; and a stock costs 100
// bytes of prefixes (migration 0022 cut them from 4 bytes).
const refPrefixLen = 2

// newBatch is the one-time KeyPackages of one upload, just made.
type newBatch struct {
	kps      []newKeyPackage // key ids and encodings for the upload
	template []byte          // the shared fields (group.NewKeyPackageTemplate), encoded
	refs     []byte          // refPrefixLen bytes of each KeyPackageRef, in index order
	state    []byte          // the PPRF, encoded; sealed once the upload's row is known
	notAfter time.Time
}

// wipe zeroes the batch's unsealed secret.
func (b *newBatch) wipe() { clear(b.state) }

func batchRow(dev Device, uploadTxn string) seal.Binding {
	return seal.Row("key_package_batch", string(dev.UserID), string(dev.DeviceID), uploadTxn)
}

// indexBits is the depth of a PPRF with a leaf for each of n KeyPackages.
func indexBits(n int) int { return max(1, bits.Len(uint(n-1))) }

// keyPackageTemplate is what every KeyPackage dev makes now shares: its
// credential and capabilities, valid for the configured lifetime (from an
// hour ago, for clocks behind ours).
func (m *Manager) keyPackageTemplate(dev Device, sig *suite.SignaturePrivateKey) (*message.KeyPackage, time.Time, error) {
	now := m.cfg.Now()
	notAfter := now.Add(m.cfg.Lifetime).Truncate(time.Second)
	lifetime := &message.Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(notAfter.Unix())}
	t, err := group.NewKeyPackageTemplate(dev.Credential(), sig, &group.KeyPackageOptions{Lifetime: lifetime})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("key package for %s: %w", dev, err)
	}
	return t, notAfter, nil
}

// makeBatch makes n one-time KeyPackages of dev whose secrets are the
// outputs 0..n-1 of one fresh indexed PPRF (package doc, "Batches").
func (m *Manager) makeBatch(dev Device, sig *suite.SignaturePrivateKey, n int) (*newBatch, error) {
	s := sig.Suite()
	template, notAfter, err := m.keyPackageTemplate(dev, sig)
	if err != nil {
		return nil, err
	}
	root := make([]byte, s.HashSize())
	defer clear(root)
	if _, err := rand.Read(root); err != nil {
		return nil, fmt.Errorf("key packages for %s: %w", dev, err)
	}
	// Deriving punctures: one PPRF derives the KeyPackages' secrets and
	// is wiped, an identical one is kept.
	gen, err := pprf.NewIndexed(s, root, indexBits(n))
	if err != nil {
		return nil, fmt.Errorf("key packages for %s: %w", dev, err)
	}
	defer gen.Wipe()
	keep, err := pprf.NewIndexed(s, root, indexBits(n))
	if err != nil {
		return nil, fmt.Errorf("key packages for %s: %w", dev, err)
	}
	defer keep.Wipe()
	b := &newBatch{template: encodeTemplate(template, dev), refs: make([]byte, 0, n*refPrefixLen), notAfter: notAfter}
	for i := range n {
		secret, err := gen.EvaluateIndex(uint64(i))
		if err != nil {
			return nil, fmt.Errorf("key package %d for %s: %w", i, dev, err)
		}
		kp, err := group.DeriveKeyPackage(template, secret, sig)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("key package %d for %s: %w", i, dev, err)
		}
		ref := kp.KeyPackage.Ref(s)
		b.refs = append(b.refs, ref[:refPrefixLen]...)
		b.kps = append(b.kps, newKeyPackage{keyID: keyID(ref), wire: uploadForm(&kp.KeyPackage)})
	}
	if b.state, err = keep.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("key packages for %s: %w", dev, err)
	}
	m.cfg.Metrics.Generated.WithLabelValues("one_time").Add(float64(n))
	return b, nil
}

// insertBatch stores b, uploaded by the outbox row uploadTxn, and wipes
// its unsealed state.
func (m *Manager) insertBatch(ctx context.Context, q database.Querier, dev Device, uploadTxn string, b *newBatch) error {
	defer b.wipe()
	sealed, err := m.cfg.Sealer.Seal(purposeKeyPackageBatch, batchRow(dev, uploadTxn), b.state)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `INSERT INTO key_package_batch (user_id, device_id, upload_txn, template, refs, secrets, not_after)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, dev.UserID, dev.DeviceID, uploadTxn, b.template, b.refs, sealed, b.notAfter); err != nil {
		return fmt.Errorf("store %d key packages of %s: %w", len(b.kps), dev, err)
	}
	return nil
}

// batchHit is a KeyPackage of a stored batch, derived again.
type batchHit struct {
	uploadTxn string
	ref       []byte
	bundle    *group.KeyPackageBundle
	// after is the batch's PPRF punctured at the KeyPackage's index,
	// encoded: what the row holds once the KeyPackage is consumed.
	after []byte
	// last reports that every KeyPackage of the batch is then used.
	last bool
}

// findInBatches returns the KeyPackage of dev's batches that the first
// possible of refs names, or nil if none does. lock takes the batch rows
// FOR UPDATE, for a caller that changes them. Errors are the database's.
func (m *Manager) findInBatches(ctx context.Context, q database.Querier, id *identity, refs [][]byte, lock bool) (*batchHit, error) {
	dev := id.dev
	query := `SELECT upload_txn, template, refs, secrets, used FROM key_package_batch WHERE user_id = $1 AND device_id = $2
		ORDER BY created_at, upload_txn`
	if lock {
		query += ` FOR UPDATE`
	}
	rows, err := q.Query(ctx, query, dev.UserID, dev.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("read key packages of %s: %w", dev, err)
	}
	type batch struct {
		txn                    string
		template, refs, sealed []byte
		used                   int
	}
	var batches []batch
	var b batch
	if _, err := pgx.ForEachRow(rows, []any{&b.txn, &b.template, &b.refs, &b.sealed, &b.used}, func() error {
		batches = append(batches, b)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read key packages of %s: %w", dev, err)
	}
	// A row that does not open or decode is skipped, logged and counted
	// once: it must not keep the device from joining by its other
	// KeyPackages.
	unreadable := map[string]bool{}
	for _, ref := range refs {
		if len(ref) < refPrefixLen {
			continue
		}
		for _, b := range batches {
			for i := 0; i+refPrefixLen <= len(b.refs) && !unreadable[b.txn]; i += refPrefixLen {
				if !bytes.Equal(b.refs[i:i+refPrefixLen], ref[:refPrefixLen]) {
					continue
				}
				hit, err := m.deriveFromBatch(dev, id.sig, b.txn, b.template, b.sealed, i/refPrefixLen)
				if err != nil {
					unreadable[b.txn] = true
					m.cfg.Metrics.UnreadableBatches.Inc()
					m.cfg.Log.Error().Err(err).Stringer("user_id", dev.UserID).Stringer("device_id", dev.DeviceID).
						Str("upload_txn", b.txn).Msg("Stored KeyPackage batch unreadable; its KeyPackages cannot be used")
					continue
				}
				if hit != nil && bytes.Equal(hit.ref, ref) {
					hit.last = b.used+1 >= len(b.refs)/refPrefixLen
					return hit, nil
				}
				hit.wipe()
			}
		}
	}
	return nil, nil
}

// deriveFromBatch derives KeyPackage index of a stored batch; nil if it
// was used (its index is punctured). A row that does not open or decode
// is an error naming it: stored state is checked, never trusted.
func (m *Manager) deriveFromBatch(dev Device, sig *suite.SignaturePrivateKey, txn string, template, sealed []byte, index int) (*batchHit, error) {
	where := fmt.Sprintf("key package batch %s of %s", txn, dev)
	plain, err := m.cfg.Sealer.Open(purposeKeyPackageBatch, batchRow(dev, txn), sealed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var p pprf.PPRF
	err = p.UnmarshalBinary(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer p.Wipe()
	if p.Suite().ID() != sig.Suite().ID() {
		return nil, fmt.Errorf("%s: secrets of %v, signature key of %v", where, p.Suite(), sig.Suite())
	}
	t, err := decodeTemplate(template, dev)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	secret, err := p.EvaluateIndex(uint64(index))
	if errors.Is(err, pprf.ErrPunctured) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	kp, err := group.DeriveKeyPackage(t, secret, sig)
	clear(secret)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	after, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &batchHit{uploadTxn: txn, ref: kp.KeyPackage.Ref(sig.Suite()), bundle: kp, after: after}, nil
}

// wipe zeroes the punctured state a hit that is not consumed carries; h
// may be nil.
func (h *batchHit) wipe() {
	if h != nil {
		clear(h.after)
	}
}

// consumeFromBatch punctures hit's index in its batch, or deletes the
// batch when it was the last unused KeyPackage.
func (m *Manager) consumeFromBatch(ctx context.Context, q database.Querier, dev Device, hit *batchHit) error {
	defer hit.wipe()
	if hit.last {
		if _, err := q.Exec(ctx, `DELETE FROM key_package_batch WHERE user_id = $1 AND device_id = $2 AND upload_txn = $3`,
			dev.UserID, dev.DeviceID, hit.uploadTxn); err != nil {
			return fmt.Errorf("consume key package of %s: %w", dev, err)
		}
		return nil
	}
	sealed, err := m.cfg.Sealer.Seal(purposeKeyPackageBatch, batchRow(dev, hit.uploadTxn), hit.after)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `UPDATE key_package_batch SET secrets = $4, used = used + 1
		WHERE user_id = $1 AND device_id = $2 AND upload_txn = $3`, dev.UserID, dev.DeviceID, hit.uploadTxn, sealed); err != nil {
		return fmt.Errorf("consume key package of %s: %w", dev, err)
	}
	return nil
}
