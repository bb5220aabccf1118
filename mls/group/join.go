package group

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
	"github.com/mls-appservice/mls-appservice/mls/welcome"
)

// JoinOptions are the optional inputs of Join.
type JoinOptions struct {
	// RatchetTree is the group's tree obtained out of band, for a
	// GroupInfo without the ratchet_tree extension.
	RatchetTree message.RatchetTree
	// Config is the new state's configuration; its PSKs serve the PSKs
	// the Welcome names.
	Config Config
}

// Join joins a group from an encoded MLSMessage carrying a Welcome.
func Join(welcomeMsg []byte, kp *KeyPackageBundle, o *JoinOptions) (*Group, error) {
	w, err := welcome.Parse(welcomeMsg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return JoinWelcome(w, kp, o)
}

// JoinWelcome joins a group from a Welcome for kp (§12.4.3.1): it opens the
// Welcome, validates the ratchet tree in full, finds our leaf and derives
// our private path keys.
func JoinWelcome(w *message.Welcome, kp *KeyPackageBundle, o *JoinOptions) (*Group, error) {
	if err := kp.Check(); err != nil {
		return nil, err
	}
	if o == nil {
		o = &JoinOptions{}
	}
	cfg := o.Config
	var t *tree.Tree
	signerKey := func(gi *message.GroupInfo) ([]byte, error) {
		var err error
		t, err = treeFor(gi, o.RatchetTree)
		if err != nil {
			return nil, err
		}
		l := t.Leaf(treemath.LeafIndex(gi.Signer))
		if l == nil {
			return nil, fmt.Errorf("%w: signer leaf %d is blank", ErrInvalidGroupInfo, gi.Signer)
		}
		return l.SignatureKey, nil
	}
	joined, err := openWelcome(w, kp, signerKey, cfg, cfg.Scheme)
	if err != nil {
		return nil, err
	}
	gi := &joined.GroupInfo
	s, _ := suite.Lookup(gi.GroupContext.CipherSuite)
	if err := validateTree(t, &gi.GroupContext, &cfg); err != nil {
		return nil, err
	}
	priv, err := joinedPrivate(t, joined, kp)
	clear(joined.GroupSecrets.PathSecret)
	if err != nil {
		return nil, err
	}
	pub, err := newPublic(s, gi.GroupContext, t, gi.ConfirmationTag, joined.Epoch, cfg.SecretTree)
	if err != nil {
		return nil, err
	}
	g := New(pub, priv, cfg)
	g.welcomePSKs = nonNil(joined.GroupSecrets.PSKs)
	return g, nil
}

// openWelcome opens w for kp (welcome.Open) with the PSKs of cfg and the
// given init scheme, and classifies its errors.
func openWelcome(w *message.Welcome, kp *KeyPackageBundle, signerKey welcome.SignerKeyFunc, cfg Config, scheme keyschedule.InitScheme) (*welcome.Joined, error) {
	lookup := func(id *message.PreSharedKeyID) ([]byte, error) {
		if v, ok := cfg.PSKs.lookup(id); ok {
			return v, nil
		}
		return nil, ErrMissingPSK
	}
	joined, err := welcome.Open(w, welcome.Recipient{KeyPackage: &kp.KeyPackage, InitKey: kp.InitKey}, signerKey, &welcome.Options{PSK: lookup, Scheme: scheme})
	if err != nil {
		switch {
		case errors.Is(err, welcome.ErrNotForUs):
			return nil, fmt.Errorf("%w: %w", ErrNotForUs, err)
		case errors.Is(err, welcome.ErrMissingPSK):
			return nil, fmt.Errorf("%w: %w", ErrMissingPSK, err)
		case errors.Is(err, ErrMissingTree), errors.Is(err, ErrInvalidGroupInfo), errors.Is(err, ErrWelcomeEpoch):
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}
	return joined, nil
}

// joinedPrivate is the private part of the member that joined t's epoch
// by the opened Welcome: the leaf of kp, which must be in t and support
// the group's extensions (§13.4), with the keys that the Welcome's path
// secret, if any, gives the nodes above it.
func joinedPrivate(t *tree.Tree, joined *welcome.Joined, kp *KeyPackageBundle) (*Private, error) {
	gi := &joined.GroupInfo
	if err := leafSupportsExtensions(&kp.KeyPackage.LeafNode, gi.GroupContext.Extensions); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	me, ok := findLeaf(t, &kp.KeyPackage.LeafNode)
	if !ok {
		return nil, fmt.Errorf("%w: our leaf is not in the tree", ErrInvalidWelcome)
	}
	path := treekem.NewPrivateState(me, kp.EncryptionKey)
	if ps := joined.GroupSecrets.PathSecret; ps != nil {
		var err error
		if path, err = path.WithJoinerPathSecret(t, treemath.LeafIndex(gi.Signer), ps); err != nil {
			return nil, fmt.Errorf("%w: path secret: %w", ErrInvalidWelcome, err)
		}
	}
	return NewPrivate(me, kp.SignatureKey, path), nil
}

// treeFor builds the tree a GroupInfo describes: from its ratchet_tree
// extension, or else the one supplied out of band.
func treeFor(gi *message.GroupInfo, supplied message.RatchetTree) (*tree.Tree, error) {
	s, err := suite.Lookup(gi.GroupContext.CipherSuite)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	rt := supplied
	if e, ok := message.FindExtension(gi.Extensions, message.ExtensionRatchetTree); ok {
		var fromExt message.RatchetTree
		if err := codec.Unmarshal(e.Data, &fromExt, "ratchet_tree"); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
		}
		rt = fromExt
	}
	if rt == nil {
		return nil, ErrMissingTree
	}
	t, err := tree.FromRatchetTree(s, rt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	return t, nil
}

// validateTree performs the joiner's full tree validation (§12.4.3.1).
func validateTree(t *tree.Tree, ctx *message.GroupContext, cfg *Config) error {
	if err := t.Validate(tree.ValidateOptions{
		GroupID:  ctx.GroupID,
		Version:  ctx.Version,
		TreeHash: ctx.TreeHash,
		Required: requiredCapabilities(ctx.Extensions),
		Now:      cfg.now(),
	}); err != nil {
		return fmt.Errorf("%w: tree: %w", ErrInvalidGroupInfo, err)
	}
	return nil
}

// findLeaf returns the leaf of t identical to leaf.
func findLeaf(t *tree.Tree, leaf *message.LeafNode) (treemath.LeafIndex, bool) {
	want := codec.Marshal(leaf)
	var found treemath.LeafIndex
	ok := false
	t.Members(func(l treemath.LeafIndex, n *message.LeafNode) bool {
		if bytes.Equal(n.EncryptionKey, leaf.EncryptionKey) && bytes.Equal(codec.Marshal(n), want) {
			found, ok = l, true
			return false
		}
		return true
	})
	return found, ok
}
