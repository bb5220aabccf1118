package welcome

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

type welcomeCase struct {
	CipherSuite suite.ID    `json:"cipher_suite"`
	InitPriv    vectors.Hex `json:"init_priv"`
	SignerPub   vectors.Hex `json:"signer_pub"`
	KeyPackage  vectors.Hex `json:"key_package"`
	Welcome     vectors.Hex `json:"welcome"`
}

func loadCases(t testing.TB) []welcomeCase {
	var cases []welcomeCase
	vectors.Load(t, "welcome.json", &cases)
	return cases
}

// parsed is a vector case decoded into the values Open takes.
type parsed struct {
	suite     *suite.Suite
	welcome   *message.Welcome
	me        Recipient
	signerPub []byte
}

func parseCase(c *welcomeCase) (*parsed, error) {
	s, err := suite.Lookup(c.CipherSuite)
	if err != nil {
		return nil, err
	}
	kpMsg, err := message.ParseMLSMessage(c.KeyPackage)
	if err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	if kpMsg.KeyPackage == nil {
		return nil, fmt.Errorf("key_package is wire format %d", kpMsg.WireFormat)
	}
	w, err := Parse(c.Welcome)
	if err != nil {
		return nil, err
	}
	initKey, err := s.NewHPKEPrivateKey(c.InitPriv)
	if err != nil {
		return nil, err
	}
	return &parsed{s, w, Recipient{kpMsg.KeyPackage, initKey}, c.SignerPub}, nil
}

func fixedKey(pub []byte) SignerKeyFunc {
	return func(*message.GroupInfo) ([]byte, error) { return pub, nil }
}

// Open checks everything the vector description asks for: the entry for
// our KeyPackage is found, both layers decrypt, the signature verifies
// under signer_pub, and the confirmation tag matches the key schedule run
// from joiner_secret without PSKs.
func checkWelcome(c *welcomeCase) error {
	p, err := parseCase(c)
	if err != nil {
		return err
	}
	j, err := Open(p.welcome, p.me, fixedKey(p.signerPub), nil)
	if err != nil {
		return err
	}
	if j.Epoch.Suite != c.CipherSuite || len(j.Epoch.ConfirmationKey) != p.suite.HashSize() {
		return fmt.Errorf("joined epoch has suite %d", j.Epoch.Suite)
	}
	return nil
}

func TestWelcomeVectors(t *testing.T) {
	cases := loadCases(t)
	passed := 0
	for i := range cases {
		if err := checkWelcome(&cases[i]); err != nil {
			t.Errorf("case %d (suite %d): %v", i, cases[i].CipherSuite, err)
			continue
		}
		passed++
	}
	vectors.Report(t, "welcome.json", passed, len(cases))
}

