package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
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

// TestCommitSignaturesTogether: a member's commit's own signature and its
// path leaf's are verified in one batch, and a fault in either is
// reported as when they were checked one by one: the content's first.
func TestCommitSignaturesTogether(t *testing.T) {
	gs := threeMembers(t, Config{})
	alice, bob := gs[0], gs[1]
	honest, err := bob.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	damage := func(leaf, content bool) []byte {
		m, err := message.ParseMLSMessage(honest.Commit)
		if err != nil {
			t.Fatal(err)
		}
		ac := m.PublicMessage.AuthenticatedContent()
		if leaf {
			l := &ac.Content.Commit.Path.LeafNode
			l.Signature = bytes.Clone(l.Signature)
			l.Signature[5] ^= 1
			signed, err := framing.Sign(bob.priv.signKey, ac.WireFormat, &ac.Content, &bob.pub.ctx)
			if err != nil {
				t.Fatal(err)
			}
			ac.Auth.Signature = signed.Auth.Signature
		}
		if content {
			ac.Auth.Signature = bytes.Clone(ac.Auth.Signature)
			ac.Auth.Signature[3] ^= 1
		}
		return retag(t, bob, ac)
	}
	for _, tc := range []struct {
		name        string
		msg         []byte
		openErr     error // from open, with the content's signature
		pathSigned  bool
		handleErr   error // from Handle
		invalidPath bool  // Handle's error is ErrInvalidPath
	}{
		{"honest", honest.Commit, nil, true, nil, false},
		{"path leaf", damage(true, false), nil, false, tree.ErrBadLeafSignature, true},
		{"content", damage(false, true), suite.ErrBadSignature, false, suite.ErrBadSignature, false},
		{"both", damage(true, true), suite.ErrBadSignature, false, suite.ErrBadSignature, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := message.ParseMLSMessage(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			o, err := alice.pub.open(m)
			if !errors.Is(err, tc.openErr) || (tc.openErr == nil) != (err == nil) {
				t.Fatalf("open: %v, want %v", err, tc.openErr)
			}
			if o.pathSigned != tc.pathSigned {
				t.Fatalf("pathSigned %v, want %v", o.pathSigned, tc.pathSigned)
			}
			data, _ := alice.MarshalBinary()
			g, err := UnmarshalGroup(data, alice.Config())
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.Handle(tc.msg)
			if !errors.Is(err, tc.handleErr) || (tc.handleErr == nil) != (err == nil) {
				t.Fatalf("Handle: %v, want %v", err, tc.handleErr)
			}
			if errors.Is(err, ErrInvalidPath) != tc.invalidPath {
				t.Fatalf("Handle: %v, want an invalid path: %v", err, tc.invalidPath)
			}
		})
	}
}
