package keyschedule

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/pprf"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// InitScheme names how an epoch's successors obtain their init_secret.
// Every member of a group must use the same scheme, so it is a property of
// the group that the application chooses (for Matrix rooms, the room's
// algorithm name), and it is stored with each Epoch.
//
// A scheme has two steps. When an epoch is derived, carry turns its
// epoch_secret into the secret the epoch keeps for its children (the
// Epoch's InitSecret). When a child is made, childInit turns that kept
// secret, plus what the committing commit contributes, into the child's
// init_secret and returns the kept secret as it must be stored afterwards.
// RFC 9420 needs neither the commit's contribution nor any update; the
// Decentralised MLS puncturable PRF (draft-kohbrok-mls-dmls §4) needs both,
// since it binds each child to its commit and punctures the kept PRF key so
// that no child can be derived twice. A new scheme is a new constant here
// and a case in each of the switches below.
type InitScheme uint8

const (
	// SchemeRFC9420 is init_secret_[n] = DeriveSecret(epoch_secret, "init"),
	// the same for every child. It is the zero value and the default.
	SchemeRFC9420 InitScheme = 0
	// SchemeDMLS is Decentralised MLS (draft-kohbrok-mls-dmls): the epoch
	// keeps a puncturable PRF keyed by DeriveSecret(epoch_secret,
	// "parent_init"), and each child's init_secret is that PRF evaluated
	// on the child's commit confirmation and the parent GroupContext
	// (mls/pprf). Each child can be derived once.
	SchemeDMLS InitScheme = 1
)

func (m InitScheme) known() bool { return m == SchemeRFC9420 || m == SchemeDMLS }

func (m InitScheme) String() string {
	switch m {
	case SchemeRFC9420:
		return "rfc9420"
	case SchemeDMLS:
		return "dmls"
	}
	return fmt.Sprintf("InitScheme(%d)", uint8(m))
}

// Child is what a commit contributes to its epoch's init_secret under
// schemes that bind the two. SchemeRFC9420 ignores it.
type Child struct {
	// CommitConfirmation is DeriveSecret(path_secret[n], "conf") of the
	// commit's update path (DMLS).
	CommitConfirmation []byte
	// GroupContext is the encoded GroupContext of the parent epoch.
	GroupContext []byte
}

func (m InitScheme) carry(s *suite.Suite, epochSecret []byte) ([]byte, error) {
	switch m {
	case SchemeRFC9420:
		return s.DeriveSecret(epochSecret, "init"), nil
	case SchemeDMLS:
		return pprf.KeepForChildren(s, epochSecret)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnknownInitScheme, m)
}

func (m InitScheme) childInit(s *suite.Suite, kept []byte, c Child) (initSecret, keptAfter []byte, err error) {
	switch m {
	case SchemeRFC9420:
		// An Epoch decoded without its init secret (UnmarshalSecrets)
		// has none to give.
		if len(kept) != s.HashSize() {
			return nil, nil, fmt.Errorf("%w: init_secret of %d bytes", ErrSecretLength, len(kept))
		}
		// A copy, so that a caller wiping the init_secret after use does not
		// wipe the epoch it came from.
		return append([]byte{}, kept...), kept, nil
	case SchemeDMLS:
		return pprf.NextChildInit(s, kept, c.CommitConfirmation, c.GroupContext)
	}
	return nil, nil, fmt.Errorf("%w: %v", ErrUnknownInitScheme, m)
}

// checkCarry validates a stored InitSecret under m. A scheme whose kept
// state varies in size (a punctured PRF) decodes it here.
func (m InitScheme) checkCarry(s *suite.Suite, kept []byte) error {
	switch m {
	case SchemeRFC9420:
		if len(kept) != s.HashSize() {
			return fmt.Errorf("%w: %d bytes, want %d", codec.ErrInvalidValue, len(kept), s.HashSize())
		}
		return nil
	case SchemeDMLS:
		return pprf.CheckKept(s, kept)
	}
	return fmt.Errorf("%w: %v", ErrUnknownInitScheme, m)
}

// NextInitSecret returns the init_secret from which a child of e (the epoch
// that the commit described by c creates) starts, and e as it must be
// stored from now on. Under SchemeRFC9420 that is e itself; under a
// puncturable scheme the returned Epoch replaces e, and e is left intact
// only so that a caller whose transaction fails can fall back to it.
func (e Epoch) NextInitSecret(c Child) (initSecret []byte, after Epoch, err error) {
	s, err := e.suite()
	if err != nil {
		return nil, Epoch{}, err
	}
	initSecret, kept, err := e.Scheme.childInit(s, e.InitSecret, c)
	if err != nil {
		return nil, Epoch{}, err
	}
	after = e
	after.InitSecret = kept
	return initSecret, after, nil
}
