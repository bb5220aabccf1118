package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/pprf"
)

// publicParts stores p in parts.
func publicParts(t testing.TB, p *Public) (static, init, secrets []byte) {
	t.Helper()
	static, err := p.MarshalStatic()
	if err != nil {
		t.Fatal(err)
	}
	if init, err = p.MarshalInitState(); err != nil {
		t.Fatal(err)
	}
	if secrets, err = p.MarshalSecretTree(); err != nil {
		t.Fatal(err)
	}
	return static, init, secrets
}

// A Public stored in parts decodes to the same Public; each mutable part
// changes, and is counted by Changes, only through its own operations:
// deriving a child punctures the init state, sending and reading
// PrivateMessages advance the secret tree, and the static part never
// changes.
func TestPublicParts(t *testing.T) {
	for _, scheme := range []keyschedule.InitScheme{keyschedule.SchemeDMLS, keyschedule.SchemeRFC9420} {
		cfg := Config{Scheme: scheme}
		w := newSharedWorld(t, cfg, 4, []int{1})
		pub := w.pub
		static, init, secrets := publicParts(t, pub)
		whole, _ := pub.MarshalBinary()
		dec, err := UnmarshalPublicParts(static, init, secrets)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := dec.MarshalBinary(); !bytes.Equal(again, whole) {
			t.Fatalf("%v: parts decode to another Public", scheme)
		}
		if i, s := dec.Changes(); i != 0 || s != 0 {
			t.Fatalf("decoded Public has changes %d, %d", i, s)
		}

		// A message read: only the secret tree changes.
		ct, err := w.indep[2].Protect([]byte("m"), nil)
		if err != nil {
			t.Fatal(err)
		}
		mustHandle(t, New(pub, nil, cfg), ct)
		if i, s := pub.Changes(); i != 0 || s != 1 {
			t.Fatalf("%v: after a read, changes %d, %d", scheme, i, s)
		}
		// A message sent: the secret tree again.
		if _, err := New(pub, w.privs[1], cfg).Protect([]byte("n"), nil); err != nil {
			t.Fatal(err)
		}
		if i, s := pub.Changes(); i != 0 || s != 2 {
			t.Fatalf("%v: after a send, changes %d, %d", scheme, i, s)
		}
		s2, i2, t2 := publicParts(t, pub)
		if !bytes.Equal(s2, static) || !bytes.Equal(i2, init) || bytes.Equal(t2, secrets) {
			t.Fatalf("%v: messages changed other parts than the secret tree", scheme)
		}

		// A commit processed: under DMLS the init state is punctured.
		pc, err := w.indep[0].Commit(CommitOptions{ForcePath: true})
		if err != nil {
			t.Fatal(err)
		}
		mustHandle(t, New(pub, w.privs[1], cfg), pc.Commit)
		wantInit := uint64(0)
		if scheme == keyschedule.SchemeDMLS {
			wantInit = 1
		}
		if i, s := pub.Changes(); i != wantInit || s != 2 {
			t.Fatalf("%v: after a commit, changes %d, %d", scheme, i, s)
		}
		s3, i3, t3 := publicParts(t, pub)
		if !bytes.Equal(s3, static) || !bytes.Equal(t3, t2) || bytes.Equal(i3, i2) != (scheme == keyschedule.SchemeRFC9420) {
			t.Fatalf("%v: a commit changed the wrong parts", scheme)
		}
		// The punctured state survives storage; the old init state is
		// what a failed transaction falls back to.
		after, err := UnmarshalPublicParts(s3, i3, t3)
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(after, w.privs[1], cfg).Handle(pc.Commit)
		if scheme == keyschedule.SchemeDMLS && !errors.Is(err, pprf.ErrPunctured) {
			t.Fatalf("decoded punctured Public processed the commit again: %v", err)
		}
		before, err := UnmarshalPublicParts(s3, i2, t3)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(before, w.privs[1], cfg).Handle(pc.Commit); err != nil {
			t.Fatalf("%v: the stored init state before the commit: %v", scheme, err)
		}
	}
}

// Parts that do not belong together, or that are cut short, are refused.
func TestPublicPartsRefused(t *testing.T) {
	small := newSharedWorld(t, Config{Scheme: keyschedule.SchemeDMLS}, 3, []int{1})
	large := newSharedWorld(t, Config{Scheme: keyschedule.SchemeDMLS}, 6, []int{1})
	s1, i1, t1 := publicParts(t, small.pub)
	_, i2, t2 := publicParts(t, large.pub)
	for name, parts := range map[string][3][]byte{
		"init state of another epoch":  {s1, i2, t1},
		"secret tree of another epoch": {s1, i1, t2},
		"static as init state":         {s1, s1, t1},
		"init state as static":         {i1, i1, t1},
		"secret tree as static":        {t1, i1, t1},
		"static cut short":             {s1[:len(s1)-1], i1, t1},
		"init state cut short":         {s1, i1[:len(i1)-1], t1},
		"secret tree cut short":        {s1, i1, t1[:len(t1)-1]},
		"empty":                        {nil, nil, nil},
		"trailing bytes":               {append(bytes.Clone(s1), 0), i1, t1},
		"unknown version":              {append([]byte{9}, s1[1:]...), i1, t1},
		"unknown init state version":   {s1, append([]byte{9}, i1[1:]...), t1},
		"init state of another suite":  {s1, append([]byte{1, 0, 2}, i1[3:]...), t1},
		"secret tree of another suite": {s1, i1, append([]byte{1, 0, 2}, t1[3:]...)},
	} {
		if _, err := UnmarshalPublicParts(parts[0], parts[1], parts[2]); !errors.Is(err, ErrInvalidState) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzUnmarshalPublicParts(f *testing.F) {
	w := newSharedWorld(f, Config{Scheme: keyschedule.SchemeDMLS}, 3, []int{1})
	s, i, t := publicParts(f, w.pub)
	f.Add(s, i, t)
	f.Add(s[:20], i[:5], t[:10])
	f.Fuzz(func(t *testing.T, static, init, secrets []byte) {
		p, err := UnmarshalPublicParts(static, init, secrets)
		if err != nil {
			return
		}
		s, i, st := publicParts(t, p)
		if !bytes.Equal(s, static) || !bytes.Equal(i, init) || !bytes.Equal(st, secrets) {
			t.Fatal("decoded parts re-encode differently")
		}
	})
}
