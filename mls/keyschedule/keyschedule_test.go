package keyschedule

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func filled(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func testEpoch(t testing.TB, s *suite.Suite) Derived {
	t.Helper()
	nh := s.HashSize()
	d, err := Derive(s, Input{
		InitSecret:   filled(nh, 1),
		CommitSecret: filled(nh, 2),
		GroupContext: []byte("group context"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestJoinMatchesDerive(t *testing.T) {
	for _, s := range suite.All() {
		d := testEpoch(t, s)
		j, err := Join(s, JoinInput{JoinerSecret: d.JoinerSecret, GroupContext: []byte("group context")})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := d.Epoch.MarshalBinary()
		b, _ := j.Epoch.MarshalBinary()
		if !bytes.Equal(a, b) || !bytes.Equal(d.WelcomeSecret, j.WelcomeSecret) {
			t.Fatalf("%v: joining from joiner_secret gives a different epoch", s)
		}
	}
}

func TestAbsentSecretsAreZero(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	nh := s.HashSize()
	in := Input{InitSecret: filled(nh, 1), GroupContext: []byte("gc")}
	a, err := Derive(s, in)
	if err != nil {
		t.Fatal(err)
	}
	in.CommitSecret, in.PSKSecret = make([]byte, nh), make([]byte, nh)
	b, err := Derive(s, in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Epoch.ID, b.Epoch.ID) {
		t.Fatal("nil commit/psk secret differs from the all-zero one")
	}
	zero, err := PSKSecret(s, nil)
	if err != nil || !bytes.Equal(zero, make([]byte, nh)) {
		t.Fatalf("PSKSecret(none) = %x, %v", zero, err)
	}
}

func TestInputLengthsChecked(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	nh := s.HashSize()
	for _, in := range []Input{
		{InitSecret: nil},
		{InitSecret: filled(nh-1, 1)},
		{InitSecret: filled(nh, 1), CommitSecret: []byte{}},
		{InitSecret: filled(nh, 1), CommitSecret: filled(nh+1, 1)},
		{InitSecret: filled(nh, 1), PSKSecret: filled(3, 1)},
	} {
		if _, err := Derive(s, in); !errors.Is(err, ErrSecretLength) {
			t.Errorf("Derive(%d/%d/%d bytes) = %v, want ErrSecretLength", len(in.InitSecret), len(in.CommitSecret), len(in.PSKSecret), err)
		}
	}
	if _, err := WelcomeSecret(s, filled(5, 0), nil); !errors.Is(err, ErrSecretLength) {
		t.Errorf("WelcomeSecret with short joiner secret: %v", err)
	}
}

func TestUnknownSchemeRejected(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	nh := s.HashSize()
	_, err := Derive(s, Input{InitSecret: filled(nh, 1), Scheme: 9})
	if !errors.Is(err, ErrUnknownInitScheme) {
		t.Fatalf("Derive with scheme 9 = %v", err)
	}
}

func TestNextInitSecretIsACopy(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	e := testEpoch(t, s).Epoch
	keep := append([]byte{}, e.InitSecret...)
	init, after, err := e.NextInitSecret(Child{})
	if err != nil {
		t.Fatal(err)
	}
	clear(init)
	if !bytes.Equal(e.InitSecret, keep) || !bytes.Equal(after.InitSecret, keep) {
		t.Fatal("wiping the returned init_secret wiped the epoch")
	}
}

func TestCloneAndZero(t *testing.T) {
	s, _ := suite.Lookup(suite.P256AES128GCMSHA256P256)
	e := testEpoch(t, s).Epoch
	c := e.Clone()
	e.Zero()
	for i, f := range e.fields() {
		if !bytes.Equal(*f, make([]byte, len(*f))) {
			t.Fatalf("field %d not zeroed", i)
		}
		if bytes.Equal(*c.fields()[i], *f) {
			t.Fatalf("clone field %d shares memory with the original", i)
		}
	}
}

func TestExporterLength(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	e := testEpoch(t, s).Epoch
	for _, n := range []int{-1, 255*32 + 1, 1 << 20} {
		if _, err := e.Exporter("x", nil, n); !errors.Is(err, ErrExportLength) {
			t.Errorf("Exporter length %d: %v", n, err)
		}
	}
	if out, err := e.Exporter("x", nil, 255*32); err != nil || len(out) != 255*32 {
		t.Errorf("Exporter at the maximum length: %d bytes, %v", len(out), err)
	}
}

func TestConfirmationTag(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	e := testEpoch(t, s).Epoch
	tag, err := e.ConfirmationTag([]byte("transcript"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.VerifyConfirmationTag([]byte("transcript"), tag); err != nil {
		t.Fatal(err)
	}
	tag[0] ^= 1
	if err := e.VerifyConfirmationTag([]byte("transcript"), tag); !errors.Is(err, ErrBadConfirmationTag) {
		t.Fatalf("altered tag: %v", err)
	}
}

func TestEpochEncodingRoundTrip(t *testing.T) {
	for _, s := range suite.All() {
		e := testEpoch(t, s).Epoch
		data, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Epoch
		if err := back.UnmarshalBinary(data); err != nil {
			t.Fatalf("%v: %v", s, err)
		}
		again, _ := back.MarshalBinary()
		if !bytes.Equal(data, again) || back.Suite != e.Suite || !bytes.Equal(back.InitSecret, e.InitSecret) {
			t.Fatalf("%v: round trip changed the epoch", s)
		}
	}
}

func TestEpochDecodingRejects(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	good, _ := testEpoch(t, s).Epoch.MarshalBinary()
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, codec.ErrTruncated},
		{"format 2", mutate(func(b []byte) []byte { b[0] = 2; return b }), ErrUnknownFormat},
		{"unknown suite", mutate(func(b []byte) []byte { b[2] = 0x0a; return b }), suite.ErrUnsupportedSuite},
		{"unknown scheme", mutate(func(b []byte) []byte { b[3] = 7; return b }), ErrUnknownInitScheme},
		{"short secret", mutate(func(b []byte) []byte { b[4] = 31; return b }), codec.ErrInvalidValue},
		{"truncated", good[:len(good)-1], codec.ErrLengthTooLarge},
		{"trailing", append(append([]byte{}, good...), 0), codec.ErrTrailingData},
	} {
		var e Epoch
		err := e.UnmarshalBinary(c.data)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzEpochDecode(f *testing.F) {
	for _, s := range suite.All() {
		good, _ := testEpoch(f, s).Epoch.MarshalBinary()
		f.Add(good)
	}
	f.Add([]byte{1, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Epoch
		if err := e.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := e.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("decoded epoch re-encodes differently:\n%x\n%x", data, again)
		}
		// A decoded epoch must be usable without panicking.
		if _, err := e.Exporter("fuzz", data, 16); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.NextInitSecret(Child{}); err != nil {
			t.Fatal(err)
		}
	})
}

func BenchmarkEpoch(b *testing.B) {
	for _, s := range suite.All() {
		nh := s.HashSize()
		in := Input{
			InitSecret:   filled(nh, 1),
			CommitSecret: filled(nh, 2),
			PSKSecret:    filled(nh, 3),
			GroupContext: make([]byte, 140),
		}
		b.Run(fmt.Sprintf("suite=%d", s.ID()), func(b *testing.B) {
			for b.Loop() {
				d, err := Derive(s, in)
				if err != nil {
					b.Fatal(err)
				}
				in.InitSecret, _, _ = d.Epoch.NextInitSecret(Child{})
			}
		})
	}
}

func BenchmarkExternalKey(b *testing.B) {
	for _, s := range suite.All() {
		e := testEpoch(b, s).Epoch
		b.Run(fmt.Sprintf("suite=%d", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, err := e.ExternalKey(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
