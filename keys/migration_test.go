package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/internal/testdb"
	"github.com/mls-appservice/mls-appservice/migrations"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// TestMigrationShortensRefPrefixes: migration 0022 rewrites a batch row
// stored with 4 bytes of each KeyPackageRef to 2 bytes of each, in index
// order, and every KeyPackage of the batch is then found by its whole ref
// as before; a ref that is not the batch's is not.
func TestMigrationShortensRefPrefixes(t *testing.T) {
	ctx := context.Background()
	db := testdb.OpenBefore(ctx, t, "0022")
	m, sealer := offlineManager(t, 1, 5, 1, 24*time.Hour)
	s, _ := suite.Lookup(1)
	a := newTestDevice(t, s, "@a:hs", "A")
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