// reseal rebuilds the vector's Welcome after letting edit change the
// decrypted GroupInfo (nil leaves it) or replace its encoding outright,
// signing with a fresh key. It returns the Welcome and the new signer key.
func reseal(t *testing.T, p *parsed, edit func(gi *message.GroupInfo), raw []byte, gsEdit func(gs *message.GroupSecrets)) (*message.Welcome, []byte) {
	t.Helper()
	s := p.suite
	gs, err := openGroupSecrets(s, p.welcome, p.me)
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := keyschedule.WelcomeSecret(s, gs.JoinerSecret, nil)
	gi, err := openGroupInfo(s, p.welcome.EncryptedGroupInfo, ws)
	if err != nil {
		t.Fatal(err)
	}
	signPriv, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	signPub := signPriv.Public().Bytes()
	if edit != nil {
		edit(gi)
	}
	gi.Signature, err = signPriv.SignWithLabel("GroupInfoTBS", gi.TBS())
	if err != nil {
		t.Fatal(err)
	}
	plain := codec.Marshal(gi)
	if raw != nil {
		plain = raw
	}
	if gsEdit != nil {
		gsEdit(gs)
		ws, _ = keyschedule.WelcomeSecret(s, gs.JoinerSecret, nil)
	}
	key, nonce := keyschedule.WelcomeKey(s, ws)
	egi, err := s.Seal(key, nonce, nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	kem, ct, err := p.me.InitKey.Public().EncryptWithLabel("Welcome", egi, codec.Marshal(gs))
	if err != nil {
		t.Fatal(err)
	}
	w := &message.Welcome{
		CipherSuite: p.welcome.CipherSuite,
		Secrets: []message.EncryptedGroupSecrets{{
			NewMember:             p.me.KeyPackage.Ref(s),
			EncryptedGroupSecrets: message.HPKECiphertext{KEMOutput: kem, Ciphertext: ct},
		}},
		EncryptedGroupInfo: egi,
	}
	return w, signPub
}

func TestRejections(t *testing.T) {
	cases := loadCases(t)
	p, err := parseCase(&cases[0])
	if err != nil {
		t.Fatal(err)
	}
	copyWelcome := func() *message.Welcome {
		var w message.Welcome
		if err := codec.Unmarshal(codec.Marshal(p.welcome), &w, "welcome"); err != nil {
			t.Fatal(err)
		}
		return &w
	}
	other, err := p.suite.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	otherPub := other.Public().Bytes()

	resealed, resealedKey := reseal(t, p, nil, nil, nil)
	if _, err := Open(resealed, p.me, fixedKey(resealedKey), nil); err != nil {
		t.Fatalf("the test's own resealing is broken: %v", err)
	}

	type tc struct {
		name string
		w    *message.Welcome
		key  []byte
		opts *Options
		want error
	}
	var tests []tc
	add := func(name string, w *message.Welcome, key []byte, want error) {
		tests = append(tests, tc{name: name, w: w, key: key, want: want})
	}

	w := copyWelcome()
	w.Secrets[0].NewMember = bytes.Repeat([]byte{7}, len(w.Secrets[0].NewMember))
	add("no entry for us", w, p.signerPub, ErrNotForUs)

	w = copyWelcome()
	w.Secrets = []message.EncryptedGroupSecrets{}
	add("empty secrets", w, p.signerPub, ErrNotForUs)

	w = copyWelcome()
	w.CipherSuite = suite.P384AES256GCMSHA384P384
	if p.me.KeyPackage.CipherSuite == w.CipherSuite {
		w.CipherSuite = suite.X25519AES128GCMSHA256Ed25519
	}
	add("suite differs from key package", w, p.signerPub, ErrSuiteMismatch)

	w = copyWelcome()
	w.Secrets[0].EncryptedGroupSecrets.Ciphertext[0] ^= 1
	add("group secrets altered", w, p.signerPub, ErrDecrypt)

	w = copyWelcome()
	w.EncryptedGroupInfo[len(w.EncryptedGroupInfo)-1] ^= 1
	// The group info is the HPKE context of the group secrets, so this
	// fails at the first layer already.
	add("group info altered", w, p.signerPub, ErrDecrypt)

	add("wrong signer key", copyWelcome(), otherPub, suite.ErrBadSignature)

	w, k := reseal(t, p, nil, []byte{1, 2, 3}, nil)
	add("group info garbage", w, k, ErrMalformed)

	w, k = reseal(t, p, func(gi *message.GroupInfo) { gi.ConfirmationTag[0] ^= 1 }, nil, nil)
	add("confirmation tag altered", w, k, ErrBadConfirmationTag)

	w, k = reseal(t, p, func(gi *message.GroupInfo) { gi.GroupContext.Epoch++ }, nil, nil)
	add("group context altered", w, k, ErrBadConfirmationTag)

	w, k = reseal(t, p, func(gi *message.GroupInfo) { gi.GroupContext.CipherSuite = suite.P521AES256GCMSHA512P521 }, nil, nil)
	add("group info suite differs", w, k, ErrSuiteMismatch)

	w, k = reseal(t, p, nil, nil, func(gs *message.GroupSecrets) { gs.JoinerSecret = gs.JoinerSecret[:5] })
	add("short joiner secret", w, k, ErrMalformed)

	external := message.PreSharedKeyID{Type: message.PSKExternal, ID: []byte("x"), Nonce: make([]byte, p.suite.HashSize())}
	w, k = reseal(t, p, nil, nil, func(gs *message.GroupSecrets) { gs.PSKs = []message.PreSharedKeyID{external} })
	add("psk not held", w, k, ErrMissingPSK)

	branch := message.PreSharedKeyID{Type: message.PSKResumption, Usage: message.ResumptionBranch, GroupID: []byte("g"), Nonce: make([]byte, p.suite.HashSize())}
	w, k = reseal(t, p, nil, nil, func(gs *message.GroupSecrets) { gs.PSKs = []message.PreSharedKeyID{branch, branch} })
	add("two branch psks", w, k, ErrBadPSKs)

	for _, c := range tests {
		_, err := Open(c.w, p.me, fixedKey(c.key), c.opts)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// A Welcome that names a PSK opens when the caller holds it, and the PSK
// changes the keys: without it the group info would not decrypt.
func TestWelcomeWithPSK(t *testing.T) {
	cases := loadCases(t)
	p, err := parseCase(&cases[0])
	if err != nil {
		t.Fatal(err)
	}
	s := p.suite
	id := message.PreSharedKeyID{Type: message.PSKExternal, ID: []byte("psk"), Nonce: make([]byte, s.HashSize())}
	pskValue := []byte("the pre-shared key")
	pskSecret, err := keyschedule.PSKSecret(s, []keyschedule.PSK{{ID: &id, Secret: pskValue}})
	if err != nil {
		t.Fatal(err)
	}

	// Build a consistent epoch: derive from the vector's joiner secret
	// with the PSK, then put that epoch's confirmation tag in the group
	// info and seal it under the PSK-bound welcome key.
	gs, err := openGroupSecrets(s, p.welcome, p.me)
	if err != nil {
		t.Fatal(err)
	}
	ws0, _ := keyschedule.WelcomeSecret(s, gs.JoinerSecret, nil)
	gi, err := openGroupInfo(s, p.welcome.EncryptedGroupInfo, ws0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := keyschedule.Join(s, keyschedule.JoinInput{JoinerSecret: gs.JoinerSecret, PSKSecret: pskSecret, GroupContext: codec.Marshal(&gi.GroupContext)})
	if err != nil {
		t.Fatal(err)
	}
	gi.ConfirmationTag, _ = d.Epoch.ConfirmationTag(gi.GroupContext.ConfirmedTranscriptHash)
	signPriv, _ := s.GenerateSignatureKey()
	signPub := signPriv.Public().Bytes()
	gi.Signature, _ = signPriv.SignWithLabel("GroupInfoTBS", gi.TBS())
	key, nonce := keyschedule.WelcomeKey(s, d.WelcomeSecret)
	egi, _ := s.Seal(key, nonce, nil, codec.Marshal(gi))
	gs.PSKs = []message.PreSharedKeyID{id}
	kem, ct, _ := p.me.InitKey.Public().EncryptWithLabel("Welcome", egi, codec.Marshal(gs))
	w := &message.Welcome{
		CipherSuite:        p.welcome.CipherSuite,
		Secrets:            []message.EncryptedGroupSecrets{{NewMember: p.me.KeyPackage.Ref(s), EncryptedGroupSecrets: message.HPKECiphertext{KEMOutput: kem, Ciphertext: ct}}},
		EncryptedGroupInfo: egi,
	}

	opts := &Options{PSK: func(got *message.PreSharedKeyID) ([]byte, error) {
		if !bytes.Equal(got.ID, id.ID) {
			return nil, errors.New("unknown psk")
		}
		return pskValue, nil
	}}
	j, err := Open(w, p.me, fixedKey(signPub), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(j.Epoch.ID, d.Epoch.ID) {
		t.Fatal("joined a different epoch")
	}
	wrong := &Options{PSK: func(*message.PreSharedKeyID) ([]byte, error) { return []byte("other"), nil }}
	if _, err := Open(w, p.me, fixedKey(signPub), wrong); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong PSK value: %v, want ErrDecrypt", err)
	}
}

func TestParseRejectsOtherMessages(t *testing.T) {
	cases := loadCases(t)
	if _, err := Parse(cases[0].KeyPackage); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Parse(key package) = %v", err)
	}
	if _, err := Parse(cases[0].Welcome[:10]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Parse(truncated) = %v", err)
	}
}

// FuzzOpen feeds arbitrary bytes as the Welcome for the first vector's
// KeyPackage: whatever the input, Open must fail with one of the package's
// errors or succeed, never panic.
func FuzzOpen(f *testing.F) {
	cases := loadCases(f)
	for _, c := range cases {
		f.Add(uint8(0), []byte(c.Welcome))
	}
	parsedCases := make([]*parsed, len(cases))
	for i := range cases {
		p, err := parseCase(&cases[i])
		if err != nil {
			f.Fatal(err)
		}
		parsedCases[i] = p
	}
	known := []error{ErrNotForUs, ErrSuiteMismatch, ErrDecrypt, ErrMalformed, ErrMissingPSK, ErrBadPSKs, suite.ErrBadSignature, ErrBadConfirmationTag, suite.ErrUnsupportedSuite}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		p := parsedCases[int(which)%len(parsedCases)]
		w, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse: unexpected error %v", err)
			}
			return
		}
		_, err = Open(w, p.me, fixedKey(p.signerPub), nil)
		if err == nil {
			return
		}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("Open: error outside the package's set: %v", err)
	})
}

