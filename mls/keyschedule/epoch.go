package keyschedule

import (
	"crypto/subtle"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Epoch holds the secrets of one epoch (RFC 9420 §8, "Epoch-Derived
// Secrets"). All are KDF.Nh bytes except InitSecret, whose form the Scheme
// decides. Methods never modify an Epoch; copies share their byte slices,
// so use Clone before handing one to code that may Zero it.
type Epoch struct {
	Suite  suite.ID
	Scheme InitScheme

	// ID is DeriveSecret(epoch_secret, "epoch"), the dmls_epoch of
	// draft-kohbrok-mls-dmls: unlike the epoch number it differs between
	// forks, and it reveals nothing about the other secrets.
	ID []byte

	SenderDataSecret   []byte
	EncryptionSecret   []byte
	ExporterSecret     []byte
	ExternalSecret     []byte
	ConfirmationKey    []byte
	MembershipKey      []byte
	ResumptionPSK      []byte
	EpochAuthenticator []byte

	// InitSecret is what this epoch's children start from. Under
	// SchemeRFC9420 it is init_secret_[n] itself; read it through
	// NextInitSecret, which works for every scheme.
	InitSecret []byte
}

func newEpoch(s *suite.Suite, scheme InitScheme, epochSecret []byte) (Epoch, error) {
	carry, err := scheme.carry(s, epochSecret)
	if err != nil {
		return Epoch{}, err
	}
	return Epoch{
		Suite:              s.ID(),
		Scheme:             scheme,
		ID:                 s.DeriveSecret(epochSecret, "epoch"),
		SenderDataSecret:   s.DeriveSecret(epochSecret, "sender data"),
		EncryptionSecret:   s.DeriveSecret(epochSecret, "encryption"),
		ExporterSecret:     s.DeriveSecret(epochSecret, "exporter"),
		ExternalSecret:     s.DeriveSecret(epochSecret, "external"),
		ConfirmationKey:    s.DeriveSecret(epochSecret, "confirm"),
		MembershipKey:      s.DeriveSecret(epochSecret, "membership"),
		ResumptionPSK:      s.DeriveSecret(epochSecret, "resumption"),
		EpochAuthenticator: s.DeriveSecret(epochSecret, "authentication"),
		InitSecret:         carry,
	}, nil
}

// fields lists the epoch's byte strings in their storage order.
func (e *Epoch) fields() []*[]byte {
	return []*[]byte{
		&e.ID, &e.SenderDataSecret, &e.EncryptionSecret, &e.ExporterSecret,
		&e.ExternalSecret, &e.ConfirmationKey, &e.MembershipKey,
		&e.ResumptionPSK, &e.EpochAuthenticator, &e.InitSecret,
	}
}

// Clone returns a copy of e that shares no memory with it.
func (e Epoch) Clone() Epoch {
	c := e
	for _, f := range c.fields() {
		if *f != nil {
			*f = append([]byte{}, (*f)...)
		}
	}
	return c
}

// Zero overwrites every secret of e in place. Copies of e made without
// Clone see the zeros too.
func (e *Epoch) Zero() {
	for _, f := range e.fields() {
		clear(*f)
	}
}

func (e Epoch) suite() (*suite.Suite, error) { return suite.Lookup(e.Suite) }

// Exporter computes MLS-Exporter(label, context, length) (RFC 9420 §8.5).
func (e Epoch) Exporter(label string, context []byte, length int) ([]byte, error) {
	s, err := e.suite()
	if err != nil {
		return nil, err
	}
	if length < 0 || length > 0xffff || length > 255*s.HashSize() {
		return nil, fmt.Errorf("mls exporter: %w: %d", ErrExportLength, length)
	}
	derived := s.DeriveSecret(e.ExporterSecret, label)
	defer clear(derived)
	return s.ExpandWithLabel(derived, "exported", s.Hash(context), length), nil
}

// ExternalKey returns KEM.DeriveKeyPair(external_secret) (RFC 9420 §8.3):
// the HPKE key for external commits, whose public half a GroupInfo may
// publish.
func (e Epoch) ExternalKey() (*suite.HPKEPrivateKey, error) {
	s, err := e.suite()
	if err != nil {
		return nil, err
	}
	k, err := s.DeriveHPKEKey(e.ExternalSecret)
	if err != nil {
		return nil, fmt.Errorf("derive external key: %w", err)
	}
	return k, nil
}

// ConfirmationTag returns MAC(confirmation_key, confirmed_transcript_hash)
// (RFC 9420 §6.1).
func (e Epoch) ConfirmationTag(confirmedTranscriptHash []byte) ([]byte, error) {
	s, err := e.suite()
	if err != nil {
		return nil, err
	}
	return s.MAC(e.ConfirmationKey, confirmedTranscriptHash), nil
}

// VerifyConfirmationTag checks tag against the epoch's confirmation key in
// constant time, returning ErrBadConfirmationTag on a mismatch.
func (e Epoch) VerifyConfirmationTag(confirmedTranscriptHash, tag []byte) error {
	want, err := e.ConfirmationTag(confirmedTranscriptHash)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(want, tag) != 1 {
		return ErrBadConfirmationTag
	}
	return nil
}
