package pprf

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// ParentInitSecret returns DeriveSecret(epoch_secret, "parent_init"), the
// key of the PPRF that an epoch keeps for its children under DMLS.
func ParentInitSecret(s *suite.Suite, epochSecret []byte) []byte {
	return s.DeriveSecret(epochSecret, "parent_init")
}

// CommitConfirmation returns DeriveSecret(path_secret[n], "conf"), where
// pathSecret is the root path secret of the commit's update path. A commit
// without an update path has no commit confirmation; see the package doc.
func CommitConfirmation(s *suite.Suite, pathSecret []byte) ([]byte, error) {
	if len(pathSecret) == 0 {
		return nil, ErrNoUpdatePath
	}
	return s.DeriveSecret(pathSecret, "conf"), nil
}

// DeriveChild is the draft's DeriveChildSecret(p, label, inputSecret,
// context) = DeriveFSSecret(p, ExpandWithLabel(inputSecret, label,
// context, KDF.Nh)). It punctures p, which must have been made by New:
// the input it derives is KDF.Nh bytes.
func (p *PPRF) DeriveChild(label string, inputSecret, context []byte) ([]byte, error) {
	nh := p.suite.HashSize()
	if p.bits != 8*nh {
		return nil, fmt.Errorf("%w: DeriveChild needs %d-bit inputs, the PPRF has %d", ErrLeafDepth, 8*nh, p.bits)
	}
	if len(inputSecret) != nh {
		return nil, fmt.Errorf("%w: input secret of %d bytes, want %d", ErrInputLength, len(inputSecret), nh)
	}
	input := p.suite.ExpandWithLabel(inputSecret, label, context, nh)
	defer clear(input)
	return p.Evaluate(input)
}

// ChildInitSecret returns init_secret_[n] for the child that a commit with
// the given commit_confirmation makes of the epoch whose encoded
// GroupContext is groupContext, and punctures p so that the same child
// cannot be derived again (ErrPunctured).
func (p *PPRF) ChildInitSecret(commitConfirmation, groupContext []byte) ([]byte, error) {
	out, err := p.DeriveChild("child_init", commitConfirmation, groupContext)
	if err != nil {
		return nil, fmt.Errorf("derive child init secret: %w", err)
	}
	return out, nil
}