func BenchmarkOpen(b *testing.B) {
	cases := loadCases(b)
	for i := range cases {
		p, err := parseCase(&cases[i])
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("suite=%d", cases[i].CipherSuite), func(b *testing.B) {
			for b.Loop() {
				if _, err := Open(p.welcome, p.me, fixedKey(p.signerPub), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzOpenPlaintexts reaches past the encryption layers that stop FuzzOpen:
// it encrypts arbitrary GroupSecrets and GroupInfo encodings properly to the
// first vector's KeyPackage, so the decoding and checks of the decrypted
// contents see fuzzed input.
func FuzzOpenPlaintexts(f *testing.F) {
	cases := loadCases(f)
	p, err := parseCase(&cases[0])
	if err != nil {
		f.Fatal(err)
	}
	s := p.suite
	gs, err := openGroupSecrets(s, p.welcome, p.me)
	if err != nil {
		f.Fatal(err)
	}
	ws, _ := keyschedule.WelcomeSecret(s, gs.JoinerSecret, nil)
	gi, err := openGroupInfo(s, p.welcome.EncryptedGroupInfo, ws)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(codec.Marshal(gs), codec.Marshal(gi))
	f.Add([]byte{}, []byte{})
	known := []error{ErrNotForUs, ErrSuiteMismatch, ErrDecrypt, ErrMalformed, ErrMissingPSK, ErrBadPSKs, suite.ErrBadSignature, ErrBadConfirmationTag}
	f.Fuzz(func(t *testing.T, gsBytes, giBytes []byte) {
		// Seal the group info under the key its group secrets lead to,
		// when they decode far enough to name one.
		joiner := make([]byte, s.HashSize())
		var fuzzed message.GroupSecrets
		if codec.Unmarshal(gsBytes, &fuzzed, "group_secrets") == nil && len(fuzzed.JoinerSecret) == s.HashSize() {
			joiner = fuzzed.JoinerSecret
		}
		ws, _ := keyschedule.WelcomeSecret(s, joiner, nil)
		key, nonce := keyschedule.WelcomeKey(s, ws)
		egi, err := s.Seal(key, nonce, nil, giBytes)
		if err != nil {
			t.Fatal(err)
		}
		kem, ct, err := p.me.InitKey.Public().EncryptWithLabel("Welcome", egi, gsBytes)
		if err != nil {
			t.Fatal(err)
		}
		w := &message.Welcome{
			CipherSuite:        p.welcome.CipherSuite,
			Secrets:            []message.EncryptedGroupSecrets{{NewMember: p.me.KeyPackage.Ref(s), EncryptedGroupSecrets: message.HPKECiphertext{KEMOutput: kem, Ciphertext: ct}}},
			EncryptedGroupInfo: egi,
		}
		_, err = Open(w, p.me, fixedKey(p.signerPub), nil)
		if err == nil {
			return
		}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("Open: error outside the package's set: %v", err)
	})
}
