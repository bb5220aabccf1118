package welcome

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Recipient is one of our KeyPackages together with the private half of
// its init key.
type Recipient struct {
	KeyPackage *message.KeyPackage
	InitKey    *suite.HPKEPrivateKey
}

// SignerKeyFunc returns the signature public key of the member at leaf
// gi.Signer, normally from the ratchet tree that gi carries or that the
// caller fetched. It sees gi before its signature is checked, so it must
// treat gi as untrusted.
type SignerKeyFunc func(gi *message.GroupInfo) ([]byte, error)

// Options are the optional inputs of Open.
type Options struct {
	// PSK returns the value of a pre-shared key that the group secrets
	// name, or an error if we do not hold it. Nil means we hold none.
	PSK func(id *message.PreSharedKeyID) ([]byte, error)
	// Scheme is the group's init scheme for the joined epoch; the zero
	// value is RFC 9420's.
	Scheme keyschedule.InitScheme
}

// Joined is what a Welcome gives its recipient: everything decrypted and
// verified, ready for building the group state.
type Joined struct {
	GroupSecrets message.GroupSecrets
	GroupInfo    message.GroupInfo
	// Epoch holds the secrets of the epoch joined.
	Epoch keyschedule.Epoch
}

// Parse decodes an MLSMessage that must carry a Welcome.
func Parse(data []byte) (*message.Welcome, error) {
	m, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if m.WireFormat != message.WireFormatWelcome {
		return nil, fmt.Errorf("%w: wire format %d is not a welcome", ErrMalformed, m.WireFormat)
	}
	return m.Welcome, nil
}

// Open decrypts and verifies w for me. signerKey is required; opts may be
// nil.
func Open(w *message.Welcome, me Recipient, signerKey SignerKeyFunc, opts *Options) (*Joined, error) {
	if w == nil || me.KeyPackage == nil || me.InitKey == nil || signerKey == nil {
		return nil, errors.New("open welcome: missing welcome, key package, init key or signer key function")
	}
	if opts == nil {
		opts = &Options{}
	}
	kp := me.KeyPackage
	if w.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: welcome uses 0x%04x, key package 0x%04x", ErrSuiteMismatch, uint16(w.CipherSuite), uint16(kp.CipherSuite))
	}
	s, err := suite.Lookup(w.CipherSuite)
	if err != nil {
		return nil, fmt.Errorf("open welcome: %w", err)
	}

	gs, err := openGroupSecrets(s, w, me)
	if err != nil {
		return nil, err
	}
	pskSecret, err := pskSecret(s, gs.PSKs, opts.PSK)
	if err != nil {
		return nil, err
	}
	welcomeSecret, err := keyschedule.WelcomeSecret(s, gs.JoinerSecret, pskSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: group secrets: %w", ErrMalformed, err)
	}
	gi, err := openGroupInfo(s, w.EncryptedGroupInfo, welcomeSecret)
	clear(welcomeSecret)
	if err != nil {
		return nil, err
	}
	if gi.GroupContext.Version != message.MLS10 {
		return nil, fmt.Errorf("%w: group info protocol version %d", ErrMalformed, gi.GroupContext.Version)
	}
	if gi.GroupContext.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: group info uses 0x%04x, key package 0x%04x", ErrSuiteMismatch, uint16(gi.GroupContext.CipherSuite), uint16(kp.CipherSuite))
	}

	pub, err := signerKey(gi)
	if err != nil {
		return nil, fmt.Errorf("open welcome: signer key: %w", err)
	}
	if err := s.VerifyWithLabel(pub, "GroupInfoTBS", gi.TBS(), gi.Signature); err != nil {
		return nil, fmt.Errorf("open welcome: group info: %w", err)
	}
	if err := checkResumptionEpoch(gs.PSKs, gi); err != nil {
		return nil, err
	}

	derived, err := keyschedule.Join(s, keyschedule.JoinInput{
		JoinerSecret: gs.JoinerSecret,
		PSKSecret:    pskSecret,
		GroupContext: codec.Marshal(&gi.GroupContext),
		Scheme:       opts.Scheme,
	})
	if err != nil {
		return nil, fmt.Errorf("open welcome: key schedule: %w", err)
	}
	clear(derived.WelcomeSecret)
	if err := derived.Epoch.VerifyConfirmationTag(gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag); err != nil {
		derived.Epoch.Zero()
		if errors.Is(err, keyschedule.ErrBadConfirmationTag) {
			return nil, ErrBadConfirmationTag
		}
		return nil, fmt.Errorf("open welcome: %w", err)
	}
	return &Joined{GroupSecrets: *gs, GroupInfo: *gi, Epoch: derived.Epoch}, nil
}

// openGroupSecrets finds and decrypts the entry of w addressed to me.
func openGroupSecrets(s *suite.Suite, w *message.Welcome, me Recipient) (*message.GroupSecrets, error) {
	ref := me.KeyPackage.Ref(s)
	var entry *message.EncryptedGroupSecrets
	for i := range w.Secrets {
		if bytes.Equal(w.Secrets[i].NewMember, ref) {
			entry = &w.Secrets[i]
			break
		}
	}
	if entry == nil {
		return nil, ErrNotForUs
	}
	ct := &entry.EncryptedGroupSecrets
	if me.InitKey.Suite() != s {
		return nil, fmt.Errorf("%w: init key of suite 0x%04x", ErrSuiteMismatch, uint16(me.InitKey.Suite().ID()))
	}
	plain, err := me.InitKey.DecryptWithLabel("Welcome", w.EncryptedGroupInfo, ct.KEMOutput, ct.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: group secrets: %w", ErrDecrypt, err)
	}
	defer clear(plain)
	gs := new(message.GroupSecrets)
	if err := codec.Unmarshal(plain, gs, "group_secrets"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(gs.JoinerSecret) != s.HashSize() {
		return nil, fmt.Errorf("%w: joiner_secret is %d bytes, want %d", ErrMalformed, len(gs.JoinerSecret), s.HashSize())
	}
	return gs, nil
}

// openGroupInfo decrypts and decodes the GroupInfo.
func openGroupInfo(s *suite.Suite, encrypted, welcomeSecret []byte) (*message.GroupInfo, error) {
	key, nonce := keyschedule.WelcomeKey(s, welcomeSecret)
	defer clear(key)
	plain, err := s.Open(key, nonce, nil, encrypted)
	if err != nil {
		return nil, fmt.Errorf("%w: group info: %w", ErrDecrypt, err)
	}
	gi := new(message.GroupInfo)
	if err := codec.Unmarshal(plain, gi, "group_info"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return gi, nil
}
