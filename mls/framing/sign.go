package framing

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

const signatureLabel = "FramedContentTBS"

// needsContext reports whether the FramedContentTBS of a sender covers the
// GroupContext (§6.1): members and new members joining by external commit
// sign for a specific epoch; external senders and new-member proposals
// cannot know it.
func needsContext(t message.SenderType) bool {
	return t == message.SenderMember || t == message.SenderNewMemberCommit
}

func tbs(ac *message.AuthenticatedContent, ctx *message.GroupContext) ([]byte, error) {
	if needsContext(ac.Content.Sender.Type) && ctx == nil {
		return nil, fmt.Errorf("framing: sender type %d signs over the group context, none given", ac.Content.Sender.Type)
	}
	return codec.Marshal(ac.TBS(ctx)), nil
}

// Sign returns content signed for wire format wf. ctx is the group context
// of the content's epoch, required for member and new_member_commit
// senders. For a commit the caller sets Auth.ConfirmationTag afterwards,
// since it depends on the signature through the transcript hash.
func Sign(signer *suite.SignaturePrivateKey, wf message.WireFormat, content *message.FramedContent, ctx *message.GroupContext) (*message.AuthenticatedContent, error) {
	ac := &message.AuthenticatedContent{WireFormat: wf, Content: *content}
	in, err := tbs(ac, ctx)
	if err != nil {
		return nil, err
	}
	sig, err := signer.SignWithLabel(signatureLabel, in)
	if err != nil {
		return nil, fmt.Errorf("framing: sign content: %w", err)
	}
	ac.Auth.Signature = sig
	return ac, nil
}

// Verify checks the signature of ac against signaturePub, a signature key
// as the sender's LeafNode or ExternalSender carries it. A signature that
// does not verify, or a key that does not parse, yields an error wrapping
// suite.ErrBadSignature.
func Verify(s *suite.Suite, signaturePub []byte, ac *message.AuthenticatedContent, ctx *message.GroupContext) error {
	c, err := signatureCheck(signaturePub, ac, ctx)
	if err != nil {
		return err
	}
	return verify(s, c)
}

// verify makes a content's signature check and wraps a failure as
// UnprotectPublic and UnprotectPrivate report it.
func verify(s *suite.Suite, c suite.SignatureCheck) error {
	if err := s.Verify(c); err != nil {
		return fmt.Errorf("framing: %w", err)
	}
	return nil
}

// VerifySignatures makes checks at once (suite.VerifyBatch), the first a
// content's signature check, as UnprotectPublicDeferred returned it, and
// reports the first that fails with its error, wrapped as UnprotectPublic
// wraps it, or -1.
func VerifySignatures(s *suite.Suite, checks []suite.SignatureCheck) (int, error) {
	bad, err := s.VerifyBatch(checks)
	if err != nil {
		return bad, fmt.Errorf("framing: %w", err)
	}
	return -1, nil
}

// signatureCheck is the check of ac's signature against signaturePub.
func signatureCheck(signaturePub []byte, ac *message.AuthenticatedContent, ctx *message.GroupContext) (suite.SignatureCheck, error) {
	in, err := tbs(ac, ctx)
	if err != nil {
		return suite.SignatureCheck{}, err
	}
	return suite.SignatureCheck{Key: signaturePub, Label: signatureLabel, Content: in, Signature: ac.Auth.Signature}, nil
}

// MembershipTag computes MAC(membership_key, AuthenticatedContentTBM) for a
// member's PublicMessage (§6.2).
func MembershipTag(s *suite.Suite, membershipKey []byte, ac *message.AuthenticatedContent, ctx *message.GroupContext) ([]byte, error) {
	if ctx == nil {
		return nil, fmt.Errorf("framing: membership tag needs the group context")
	}
	tbm, _ := encodeTBM(ac, ctx)
	return s.MAC(membershipKey, tbm), nil
}

// encodeTBM returns the AuthenticatedContentTBM of a member's content and
// the length of the FramedContentTBS it begins with. ctx must not be nil.
func encodeTBM(ac *message.AuthenticatedContent, ctx *message.GroupContext) ([]byte, int) {
	var w codec.Writer
	ac.TBS(ctx).MarshalMLS(&w)
	n := w.Len()
	ac.Auth.MarshalMLSFor(&w, ac.Content.ContentType)
	return w.Bytes(), n
}

// checkGroup rejects content addressed to another group or epoch.
func checkGroup(groupID []byte, epoch uint64, ctx *message.GroupContext) error {
	if !bytes.Equal(groupID, ctx.GroupID) {
		return ErrWrongGroup
	}
	if epoch != ctx.Epoch {
		return fmt.Errorf("%w: message epoch %d, group epoch %d", ErrWrongEpoch, epoch, ctx.Epoch)
	}
	return nil
}
