package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// TestBatch: every KeyPackage of a batch is derived again from the row,
// byte for byte as uploaded; a used one can no longer be derived while
// the others still can; the sealed state opens in its own row only.
func TestBatch(t *testing.T) {
	for _, id := range []suite.ID{1, 2, 3} {
		s, _ := suite.Lookup(id)
		t.Run(s.String(), func(t *testing.T) {
			m, sealer := offlineManager(t, id, 5, 1, 24*time.Hour)
			a := newTestDevice(t, s, "@a:hs", "A")
			const n = 5
			b, err := m.makeBatch(a.dev, a.sig, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.kps) != n || len(b.refs) != n*refPrefixLen {
				t.Fatalf("%d KeyPackages, %d ref bytes", len(b.kps), len(b.refs))
			}
			sealed, err := sealer.Seal(purposeKeyPackageBatch, batchRow(a.dev, "txn1"), b.state)
			if err != nil {
				t.Fatal(err)
			}
			derive := func(sealed []byte, i int) *batchHit {
				t.Helper()
				hit, err := m.deriveFromBatch(a.dev, a.sig, "txn1", b.template, sealed, i)
				if err != nil {
					t.Fatal(err)
				}
				return hit
			}
			for i, kp := range b.kps {
				hit := derive(sealed, i)
				if hit == nil {
					t.Fatalf("KeyPackage %d not derived", i)
				}
				var msg message.MLSMessage
				if err := codec.Unmarshal(kp.wire, &msg, "upload"); err != nil {
					t.Fatal(err)
				}
				if keyID(hit.ref) != kp.keyID || !bytes.Equal(codec.Marshal(&hit.bundle.KeyPackage), codec.Marshal(msg.KeyPackage)) {
					t.Fatalf("KeyPackage %d derived again is not the uploaded one", i)
				}
				if err := hit.bundle.Check(); err != nil {
					t.Fatal(err)
				}
				ref, _ := base64.RawURLEncoding.DecodeString(kp.keyID)
				if !bytes.Equal(ref[:refPrefixLen], b.refs[i*refPrefixLen:(i+1)*refPrefixLen]) {
					t.Fatalf("ref prefix %d differs", i)
				}
			}

			// Use KeyPackage 2: its index is punctured in the state kept.
			used := derive(sealed, 2)
			after, err := sealer.Seal(purposeKeyPackageBatch, batchRow(a.dev, "txn1"), used.after)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if hit := derive(after, i); (hit == nil) != (i == 2) {
					t.Fatalf("after using KeyPackage 2, KeyPackage %d derived: %v", i, hit != nil)
				}
			}
			if _, err := m.deriveFromBatch(a.dev, a.sig, "txn2", b.template, sealed, 0); !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("a batch's state opened in another row: %v", err)
			}
			if _, err := m.deriveFromBatch(a.dev, a.sig, "txn1", b.template[:len(b.template)-1], sealed, 0); err == nil {
				t.Fatal("a truncated template accepted")
			}
		})
	}
	for n, want := range map[int]int{1: 1, 2: 1, 3: 2, 50: 6, 64: 6, 65: 7, 500: 9} {
		if got := indexBits(n); got != want {
			t.Errorf("indexBits(%d) = %d, want %d", n, got, want)
		}
	}
}
