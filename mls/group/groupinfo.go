package group

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// GroupInfoOptions choose the extensions of an exported GroupInfo.
type GroupInfoOptions struct {
	// RatchetTree includes the ratchet_tree extension.
	RatchetTree bool
	// ExternalPub includes the external_pub extension that external
	// commits need.
	ExternalPub bool
	// Extensions are further GroupInfo extensions.
	Extensions []message.Extension
}

// GroupInfo returns a GroupInfo of the current epoch signed by us
// (§12.4.3), for a joiner by external commit or by Welcome.
func (g *Group) GroupInfo(o GroupInfoOptions) (*message.GroupInfo, error) {
	if g.priv == nil {
		return nil, ErrNotMember
	}
	return g.groupInfo(o)
}

func (g *Group) groupInfo(o GroupInfoOptions) (*message.GroupInfo, error) {
	p := g.pub
	exts := append([]message.Extension{}, o.Extensions...)
	if o.RatchetTree {
		rt := p.tree.RatchetTree()
		exts = append(exts, message.Extension{Type: message.ExtensionRatchetTree, Data: codec.Marshal(rt)})
	}
	if o.ExternalPub {
		k, err := p.epoch.ExternalKey()
		if err != nil {
			return nil, err
		}
		exts = append(exts, message.Extension{Type: message.ExtensionExternalPub, Data: codec.Marshal(&message.ExternalPub{PublicKey: k.Public().Bytes()})})
	}
	gi := &message.GroupInfo{
		GroupContext:    p.ctx,
		Extensions:      exts,
		ConfirmationTag: p.confirmationTag,
		Signer:          uint32(g.priv.leaf),
	}
	sig, err := g.priv.signKey.SignWithLabel("GroupInfoTBS", gi.TBS())
	if err != nil {
		return nil, err
	}
	gi.Signature = sig
	return gi, nil
}

// VerifyGroupInfo checks a GroupInfo obtained from outside the group, as
// an external joiner or external sender must before relying on it
// (§12.4.3.2): it builds the ratchet tree (from the ratchet_tree
// extension, or else ratchetTree), verifies the signature with the
// signer's leaf key and validates the tree in full against the signed
// GroupContext. It returns the validated tree. The confirmation tag
// cannot be checked without the epoch's secrets.
func VerifyGroupInfo(gi *message.GroupInfo, ratchetTree message.RatchetTree, cfg Config) (*tree.Tree, error) {
	s, err := suite.Lookup(gi.GroupContext.CipherSuite)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	t, err := treeFor(gi, ratchetTree)
	if err != nil {
		return nil, err
	}
	signer := t.Leaf(treemath.LeafIndex(gi.Signer))
	if signer == nil {
		return nil, fmt.Errorf("%w: signer leaf %d is blank", ErrInvalidGroupInfo, gi.Signer)
	}
	if err := s.VerifyWithLabel(signer.SignatureKey, "GroupInfoTBS", gi.TBS(), gi.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	if err := validateTree(t, &gi.GroupContext, &cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// buildWelcome encrypts gi and the group secrets for each new member
// (§12.4.3.1).
func buildWelcome(s *suite.Suite, gi *message.GroupInfo, d *keyschedule.Derived, psks []message.PreSharedKeyID, adds []added, pathSecret func(treemath.LeafIndex) []byte) (*message.Welcome, error) {
	key, nonce := keyschedule.WelcomeKey(s, d.WelcomeSecret)
	defer clear(key)
	giBytes := codec.Marshal(gi)
	encGI, err := s.Seal(key, nonce, nil, giBytes)
	if err != nil {
		return nil, err
	}
	w := &message.Welcome{CipherSuite: s.ID(), Secrets: make([]message.EncryptedGroupSecrets, len(adds)), EncryptedGroupInfo: encGI}
	// Every new member's secrets are sealed under the same context, the
	// encrypted GroupInfo (the whole tree in a large group): its hash is
	// taken once, and the Encaps run as one batch.
	sc := s.NewSealContext("Welcome", encGI)
	initKeys := make([]*suite.HPKEPublicKey, len(adds))
	for i, a := range adds {
		if initKeys[i], err = s.NewHPKEPublicKey(a.keyPackage.InitKey); err != nil {
			return nil, fmt.Errorf("encrypt group secrets for leaf %d: %w", a.leaf, err)
		}
	}
	encs, errs := suite.EncapsulateAll(initKeys)
	defer func() {
		for _, e := range encs {
			if e != nil {
				e.Discard() // those not sealed, if one failed
			}
		}
	}()
	for i, a := range adds {
		if errs[i] != nil {
			return nil, fmt.Errorf("encrypt group secrets for leaf %d: %w", a.leaf, errs[i])
		}
		gs := message.GroupSecrets{JoinerSecret: d.JoinerSecret, PathSecret: pathSecret(a.leaf), PSKs: nonNil(psks)}
		plain := codec.Marshal(&gs)
		kem, ct, err := encs[i].Seal(sc, plain)
		clear(plain)
		clear(gs.PathSecret)
		if err != nil {
			return nil, fmt.Errorf("encrypt group secrets for leaf %d: %w", a.leaf, err)
		}
		w.Secrets[i] = message.EncryptedGroupSecrets{
			NewMember:             a.keyPackage.Ref(s),
			EncryptedGroupSecrets: message.HPKECiphertext{KEMOutput: kem, Ciphertext: ct},
		}
	}
	return w, nil
}
