package keyschedule

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/pprf"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func dmlsEpoch(t *testing.T, s *suite.Suite) Epoch {
	t.Helper()
	d, err := Derive(s, Input{InitSecret: filled(s.HashSize(), 3), GroupContext: []byte("ctx"), Scheme: SchemeDMLS})
	if err != nil {
		t.Fatal(err)
	}
	if d.Epoch.Scheme != SchemeDMLS {
		t.Fatalf("scheme %v", d.Epoch.Scheme)
	}
	return d.Epoch
}

// Under DMLS the epoch keeps a PPRF: each commit confirmation gives its own
// init_secret, once; the returned Epoch is punctured and the old one is
// left as it was.
func TestDMLSChildInitPunctures(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	nh := s.HashSize()
	e := dmlsEpoch(t, s)
	rfc, err := Derive(s, Input{InitSecret: filled(nh, 3), GroupContext: []byte("ctx")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.ID, rfc.Epoch.ID) || !bytes.Equal(e.EpochAuthenticator, rfc.Epoch.EpochAuthenticator) {
		t.Fatal("the scheme changed secrets other than the kept init secret")
	}
	if bytes.Equal(e.InitSecret, rfc.Epoch.InitSecret) {
		t.Fatal("DMLS keeps the RFC 9420 init_secret")
	}

	a := Child{CommitConfirmation: filled(nh, 1), GroupContext: []byte("parent ctx")}
	b := Child{CommitConfirmation: filled(nh, 2), GroupContext: []byte("parent ctx")}
	before := bytes.Clone(e.InitSecret)
	ia, e1, err := e.NextInitSecret(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.InitSecret, before) {
		t.Fatal("NextInitSecret modified the receiver")
	}
	if len(ia) != nh {
		t.Fatalf("init secret of %d bytes", len(ia))
	}
	// The old epoch could derive the same child again; the new one cannot.
	again, _, err := e.NextInitSecret(a)
	if err != nil || !bytes.Equal(again, ia) {
		t.Fatalf("unpunctured epoch: %x, %v", again, err)
	}
	if _, _, err := e1.NextInitSecret(a); !errors.Is(err, pprf.ErrPunctured) {
		t.Fatalf("second derivation of one child: %v, want ErrPunctured", err)
	}
	ib, e2, err := e1.NextInitSecret(b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ia, ib) {
		t.Fatal("two commits gave one init secret")
	}
	// The context is bound too.
	ic, _, err := e1.NextInitSecret(Child{CommitConfirmation: b.CommitConfirmation, GroupContext: []byte("other")})
	if err != nil || bytes.Equal(ic, ib) {
		t.Fatalf("group context not bound: %v", err)
	}
	// Punctured state survives storage.
	enc, err := e2.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var dec Epoch
	if err := dec.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	if dec.Scheme != SchemeDMLS {
		t.Fatalf("decoded scheme %v", dec.Scheme)
	}
	for _, c := range []Child{a, b} {
		if _, _, err := dec.NextInitSecret(c); !errors.Is(err, pprf.ErrPunctured) {
			t.Fatalf("decoded epoch derives a used child: %v", err)
		}
	}
}

func TestDMLSRejectsBadInput(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	e := dmlsEpoch(t, s)
	if _, _, err := e.NextInitSecret(Child{GroupContext: []byte("x")}); !errors.Is(err, pprf.ErrInputLength) {
		t.Fatalf("no commit confirmation: %v", err)
	}
	// A stored kept state for another suite, or garbage, is refused.
	other, _ := suite.Lookup(suite.X448AES256GCMSHA512Ed448)
	e2 := dmlsEpoch(t, other)
	mixed := e
	mixed.InitSecret = e2.InitSecret
	enc, _ := mixed.MarshalBinary()
	var dec Epoch
	if err := dec.UnmarshalBinary(enc); !errors.Is(err, pprf.ErrInvalidState) {
		t.Fatalf("kept state of another suite: %v", err)
	}
	mixed.InitSecret = filled(s.HashSize(), 1)
	enc, _ = mixed.MarshalBinary()
	if err := dec.UnmarshalBinary(enc); err == nil {
		t.Fatal("RFC 9420 init secret accepted as DMLS kept state")
	}
	if SchemeDMLS.String() != "dmls" || SchemeRFC9420.String() != "rfc9420" {
		t.Fatal("scheme names")
	}
}
