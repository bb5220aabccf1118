package seal

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func mustKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSealer(t testing.TB, current Key, old ...Key) *Sealer {
	t.Helper()
	s, err := NewSealer(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTripAndFreshNonces(t *testing.T) {
	s := mustSealer(t, mustKey(t))
	row := Row("key_package", "@a:hs", "DEV", "k1")
	secret := []byte("signature key seed, 32 bytes....")
	a, err := s.Seal("keys.test", row, secret)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Seal("keys.test", row, secret)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	if len(a) != len(secret)+Overhead {
		t.Fatalf("sealed length %d, want %d", len(a), len(secret)+Overhead)
	}
	if bytes.Contains(a, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s.Open("keys.test", row, a)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	empty, err := s.Seal("keys.test", row, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open("keys.test", row, empty); err != nil || len(got) != 0 {
		t.Fatalf("empty value: %q, %v", got, err)
	}
}

func TestValueDoesNotOpenElsewhere(t *testing.T) {
	s := mustSealer(t, mustKey(t))
	row := Row("key_package", "@a:hs", "DEV", "k1")
	sealed, err := s.Seal("keys.kp", row, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		purpose Purpose
		row     Binding
		value   []byte
		want    error
	}{
		{"other row", "keys.kp", Row("key_package", "@a:hs", "DEV", "k2"), sealed, ErrOpen},
		{"other device", "keys.kp", Row("key_package", "@a:hs", "DEW", "k1"), sealed, ErrOpen},
		{"other table", "keys.kp", Row("device_identity", "@a:hs", "DEV", "k1"), sealed, ErrOpen},
		// Length prefixes keep ("ab","c") and ("a","bc") apart.
		{"shifted key parts", "keys.kp", Row("key_package", "@a:hsD", "EV", "k1"), sealed, ErrOpen},
		{"fewer key parts", "keys.kp", Row("key_package", "@a:hs", "DEV"), sealed, ErrOpen},
		{"other purpose", "keys.sig", row, sealed, ErrOpen},
		{"tampered", "keys.kp", row, tampered, ErrOpen},
		{"truncated", "keys.kp", row, sealed[:Overhead-1], ErrMalformed},
		{"empty", "keys.kp", row, nil, ErrMalformed},
		{"bad version", "keys.kp", row, append([]byte{2}, sealed[1:]...), ErrMalformed},
		{"other key", "keys.kp", row, mustSeal(t, mustSealer(t, mustKey(t)), "keys.kp", row), ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Open(tc.purpose, tc.row, tc.value)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func mustSeal(t *testing.T, s *Sealer, p Purpose, b Binding) []byte {
	t.Helper()
	v, err := s.Seal(p, b, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRotation(t *testing.T) {
	oldKey, newKey := mustKey(t), mustKey(t)
	row := Row("t", "1")
	before := mustSealer(t, oldKey)
	v, err := before.Seal("p", row, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	after := mustSealer(t, newKey, oldKey)
	if !after.NeedsReseal(v) || before.NeedsReseal(v) {
		t.Fatal("NeedsReseal wrong")
	}
	plain, err := after.Open("p", row, v)
	if err != nil || string(plain) != "secret" {
		t.Fatalf("old value under rotated sealer: %q, %v", plain, err)
	}
	resealed, err := after.Seal("p", row, plain)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := KeyIDOf(resealed); id != newKey.ID() || after.NeedsReseal(resealed) {
		t.Fatalf("resealed under %s, want %s", id, newKey.ID())
	}
	if _, err := mustSealer(t, newKey).Open("p", row, v); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old value after the old key was dropped: %v", err)
	}
	if _, err := NewSealer(newKey, oldKey, oldKey); err == nil {
		t.Fatal("a key given twice was accepted")
	}
	if _, err := NewSealer(Key{}); err == nil {
		t.Fatal("zero key accepted")
	}
}

func TestParseKey(t *testing.T) {
	k := mustKey(t)
	enc := k.Encode()
	for _, s := range []string{enc, strings.TrimRight(enc, "="), " " + enc + "\n"} {
		p, err := ParseKey(s)
		if err != nil || p.ID() != k.ID() || p.secret != k.secret {
			t.Fatalf("ParseKey(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "not base64!", "AAAA", enc + enc} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
	if strings.Contains(k.String(), enc) || strings.Contains(k.String(), strings.TrimRight(enc, "=")) {
		t.Fatal("String reveals the key")
	}
	if k.ID() == mustKey(t).ID() {
		t.Fatal("two random keys share an id")
	}
}

// FuzzOpen feeds arbitrary stored bytes to Open: it must fail cleanly
// (never panic, never open what it did not seal) and values it sealed
// must open.
func FuzzOpen(f *testing.F) {
	k, err := ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
	if err != nil {
		f.Fatal(err)
	}
	s := mustSealer(f, k)
	row := Row("t", "1")
	good, _ := s.Seal("p", row, []byte("hello"))
	f.Add(good, "t", "1", []byte("hello"))
	f.Add([]byte{}, "t", "1", []byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, "", "", []byte("x"))
	f.Add(append([]byte{1}, k.id[:]...), "t", "2", []byte{0})
	f.Fuzz(func(t *testing.T, stored []byte, table, key string, plain []byte) {
		b := Row(table, key)
		if got, err := s.Open("p", b, stored); err == nil {
			// Only a value sealed under our key with this binding can
			// open; a random one would be a forgery of the AEAD.
			if id, _ := KeyIDOf(stored); id != k.ID() {
				t.Fatalf("opened a value of key %s", id)
			}
			_ = got
		} else if !errors.Is(err, ErrOpen) {
			t.Fatalf("error %v does not match ErrOpen", err)
		}
		v, err := s.Seal("p", b, plain)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Open("p", b, v)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := s.Open("p", Row(table, key, ""), v); err == nil {
			t.Fatal("opened under another binding")
		}
	})
}

// BenchmarkSeal seals and opens a delivered message's content (150 bytes),
// as groups does once per puppet a message goes to:
//
//	go test -run '^$' -bench . -count 5 ./seal/
func BenchmarkSeal(b *testing.B) {
	s := mustSealer(b, mustKey(b))
	row := Row("delivery", "@puppet:hs", "42")
	plain := bytes.Repeat([]byte("m"), 150)
	b.Run("seal", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Seal("groups delivery", row, plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	sealed, err := s.Seal("groups delivery", row, plain)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Open("groups delivery", row, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
