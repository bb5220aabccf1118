package keyschedule

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Input is what a commit contributes to the key schedule of the epoch it
// creates.
type Input struct {
	// InitSecret is init_secret_[n-1]: from the previous epoch (see
	// Epoch.NextInitSecret), fresh random bytes for a new group, or the
	// secret exported by an ExternalInit proposal.
	InitSecret []byte
	// CommitSecret is the commit_secret of the commit's update path; nil
	// stands for the all-zero value of a commit without one.
	CommitSecret []byte
	// PSKSecret is the psk_secret (see PSKSecret); nil stands for the
	// all-zero value of a commit without PSKs.
	PSKSecret []byte
	// GroupContext is the encoded GroupContext of the new epoch.
	GroupContext []byte
	// Scheme chooses how the new epoch's successor gets its init_secret;
	// the zero value is RFC 9420's.
	Scheme InitScheme
}

// JoinInput is what a new member learns from a Welcome.
type JoinInput struct {
	JoinerSecret []byte // from GroupSecrets
	PSKSecret    []byte // nil without PSKs
	GroupContext []byte // encoded, from the GroupInfo
	Scheme       InitScheme
}

// Derived is the result of one run of the key schedule.
type Derived struct {
	// JoinerSecret and WelcomeSecret are needed only while a Welcome for
	// the epoch is made or read; they are not part of the Epoch.
	JoinerSecret  []byte
	WelcomeSecret []byte
	Epoch         Epoch
}

// Derive runs the key schedule for the epoch that a commit creates.
func Derive(s *suite.Suite, in Input) (Derived, error) {
	nh := s.HashSize()
	if err := checkLen("init_secret", in.InitSecret, nh, false); err != nil {
		return Derived{}, err
	}
	if err := checkLen("commit_secret", in.CommitSecret, nh, true); err != nil {
		return Derived{}, err
	}
	commit := orZero(in.CommitSecret, nh)
	joiner := s.ExpandWithLabel(s.Extract(in.InitSecret, commit), "joiner", in.GroupContext, nh)
	return Join(s, JoinInput{
		JoinerSecret: joiner,
		PSKSecret:    in.PSKSecret,
		GroupContext: in.GroupContext,
		Scheme:       in.Scheme,
	})
}

// Join runs the key schedule from the joiner_secret on, as a member added
// by a Welcome does (and as Derive does after computing it).
func Join(s *suite.Suite, in JoinInput) (Derived, error) {
	nh := s.HashSize()
	if err := checkLen("joiner_secret", in.JoinerSecret, nh, false); err != nil {
		return Derived{}, err
	}
	if err := checkLen("psk_secret", in.PSKSecret, nh, true); err != nil {
		return Derived{}, err
	}
	member := s.Extract(in.JoinerSecret, orZero(in.PSKSecret, nh))
	epochSecret := s.ExpandWithLabel(member, "epoch", in.GroupContext, nh)
	defer clear(epochSecret)
	e, err := newEpoch(s, in.Scheme, epochSecret)
	if err != nil {
		return Derived{}, err
	}
	d := Derived{
		JoinerSecret:  in.JoinerSecret,
		WelcomeSecret: s.DeriveSecret(member, "welcome"),
		Epoch:         e,
	}
	clear(member)
	return d, nil
}

// WelcomeSecret derives welcome_secret from joiner_secret and psk_secret
// (nil for none), which is all a joiner needs to open the GroupInfo of a
// Welcome before it knows the GroupContext.
func WelcomeSecret(s *suite.Suite, joinerSecret, pskSecret []byte) ([]byte, error) {
	nh := s.HashSize()
	if err := checkLen("joiner_secret", joinerSecret, nh, false); err != nil {
		return nil, err
	}
	if err := checkLen("psk_secret", pskSecret, nh, true); err != nil {
		return nil, err
	}
	member := s.Extract(joinerSecret, orZero(pskSecret, nh))
	defer clear(member)
	return s.DeriveSecret(member, "welcome"), nil
}

// WelcomeKey returns the AEAD key and nonce that protect a Welcome's
// GroupInfo (RFC 9420 §12.4.3.1).
func WelcomeKey(s *suite.Suite, welcomeSecret []byte) (key, nonce []byte) {
	key = s.ExpandWithLabel(welcomeSecret, "key", nil, s.KeySize())
	nonce = s.ExpandWithLabel(welcomeSecret, "nonce", nil, s.NonceSize())
	return key, nonce
}

func checkLen(name string, b []byte, n int, nilAllowed bool) error {
	if (b == nil && nilAllowed) || len(b) == n {
		return nil
	}
	return fmt.Errorf("%s: %w: %d bytes, want %d", name, ErrSecretLength, len(b), n)
}

// orZero returns b, or the all-zero string of length n that RFC 9420 puts in
// place of an absent commit_secret or psk_secret.
func orZero(b []byte, n int) []byte {
	if b == nil {
		return make([]byte, n)
	}
	return b
}
