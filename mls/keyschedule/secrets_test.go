package keyschedule

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// The secrets and the init secret stored apart give back the epoch, for
// both schemes, and a punctured DMLS PRF stored alone replaces the old one.
func TestSecretsAndInitSecretApart(t *testing.T) {
	for _, s := range suite.All() {
		for _, scheme := range []InitScheme{SchemeRFC9420, SchemeDMLS} {
			d, err := Derive(s, Input{InitSecret: filled(s.HashSize(), 4), GroupContext: []byte("ctx"), Scheme: scheme})
			if err != nil {
				t.Fatal(err)
			}
			e := d.Epoch
			static := e.MarshalSecrets()
			whole, _ := e.MarshalBinary()
			if len(static) >= len(whole) {
				t.Fatalf("%v %v: secrets of %d bytes, whole epoch %d", s.ID(), scheme, len(static), len(whole))
			}
			dec, err := UnmarshalSecrets(static)
			if err != nil {
				t.Fatal(err)
			}
			if dec.InitSecret != nil {
				t.Fatal("init secret decoded from the secrets alone")
			}
			if _, _, err := dec.NextInitSecret(Child{CommitConfirmation: filled(s.HashSize(), 5), GroupContext: []byte("c")}); err == nil {
				t.Fatalf("%v %v: child derived without an init secret", s.ID(), scheme)
			}
			_, after, err := e.NextInitSecret(Child{CommitConfirmation: filled(s.HashSize(), 5), GroupContext: []byte("c")})
			if err != nil {
				t.Fatal(err)
			}
			if err := dec.SetInitSecret(after.InitSecret); err != nil {
				t.Fatal(err)
			}
			got, _ := dec.MarshalBinary()
			want, _ := after.MarshalBinary()
			if !bytes.Equal(got, want) {
				t.Fatalf("%v %v: reassembled epoch differs", s.ID(), scheme)
			}
			if err := dec.SetInitSecret(filled(s.HashSize()+1, 1)); err == nil {
				t.Fatalf("%v %v: init secret of the wrong size accepted", s.ID(), scheme)
			}
			for _, cut := range []int{0, 3, len(static) - 1} {
				if _, err := UnmarshalSecrets(static[:cut]); err == nil {
					t.Fatalf("truncated at %d accepted", cut)
				}
			}
			if _, err := UnmarshalSecrets(whole); err == nil {
				t.Fatal("a whole epoch decoded as secrets")
			}
		}
	}
	if _, err := UnmarshalSecrets([]byte{2, 0, 1, 0}); !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("unknown format: %v", err)
	}
}

func FuzzUnmarshalSecrets(f *testing.F) {
	for _, s := range suite.All() {
		f.Add(testEpoch(f, s).Epoch.MarshalSecrets())
	}
	f.Add([]byte{1, 0, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := UnmarshalSecrets(data)
		if err != nil {
			return
		}
		if again := e.MarshalSecrets(); !bytes.Equal(again, data) {
			t.Fatalf("decoded secrets re-encode differently:\n%x\n%x", data, again)
		}
		if _, err := e.Exporter("fuzz", data, 16); err != nil {
			t.Fatal(err)
		}
	})
}
