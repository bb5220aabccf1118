package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/reseal"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
	"github.com/mls-appservice/mls-appservice/migrations"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// TestMigrationShortensRefPrefixes: migration 0022 rewrites a batch row
// stored with 4 bytes of each KeyPackageRef to 2 bytes of each, in index
// order, and every KeyPackage of the batch is then found by its whole ref
// as before; a ref that is not the batch's is not.
func TestMigrationShortensRefPrefixes(t *testing.T) {
	ctx := context.Background()
	db, m, sealer, _, a := beforeMigration(ctx, t, "0022")
	const n = 5
	b, err := m.makeBatch(a.dev, a.sig, n)
	if err != nil {
		t.Fatal(err)
	}
	refs := make([][]byte, n)
	var old []byte // the row as written before migration 0022
	for i, kp := range b.kps {
		if refs[i], err = base64.RawURLEncoding.DecodeString(kp.keyID); err != nil {
			t.Fatal(err)
		}
		old = append(old, refs[i][:4]...)
	}
	sealed, err := sealer.Seal(purposeKeyPackageBatch, batchRow(a.dev, "txn1"), b.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO puppet (user_id) VALUES ($1)`,
		`INSERT INTO puppet_device (user_id, device_id) VALUES ($1, $2)`,
		`INSERT INTO device_identity (user_id, device_id, suite, signature_key, device_keys_txn) VALUES ($1, $2, 1, '\x00', 'txn1')`,
	} {
		args := []any{a.dev.UserID, a.dev.DeviceID}[:bytes.Count([]byte(q), []byte("$"))]
		if _, err := db.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO key_package_batch (user_id, device_id, upload_txn, template, refs, secrets, not_after)
		VALUES ($1, $2, 'txn1', $3, $4, $5, now() + interval '1 day')`, a.dev.UserID, a.dev.DeviceID, b.template, old, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	var got []byte
	if err := db.QueryRow(ctx, `SELECT refs FROM key_package_batch WHERE upload_txn = 'txn1'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.refs) || len(got) != n*refPrefixLen {
		t.Fatalf("refs after migration %x, want %x (as a batch made now)", got, b.refs)
	}
	id := &identity{dev: a.dev, sig: a.sig}
	for i, ref := range refs {
		hit, err := m.findInBatches(ctx, db, id, [][]byte{ref}, false)
		if err != nil {
			t.Fatal(err)
		}
		if hit == nil || !bytes.Equal(hit.ref, ref) {
			t.Fatalf("KeyPackage %d not found after migration", i)
		}
		hit.wipe()
	}
	other := bytes.Clone(refs[0])
	other[len(other)-1] ^= 1 // same prefix, another ref: derived, then refused
	if hit, err := m.findInBatches(ctx, db, id, [][]byte{other}, false); err != nil || hit != nil {
		t.Fatalf("a ref sharing a prefix found %v (%v)", hit != nil, err)
	}
}

// TestMigrationMovesCrossSigning: migration 0023 moves a puppet's
// cross-signing keys, each sealed on its own, into its puppet row, where
// they open as the same keys with their upload recorded; a puppet made
// since stores only its master key, and its self-signing key, derived,
// comes out the same at each load.
func TestMigrationMovesCrossSigning(t *testing.T) {
	ctx := context.Background()
	db := testdb.OpenBefore(ctx, t, "0023")
	m, _ := offlineManager(t, 1, 5, 1, 24*time.Hour)
	k0, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.NewSealer(k0)
	if err != nil {
		t.Fatal(err)
	}
	m.cfg.Sealer = sealer
	old, fresh := idUser("@old:hs"), idUser("@new:hs")
	master, self := newEd25519(t), newEd25519(t)
	var sealed [2][]byte
	for i, k := range []struct {
		p    seal.Purpose
		seed []byte
	}{{purposeMasterKey, master.Seed()}, {purposeSelfSigningKey, self.Seed()}} {
		if sealed[i], err = sealer.Seal(k.p, seal.Row("puppet_cross_signing", string(old)), k.seed); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []id.UserID{old, fresh} {
		if _, err := db.Exec(ctx, `INSERT INTO puppet (user_id) VALUES ($1)`, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO puppet_cross_signing (user_id, master_key, self_signing_key, uploaded_at)
		VALUES ($1, $2, $3, now())`, old, sealed[0], sealed[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	cs, err := m.loadCrossSigning(ctx, db, old)
	if err != nil || cs == nil {
		t.Fatalf("keys of a puppet made before: %v, %v", cs, err)
	}
	if !cs.master.Equal(master) || !cs.self.Equal(self) || !cs.uploaded {
		t.Fatalf("keys of a puppet made before changed in the move (uploaded %v)", cs.uploaded)
	}

	if cs, err := m.loadCrossSigning(ctx, db, fresh); err != nil || cs != nil {
		t.Fatalf("a puppet without keys has %v (%v)", cs, err)
	}
	if err := m.makeCrossSigning(ctx, db, fresh); err != nil {
		t.Fatal(err)
	}
	a, err := m.loadCrossSigning(ctx, db, fresh)
	if err != nil || a == nil {
		t.Fatal(err)
	}
	if err := m.makeCrossSigning(ctx, db, fresh); err != nil { // it has keys: nothing changes
		t.Fatal(err)
	}
	b, err := m.loadCrossSigning(ctx, db, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !a.master.Equal(b.master) || !a.self.Equal(b.self) || a.master.Equal(a.self) || a.uploaded {
		t.Fatal("a new puppet's keys are not stable, or its two keys are one")
	}
	var selfStored []byte
	if err := db.QueryRow(ctx, `SELECT self_signing_key FROM puppet WHERE user_id = $1`, fresh).Scan(&selfStored); err != nil || selfStored != nil {
		t.Fatalf("a new puppet stores a self-signing key (%v)", err)
	}
	if err := m.makeCrossSigning(ctx, db, idUser("@nobody:hs")); err == nil {
		t.Fatal("keys made for a puppet that does not exist")
	}
	// keys reseal opens the moved values under their old binding and
	// seals them under a new key: both masters, the old self-signing key.
	k, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.Sealer, err = seal.NewSealer(k); err != nil {
		t.Fatal(err)
	}
	if _, err := m.loadCrossSigning(ctx, db, old); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("opened under another key: %v", err)
	}
	if m.cfg.Sealer, err = seal.NewSealer(k, k0); err != nil {
		t.Fatal(err)
	}
	if n, err := reseal.Run(ctx, db, m.cfg.Sealer, SealedColumns()); err != nil || n != 3 {
		t.Fatalf("reseal under a new key: %d values, %v; want 3", n, err)
	}
	if m.cfg.Sealer, err = seal.NewSealer(k); err != nil {
		t.Fatal(err)
	}
	for _, u := range []id.UserID{old, fresh} {
		if cs, err := m.loadCrossSigning(ctx, db, u); err != nil || cs == nil {
			t.Fatalf("keys of %s after reseal: %v", u, err)
		}
	}
}

// TestMigrationMovesIdentity: migration 0024 moves a device's identity
// into its puppet_device row, where its signature key opens as the same
// key with its upload state and counters; a device without an identity
// still has none; a row with half an identity is refused; and deleting a
// device deletes its KeyPackages, as deleting its identity did.
func TestMigrationMovesIdentity(t *testing.T) {
	ctx := context.Background()
	db, m, sealer, _, a := beforeMigration(ctx, t, "0024")
	bare := Device{UserID: a.dev.UserID, DeviceID: "BARE"}
	sealed, err := sealer.Seal(purposeSignatureKey, identityRow(a.dev), a.sig.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	execAll(ctx, t, db, []statement{
		{`INSERT INTO puppet (user_id) VALUES ($1)`, []any{a.dev.UserID}},
		{`INSERT INTO puppet_device (user_id, device_id) VALUES ($1, $2), ($1, $3)`, []any{a.dev.UserID, a.dev.DeviceID, bare.DeviceID}},
		{`INSERT INTO device_identity (user_id, device_id, suite, signature_key, device_keys_txn, device_keys_sent_at,
			otk_sent, otk_claimed) VALUES ($1, $2, 1, $3, 'txn1', now(), 50, 7)`, []any{a.dev.UserID, a.dev.DeviceID, sealed}},
		{`INSERT INTO key_package_batch (user_id, device_id, upload_txn, template, refs, secrets, not_after)
			VALUES ($1, $2, 'txn1', '\x00', '\x0102', '\x00', now())`, []any{a.dev.UserID, a.dev.DeviceID}},
	})
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	id, err := m.loadIdentity(ctx, db, a.dev)
	if err != nil || id == nil {
		t.Fatalf("identity after the move: %v, %v", id, err)
	}
	if !bytes.Equal(id.sig.Bytes(), a.sig.Bytes()) || id.deviceKeysTxn != "txn1" || !id.deviceKeysSent || id.crossSigned ||
		id.otkSent != 50 || id.otkClaimed != 7 {
		t.Fatalf("identity changed in the move: %+v", id)
	}
	if id, err := m.loadIdentity(ctx, db, bare); err != nil || id != nil {
		t.Fatalf("a device without an identity has %v (%v)", id, err)
	}
	if _, err := db.Exec(ctx, `UPDATE puppet_device SET signature_key = '\x00' WHERE device_id = 'BARE'`); err == nil {
		t.Fatal("half an identity stored")
	}
	if _, err := db.Exec(ctx, `DELETE FROM puppet_device WHERE device_id = $1`, a.dev.DeviceID); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM key_package_batch`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d batches of a deleted device left (%v)", left, err)
	}
}

// TestMigrationKeepsLegacyLastResort: a current last-resort KeyPackage
// stored in key_package before migration 0031 stays in use: found for a
// Welcome, not replaced as missing, and when a Welcome consumes it,
// retired in place while its replacement goes to the device's row. That
// one, consumed in turn, moves to key_package under its key id, retired,
// and both retired ones are still found; a retired one consumed again
// replaces nothing.
func TestMigrationKeepsLegacyLastResort(t *testing.T) {
	ctx := context.Background()
	db, m, sealer, s, a := beforeMigration(ctx, t, "0031")
	sig, err := sealer.Seal(purposeSignatureKey, identityRow(a.dev), a.sig.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	// A last-resort KeyPackage as stored before: a row of its own, its
	// secret sealed to its key id.
	legacy, err := m.makeLastResort(a.dev, a.sig)
	if err != nil {
		t.Fatal(err)
	}
	legacyRef, err := base64.RawURLEncoding.DecodeString(legacy.kp.keyID)
	if err != nil {
		t.Fatal(err)
	}
	private, err := sealer.Seal(purposeKeyPackage, keyPackageRow(a.dev, legacy.kp.keyID), legacy.secret)
	if err != nil {
		t.Fatal(err)
	}
	execAll(ctx, t, db, []statement{
		{`INSERT INTO puppet (user_id) VALUES ($1)`, []any{a.dev.UserID}},
		{`INSERT INTO puppet_device (user_id, device_id, suite, signature_key, device_keys_txn) VALUES ($1, $2, 1, $3, 'txn1')`,
			[]any{a.dev.UserID, a.dev.DeviceID, sig}},
		{`INSERT INTO key_package (user_id, device_id, key_id, last_resort, template, private, upload_txn, not_after)
			VALUES ($1, $2, $3, true, $4, $5, 'txn1', $6)`,
			[]any{a.dev.UserID, a.dev.DeviceID, legacy.kp.keyID, legacy.stored.template, private, legacy.stored.notAfter}},
	})
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	found := func(ref []byte) bool {
		t.Helper()
		got, _, err := m.FindKeyPackage(ctx, db, a.dev, [][]byte{{0xff}, ref})
		if errors.Is(err, ErrUnknownKeyPackage) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Equal(got, ref)
	}
	replaced := m.cfg.Metrics.LastResortReplaced
	count := func() float64 {
		return testutil.ToFloat64(replaced.WithLabelValues("consumed")) + testutil.ToFloat64(replaced.WithLabelValues("missing")) +
			testutil.ToFloat64(replaced.WithLabelValues("expiring"))
	}
	current := func() *identity {
		t.Helper()
		id, err := m.loadIdentity(ctx, db, a.dev)
		if err != nil || id == nil {
			t.Fatalf("identity: %v, %v", id, err)
		}
		return id
	}

	if !found(legacyRef) {
		t.Fatal("the last-resort KeyPackage stored before migration 0031 is not found")
	}
	commitWork(ctx, t, db, func(w *inbound.Work) error { return m.checkLastResort(ctx, w, current()) })
	if n := count(); n != 0 {
		t.Fatalf("the legacy last-resort KeyPackage was replaced (%v) while current", n)
	}
	commitWork(ctx, t, db, func(w *inbound.Work) error { return m.Consume(ctx, w, a.dev, legacyRef) })
	if n := count(); n != 1 {
		t.Fatalf("%v replacements after its Welcome, want 1", n)
	}
	id := current()
	if id.lastResort == nil {
		t.Fatal("the replacement is not in the device's row")
	}
	b, secret, err := id.lastResort.derive(sealer, a.dev, a.sig)
	if err != nil {
		t.Fatal(err)
	}
	clear(secret)
	secondRef := b.KeyPackage.Ref(s)
	if !found(secondRef) || !found(legacyRef) {
		t.Fatal("the replacement or the retired one is not found")
	}
	commitWork(ctx, t, db, func(w *inbound.Work) error { return m.Consume(ctx, w, a.dev, secondRef) })
	if n := count(); n != 2 {
		t.Fatalf("%v replacements after the second Welcome, want 2", n)
	}
	var rows int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM key_package WHERE user_id = $1 AND device_id = $2 AND key_id = $3
		AND last_resort AND retired_at IS NOT NULL`, a.dev.UserID, a.dev.DeviceID, keyID(secondRef)).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("the replaced one has %d retired rows (%v), want 1", rows, err)
	}
	if third := current().lastResort; third == nil || third.txn == id.lastResort.txn {
		t.Fatal("the device's row still holds the replaced one")
	}
	if !found(secondRef) || !found(legacyRef) {
		t.Fatal("a retired last-resort KeyPackage is not found within its grace")
	}
	commitWork(ctx, t, db, func(w *inbound.Work) error { return m.Consume(ctx, w, a.dev, secondRef) })
	commitWork(ctx, t, db, func(w *inbound.Work) error { return m.Consume(ctx, w, a.dev, legacyRef) })
	if n := count(); n != 2 {
		t.Fatalf("%v replacements after retired ones were consumed again, want 2", n)
	}
}

// statement is SQL and its arguments, for execAll.
type statement struct {
	sql  string
	args []any
}

// execAll runs each statement on db, failing the test at the first error.
func execAll(ctx context.Context, t *testing.T, db database.Querier, stmts []statement) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%.60s: %v", q.sql, err)
		}
	}
}

// beforeMigration is the setting of a migration's test: a database
// migrated to the version before first, a manager of suite 1 without a
// homeserver, and a device @a:hs|A with its signature key.
func beforeMigration(ctx context.Context, t *testing.T, first string) (*database.DB, *Manager, *seal.Sealer, *suite.Suite, testDevice) {
	t.Helper()
	db := testdb.OpenBefore(ctx, t, first)
	m, sealer := offlineManager(t, 1, 5, 1, 24*time.Hour)
	s, _ := suite.Lookup(1)
	return db, m, sealer, s, newTestDevice(t, s, "@a:hs", "A")
}

// commitWork runs f in a transaction on db as a work item would, and
// commits it with its outbox rows.
func commitWork(ctx context.Context, t *testing.T, db *database.DB, f func(w *inbound.Work) error) {
	t.Helper()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	w := &inbound.Work{Q: tx, Out: database.NewProducer(tx)}
	if err := f(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Out.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Committed()
}
