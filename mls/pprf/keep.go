package pprf

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// These functions give the key schedule's init-secret seam (keyschedule
// InitScheme: carry, childInit, and the stored length check) its DMLS case
// in terms of the bytes an Epoch stores, so that the key schedule needs no
// knowledge of the PPRF's structure.

// KeepForChildren returns what a DMLS epoch stores for its children in
// place of init_secret: the encoding of a PPRF keyed by
// parent_init_secret = DeriveSecret(epoch_secret, "parent_init").
func KeepForChildren(s *suite.Suite, epochSecret []byte) ([]byte, error) {
	key := ParentInitSecret(s, epochSecret)
	defer clear(key)
	p, err := New(s, key)
	if err != nil {
		return nil, fmt.Errorf("parent init secret: %w", err)
	}
	defer p.Wipe()
	return p.MarshalBinary()
}

// NextChildInit derives init_secret_[n] for the child that a commit with
// commitConfirmation makes of the epoch whose kept bytes are kept and whose
// encoded GroupContext is groupContext. It returns the bytes the epoch must
// keep from now on, in which that child is punctured. kept is not changed:
// the caller replaces it only when the child is durably stored, and wipes
// it then.
func NextChildInit(s *suite.Suite, kept, commitConfirmation, groupContext []byte) (initSecret, keptAfter []byte, err error) {
	p, err := decodeKept(s, kept)
	if err != nil {
		return nil, nil, err
	}
	defer p.Wipe()
	initSecret, err = p.ChildInitSecret(commitConfirmation, groupContext)
	if err != nil {
		return nil, nil, err
	}
	keptAfter, err = p.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	return initSecret, keptAfter, nil
}

// CheckKept validates stored kept bytes for suite s; it is the DMLS
// counterpart of checking that an RFC 9420 init_secret is KDF.Nh bytes.
func CheckKept(s *suite.Suite, kept []byte) error {
	p, err := decodeKept(s, kept)
	if err != nil {
		return err
	}
	p.Wipe()
	return nil
}

// decodeKept decodes kept bytes and checks that they are what
// KeepForChildren makes: a PPRF for suite s with KDF.Nh-byte inputs. An
// indexed PPRF decodes too, but is never an epoch's kept state.
func decodeKept(s *suite.Suite, kept []byte) (*PPRF, error) {
	var p PPRF
	if err := p.UnmarshalBinary(kept); err != nil {
		return nil, err
	}
	if p.suite.ID() != s.ID() {
		p.Wipe()
		return nil, fmt.Errorf("%w: kept state is for %v, epoch is %v", ErrInvalidState, p.suite, s)
	}
	if want := 8 * s.HashSize(); p.bits != want {
		p.Wipe()
		return nil, fmt.Errorf("%w: kept state has leaf depth %d, want %d", ErrInvalidState, p.bits, want)
	}
	return &p, nil
}
