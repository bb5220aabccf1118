package tree

import (
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// LeafContext is what validating a LeafNode needs to know about where it
// appears (§7.3). The zero value of each optional field skips its check.
type LeafContext struct {
	// GroupID and LeafIndex are signed by update and commit leaves.
	GroupID   []byte
	LeafIndex treemath.LeafIndex
	// Source is the leaf_node_source the context requires: key_package in
	// a KeyPackage, update in an Update proposal, commit in an UpdatePath.
	// Zero accepts any (a leaf already in a tree).
	Source message.LeafNodeSource
	// Version is the group's protocol version. If ListsGroupParameters is
	// set, the capabilities must list it and the cipher suite. RFC 9420
	// implies but does not state this rule in §7.3, and some
	// implementations' leaves omit their own suite (the official treekem
	// vectors for suite 7 do), so it is the caller's choice.
	Version              message.ProtocolVersion
	ListsGroupParameters bool
	// Required is the group's required_capabilities extension, if any.
	Required *message.RequiredCapabilities
	// CredentialTypes are the credential types in use in the group; the
	// leaf must support all of them.
	CredentialTypes []message.CredentialType
	// Now is the time at which a key_package leaf's lifetime must hold.
	// The zero time skips the check (§7.3 only recommends it on receipt).
	Now time.Time
}

// ValidateLeafNode checks leaf against the rules of §7.3 that need no
// other member's data: source, signature, capabilities (the group's version
// and suite, its required capabilities, the credential types in use, the
// leaf's own credential type and extensions), lifetime and the encryption
// key's encoding. Uniqueness of keys and the credential types of other
// members are the tree's (CheckNewLeaf). Whether the credential itself is
// acceptable is the application's decision (§5.3.1) and not checked here.
//
// Every error matches ErrLeafNodeInvalid; signature, lifetime and
// capability failures also match ErrBadLeafSignature, ErrLifetime and
// ErrUnsupportedCapability.
func ValidateLeafNode(s *suite.Suite, leaf *message.LeafNode, c LeafContext) error {
	if err := CheckLeafNode(s, leaf, c); err != nil {
		return err
	}
	return verifyLeafSignature(s, leaf, c.GroupID, c.LeafIndex)
}

// CheckLeafNode is ValidateLeafNode without the signature, for a caller
// that verified it (LeafSignature) with others at once: the tree's
// validation, in blocks of leaves, or a commit's receiver, with the
// commit's own signature.
func CheckLeafNode(s *suite.Suite, leaf *message.LeafNode, c LeafContext) error {
	if c.Source != 0 && leaf.Source != c.Source {
		return leafError(nil, "leaf_node_source %d, want %d", leaf.Source, c.Source)
	}
	if _, err := s.NewHPKEPublicKey(leaf.EncryptionKey); err != nil {
		return leafError(nil, "encryption key: %v", err)
	}
	if err := checkCapabilities(s, leaf, c); err != nil {
		return err
	}
	if leaf.Source == message.LeafNodeSourceKeyPackage && !c.Now.IsZero() {
		now := c.Now.Unix()
		if now < 0 || uint64(now) < leaf.Lifetime.NotBefore || uint64(now) > leaf.Lifetime.NotAfter {
			return leafError(ErrLifetime, "now %d, lifetime [%d, %d]", now, leaf.Lifetime.NotBefore, leaf.Lifetime.NotAfter)
		}
	}
	return nil
}

func verifyLeafSignature(s *suite.Suite, leaf *message.LeafNode, groupID []byte, l treemath.LeafIndex) error {
	if err := s.Verify(LeafSignature(leaf, groupID, l)); err != nil {
		return leafSignatureError(l, err)
	}
	return nil
}

// LeafSignature is the signature check of leaf at index l (§7.2), for
// suite.VerifyBatch.
func LeafSignature(leaf *message.LeafNode, groupID []byte, l treemath.LeafIndex) suite.SignatureCheck {
	return suite.SignatureCheck{Key: leaf.SignatureKey, Label: "LeafNodeTBS", Content: leaf.TBS(groupID, uint32(l)), Signature: leaf.Signature}
}

func leafSignatureError(l treemath.LeafIndex, err error) error {
	return fmt.Errorf("%w: %w: leaf %d: %w", ErrLeafNodeInvalid, ErrBadLeafSignature, l, err)
}

func leafError(reason error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if reason == nil {
		return fmt.Errorf("%w: %s", ErrLeafNodeInvalid, msg)
	}
	return fmt.Errorf("%w: %w: %s", ErrLeafNodeInvalid, reason, msg)
}

// Default proposal and extension types (§7.2) are supported by every client
// and never listed in capabilities.
func defaultProposal(p message.ProposalType) bool {
	return p >= message.ProposalAdd && p <= message.ProposalGroupContextExtensions
}

func defaultExtension(e message.ExtensionType) bool {
	return e >= message.ExtensionApplicationID && e <= message.ExtensionExternalSenders
}

func checkCapabilities(s *suite.Suite, leaf *message.LeafNode, c LeafContext) error {
	caps := &leaf.Capabilities
	if c.ListsGroupParameters {
		if c.Version != 0 && !slices.Contains(caps.Versions, c.Version) {
			return leafError(ErrUnsupportedCapability, "version %d", c.Version)
		}
		if !slices.Contains(caps.CipherSuites, s.ID()) {
			return leafError(ErrUnsupportedCapability, "cipher suite %d", s.ID())
		}
	}
	if !slices.Contains(caps.Credentials, leaf.Credential.Type) {
		return leafError(ErrUnsupportedCapability, "own credential type %d", leaf.Credential.Type)
	}
	for _, ct := range c.CredentialTypes {
		if !slices.Contains(caps.Credentials, ct) {
			return leafError(ErrUnsupportedCapability, "credential type %d in use by the group", ct)
		}
	}
	for _, e := range leaf.Extensions {
		if !defaultExtension(e.Type) && !slices.Contains(caps.Extensions, e.Type) {
			return leafError(ErrUnsupportedCapability, "own extension %d", e.Type)
		}
	}
	if rc := c.Required; rc != nil {
		for _, e := range rc.ExtensionTypes {
			if !defaultExtension(e) && !slices.Contains(caps.Extensions, e) {
				return leafError(ErrUnsupportedCapability, "required extension %d", e)
			}
		}
		for _, p := range rc.ProposalTypes {
			if !defaultProposal(p) && !slices.Contains(caps.Proposals, p) {
				return leafError(ErrUnsupportedCapability, "required proposal %d", p)
			}
		}
		for _, ct := range rc.CredentialTypes {
			if !slices.Contains(caps.Credentials, ct) {
				return leafError(ErrUnsupportedCapability, "required credential type %d", ct)
			}
		}
	}
	return nil
}

// ValidateKeyPackage checks a KeyPackage against §10.1 for a group of
// suite s and version c.Version (MLS10 if zero): version and suite, its
// LeafNode as a key_package leaf (c.Source is ignored), its signature
// with the leaf's signature key, and an init key that is a valid key
// distinct from the leaf's encryption key. Errors match
// ErrKeyPackageInvalid, and leaf errors also match ErrLeafNodeInvalid.
func ValidateKeyPackage(s *suite.Suite, kp *message.KeyPackage, c LeafContext) error {
	if c.Version == 0 {
		c.Version = message.MLS10
	}
	if kp.Version != c.Version {
		return fmt.Errorf("%w: version %d, want %d", ErrKeyPackageInvalid, kp.Version, c.Version)
	}
	if kp.CipherSuite != s.ID() {
		return fmt.Errorf("%w: cipher suite %d, want %d", ErrKeyPackageInvalid, kp.CipherSuite, s.ID())
	}
	c.Source = message.LeafNodeSourceKeyPackage
	if err := CheckLeafNode(s, &kp.LeafNode, c); err != nil {
		return fmt.Errorf("%w: %w", ErrKeyPackageInvalid, err)
	}
	// The leaf's signature and the KeyPackage's, one key's, in one batch
	// (two thirds of the cost of two checks); a failure names the first.
	checks := []suite.SignatureCheck{
		LeafSignature(&kp.LeafNode, c.GroupID, c.LeafIndex),
		{Key: kp.LeafNode.SignatureKey, Label: "KeyPackageTBS", Content: kp.TBS(), Signature: kp.Signature},
	}
	switch bad, err := s.VerifyBatch(checks); bad {
	case 0:
		return fmt.Errorf("%w: %w", ErrKeyPackageInvalid, leafSignatureError(c.LeafIndex, err))
	case 1:
		return fmt.Errorf("%w: signature: %w", ErrKeyPackageInvalid, err)
	}
	if _, err := s.NewHPKEPublicKey(kp.InitKey); err != nil {
		return fmt.Errorf("%w: init key: %w", ErrKeyPackageInvalid, err)
	}
	if string(kp.InitKey) == string(kp.LeafNode.EncryptionKey) {
		return fmt.Errorf("%w: init key equals the leaf's encryption key", ErrKeyPackageInvalid)
	}
	return nil
}

// CheckNewLeaf checks the rules of §7.3 that relate a leaf entering the
// tree at l to the other members: its encryption and signature keys are
// used by no other leaf (nor its encryption key by any parent), every
// member supports its credential type, and, if it replaces the leaf at l
// (an Update, or a commit's new leaf), its encryption key differs from the
// one it replaces. For a leaf being added, pass a blank leaf index or one
// beyond the tree. It complements ValidateLeafNode, whose CredentialTypes
// the caller fills from t.CredentialTypes. It costs index lookups, not a
// pass over the tree.
func (t *Tree) CheckNewLeaf(l treemath.LeafIndex, leaf *message.LeafNode) error {
	lx := l.Node()
	var err error
	t.enc.find(leaf.EncryptionKey, func(x treemath.NodeIndex) bool {
		switch {
		case x == lx:
			err = fmt.Errorf("%w: encryption key not changed at leaf %d", ErrLeafNodeInvalid, l)
		case x.IsLeaf():
			err = fmt.Errorf("%w: encryption key of leaf %d", ErrDuplicateKey, x/2)
		default:
			err = fmt.Errorf("%w: encryption key of node %d", ErrDuplicateKey, x)
		}
		return false
	})
	if err != nil {
		return err
	}
	t.sig.find(leaf.SignatureKey, func(x treemath.NodeIndex) bool {
		if x != lx {
			err = fmt.Errorf("%w: signature key of leaf %d", ErrDuplicateKey, x/2)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	ct := leaf.Credential.Type
	if t.stats.supportedByOthers(ct, t.Leaf(l)) {
		return nil
	}
	// Rare: find a member to name in the error.
	t.Members(func(m treemath.LeafIndex, n *message.LeafNode) bool {
		if m != l && !slices.Contains(n.Capabilities.Credentials, ct) {
			err = leafError(ErrUnsupportedCapability, "leaf %d does not support credential type %d", m, ct)
		}
		return err == nil
	})
	if err == nil {
		err = leafError(ErrUnsupportedCapability, "credential type %d", ct)
	}
	return err
}

// errorsJoinFirst returns the error of the lowest index, so that a parallel
// check reports the same failure as a sequential one would.
func errorsJoinFirst(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
