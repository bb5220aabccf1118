package framing

import (
	"crypto/hmac"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// SenderKey returns the signature public key that must have signed
// content (§6.1): a member's leaf key, an external sender's key from the
// external_senders extension, or the key in the new member's LeafNode. It
// returns nil when there is none (a blank leaf, an index out of range).
type SenderKey func(content *message.FramedContent) []byte

// ProtectPublic wraps signed content in a PublicMessage, adding the
// membership tag when the sender is a member. Application data is refused:
// §6.2 requires it to be encrypted.
func ProtectPublic(s *suite.Suite, ac *message.AuthenticatedContent, ctx *message.GroupContext, membershipKey []byte) (*message.PublicMessage, error) {
	if ac.WireFormat != message.WireFormatPublicMessage {
		return nil, fmt.Errorf("%w: content signed for wire format %d", ErrWireFormat, ac.WireFormat)
	}
	if ac.Content.ContentType == message.ContentApplication {
		return nil, ErrApplicationInPublic
	}
	pm := &message.PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == message.SenderMember {
		tag, err := MembershipTag(s, membershipKey, ac, ctx)
		if err != nil {
			return nil, err
		}
		pm.MembershipTag = tag
	}
	return pm, nil
}

// UnprotectPublic checks a PublicMessage against the group context of the
// receiver's epoch: group and epoch, the membership tag of a member
// sender, and the signature against the key senderKey names. It returns
// the authenticated content; a commit's confirmation tag is left for the
// caller to check once the commit is processed.
func UnprotectPublic(s *suite.Suite, pm *message.PublicMessage, ctx *message.GroupContext, membershipKey []byte, senderKey SenderKey) (*message.AuthenticatedContent, error) {
	ac, check, err := UnprotectPublicDeferred(s, pm, ctx, membershipKey, senderKey)
	if err != nil {
		return nil, err
	}
	if err := verify(s, check); err != nil {
		return nil, err
	}
	return ac, nil
}

// UnprotectPublicDeferred is UnprotectPublic without the signature check,
// which it returns for the caller to make with others at once
// (VerifySignatures). Nothing in the receiver's state depends on a
// PublicMessage until its content is used, so a caller only has to make
// the check before it uses ac.
func UnprotectPublicDeferred(s *suite.Suite, pm *message.PublicMessage, ctx *message.GroupContext, membershipKey []byte, senderKey SenderKey) (*message.AuthenticatedContent, suite.SignatureCheck, error) {
	if err := checkGroup(pm.Content.GroupID, pm.Content.Epoch, ctx); err != nil {
		return nil, suite.SignatureCheck{}, err
	}
	if pm.Content.ContentType == message.ContentApplication {
		return nil, suite.SignatureCheck{}, ErrApplicationInPublic
	}
	ac := pm.AuthenticatedContent()
	if pm.Content.Sender.Type != message.SenderMember {
		pub := senderKey(&pm.Content)
		if pub == nil {
			return nil, suite.SignatureCheck{}, fmt.Errorf("%w: sender type %d", ErrUnknownSender, pm.Content.Sender.Type)
		}
		check, err := signatureCheck(pub, ac, ctx)
		if err != nil {
			return nil, suite.SignatureCheck{}, err
		}
		return ac, check, nil
	}
	// A member's content is encoded once: the signed FramedContentTBS is a
	// prefix of the AuthenticatedContentTBM the membership tag covers.
	tbm, tbsLen := encodeTBM(ac, ctx)
	if !hmac.Equal(s.MAC(membershipKey, tbm), pm.MembershipTag) {
		return nil, suite.SignatureCheck{}, ErrBadMembershipTag
	}
	pub := senderKey(&pm.Content)
	if pub == nil {
		return nil, suite.SignatureCheck{}, fmt.Errorf("%w: sender type %d", ErrUnknownSender, pm.Content.Sender.Type)
	}
	return ac, suite.SignatureCheck{Key: pub, Label: signatureLabel, Content: tbm[:tbsLen], Signature: ac.Auth.Signature}, nil
}
