package group

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func newBundle(t testing.TB, id suite.ID, name string) *KeyPackageBundle {
	t.Helper()
	s, err := suite.Lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := NewKeyPackage(message.BasicCredential([]byte(name)), priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// checkAgree fails unless every state has the same epoch authenticator
// and tree hash.
func checkAgree(t testing.TB, gs []*Group) {
	t.Helper()
	for i, g := range gs {
		if g == nil {
			continue
		}
		for _, h := range gs[i+1:] {
			if h == nil {
				continue
			}
			if g.Epoch() != h.Epoch() || !bytes.Equal(g.EpochAuthenticator(), h.EpochAuthenticator()) || !bytes.Equal(g.TreeHash(), h.TreeHash()) {
				t.Fatalf("members %d and %d disagree at epochs %d/%d", g.LeafIndex(), h.LeafIndex(), g.Epoch(), h.Epoch())
			}
		}
	}
}

func mustHandle(t testing.TB, g *Group, msg []byte) *Received {
	t.Helper()
	r, err := g.Handle(msg)
	if err != nil {
		t.Fatalf("member %d: %v", g.LeafIndex(), err)
	}
	return r
}

func name(i int) string { return fmt.Sprintf("member-%d", i) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }
