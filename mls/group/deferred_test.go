package group

import (
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// TestOpenDeferred: OpenDeferred decrypts as Handle does and leaves the
// signature check, which fails for a message signed by a key not the
// sender's; anything but an application message is refused.
func TestOpenDeferred(t *testing.T) {
	gs := threeMembers(t, Config{})
	alice, bob, carol := gs[0], gs[1], gs[2]
	s := alice.pub.suite

	msg, err := bob.Protect([]byte("hello"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	r, check, err := alice.OpenDeferred(msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.ApplicationData) != "hello" || string(r.AuthenticatedData) != "aad" || r.Sender.LeafIndex != uint32(bob.LeafIndex()) {
		t.Fatalf("opened %q (aad %q) from leaf %d", r.ApplicationData, r.AuthenticatedData, r.Sender.LeafIndex)
	}
	if bad, err := s.VerifyBatch([]suite.SignatureCheck{check}); err != nil {
		t.Fatalf("the check of an honest message fails at %d: %v", bad, err)
	}
	if _, err := alice.Handle(msg); !errors.Is(err, ErrReplay) {
		t.Fatalf("the generation was not consumed: %v", err)
	}

	other, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	forger := New(bob.pub, &Private{leaf: bob.priv.leaf, signKey: other, path: bob.priv.path}, Config{})
	forged, err := forger.Protect([]byte("forged"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Handle(forged); !errors.Is(err, suite.ErrBadSignature) {
		t.Fatalf("Handle of a forgery: %v", err)
	}
	r, check, err = alice.OpenDeferred(forged)
	if err != nil || string(r.ApplicationData) != "forged" {
		t.Fatalf("OpenDeferred of a forgery: %v", err)
	}
	if bad, err := s.VerifyBatch([]suite.SignatureCheck{check}); bad != 0 || !errors.Is(err, suite.ErrBadSignature) {
		t.Fatalf("the check of a forgery: %d, %v", bad, err)
	}

	pc, err := bob.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.OpenDeferred(pc.Commit); !errors.Is(err, ErrNotApplication) {
		t.Fatalf("OpenDeferred of a commit: %v", err)
	}
	if _, _, err := alice.OpenDeferred([]byte{0, 1, 2}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("OpenDeferred of garbage: %v", err)
	}
}
