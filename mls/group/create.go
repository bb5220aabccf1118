package group

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
)

// Create starts a new group (§11) with the creator's KeyPackage bundle as
// its only member, at epoch 0, with the given GroupContext extensions.
func Create(kp *KeyPackageBundle, groupID []byte, extensions []message.Extension, cfg Config) (*Group, error) {
	if err := kp.Check(); err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	s := kp.SignatureKey.Suite()
	leaf := kp.KeyPackage.LeafNode
	if err := checkExtensionsSupported(&leaf, extensions); err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	if err := tree.ValidateLeafNode(s, &leaf, tree.LeafContext{Version: message.MLS10, Required: requiredCapabilities(extensions)}); err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	t := tree.New(s, &leaf)
	ctx := message.GroupContext{
		Version:                 message.MLS10,
		CipherSuite:             s.ID(),
		GroupID:                 bytes.Clone(groupID),
		Epoch:                   0,
		TreeHash:                t.RootHash(),
		ConfirmedTranscriptHash: []byte{},
		Extensions:              nonNil(slices.Clone(extensions)),
	}
	initSecret := make([]byte, s.HashSize())
	if _, err := rand.Read(initSecret); err != nil {
		return nil, err
	}
	d, err := keyschedule.Derive(s, keyschedule.Input{InitSecret: initSecret, GroupContext: codec.Marshal(&ctx), Scheme: cfg.Scheme})
	clear(initSecret)
	if err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	clear(d.JoinerSecret)
	clear(d.WelcomeSecret)
	tag, err := d.Epoch.ConfirmationTag(ctx.ConfirmedTranscriptHash)
	if err != nil {
		return nil, err
	}
	pub, err := newPublic(s, ctx, t, tag, d.Epoch, cfg.SecretTree)
	if err != nil {
		return nil, err
	}
	priv := NewPrivate(0, kp.SignatureKey, treekem.NewPrivateState(0, kp.EncryptionKey))
	return New(pub, priv, cfg), nil
}

// requiredCapabilities decodes the required_capabilities extension, if
// present and well formed.
func requiredCapabilities(exts []message.Extension) *message.RequiredCapabilities {
	e, ok := message.FindExtension(exts, message.ExtensionRequiredCapabilities)
	if !ok {
		return nil
	}
	rc := new(message.RequiredCapabilities)
	if codec.Unmarshal(e.Data, rc, "required_capabilities") != nil {
		return nil
	}
	return rc
}

// defaultExtension reports whether e is one of RFC 9420's extension types,
// which every client supports without listing them.
func defaultExtension(e message.ExtensionType) bool {
	return e >= message.ExtensionApplicationID && e <= message.ExtensionExternalSenders
}

// checkExtensionsSupported checks that leaf supports every GroupContext
// extension in exts and decodes those it must understand.
func checkExtensionsSupported(leaf *message.LeafNode, exts []message.Extension) error {
	if err := checkGroupExtensions(exts); err != nil {
		return err
	}
	return leafSupportsExtensions(leaf, exts)
}

// checkGroupExtensions checks a GroupContext extension list on its own:
// one extension of each type (§13.4) and well-formed contents for those
// we must understand.
func checkGroupExtensions(exts []message.Extension) error {
	seen := map[message.ExtensionType]bool{}
	for _, e := range exts {
		if seen[e.Type] {
			return fmt.Errorf("%w: extension %d listed twice", ErrInvalidProposal, e.Type)
		}
		seen[e.Type] = true
		switch e.Type {
		case message.ExtensionRequiredCapabilities:
			rc := new(message.RequiredCapabilities)
			if err := codec.Unmarshal(e.Data, rc, "required_capabilities"); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidProposal, err)
			}
		case message.ExtensionExternalSenders:
			var es message.ExternalSenders
			if err := codec.Unmarshal(e.Data, &es, "external_senders"); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidProposal, err)
			}
		}
	}
	return nil
}

// leafSupportsExtensions checks that leaf's capabilities list every
// extension type of exts that is not one of RFC 9420's defaults: every
// GroupContext extension must be supported by every member (§13.4).
func leafSupportsExtensions(leaf *message.LeafNode, exts []message.Extension) error {
	for _, e := range exts {
		if !defaultExtension(e.Type) && !slices.Contains(leaf.Capabilities.Extensions, e.Type) {
			return fmt.Errorf("%w: extension %d", ErrUnsupported, e.Type)
		}
	}
	return nil
}
