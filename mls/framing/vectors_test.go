package framing

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

type protectionCase struct {
	CipherSuite             uint16      `json:"cipher_suite"`
	GroupID                 vectors.Hex `json:"group_id"`
	Epoch                   uint64      `json:"epoch"`
	TreeHash                vectors.Hex `json:"tree_hash"`
	ConfirmedTranscriptHash vectors.Hex `json:"confirmed_transcript_hash"`
	SignaturePriv           vectors.Hex `json:"signature_priv"`
	SignaturePub            vectors.Hex `json:"signature_pub"`
	EncryptionSecret        vectors.Hex `json:"encryption_secret"`
	SenderDataSecret        vectors.Hex `json:"sender_data_secret"`
	MembershipKey           vectors.Hex `json:"membership_key"`
	Proposal                vectors.Hex `json:"proposal"`
	ProposalPub             vectors.Hex `json:"proposal_pub"`
	ProposalPriv            vectors.Hex `json:"proposal_priv"`
	Commit                  vectors.Hex `json:"commit"`
	CommitPub               vectors.Hex `json:"commit_pub"`
	CommitPriv              vectors.Hex `json:"commit_priv"`
	Application             vectors.Hex `json:"application"`
	ApplicationPriv         vectors.Hex `json:"application_priv"`
}

// The vectors' sender is always leaf 1 of a two-leaf tree.
const vectorSender = 1

func (c *protectionCase) context() *message.GroupContext {
	return &message.GroupContext{
		Version:                 message.MLS10,
		CipherSuite:             suite.ID(c.CipherSuite),
		GroupID:                 c.GroupID,
		Epoch:                   c.Epoch,
		TreeHash:                c.TreeHash,
		ConfirmedTranscriptHash: c.ConfirmedTranscriptHash,
		Extensions:              []message.Extension{},
	}
}

func (c *protectionCase) memberKey(leaf uint32) []byte {
	if leaf == vectorSender {
		return c.SignaturePub
	}
	return nil
}

func (c *protectionCase) senderKey(fc *message.FramedContent) []byte {
	if fc.Sender.Type == message.SenderMember {
		return c.memberKey(fc.Sender.LeafIndex)
	}
	return nil
}

// body returns the encoding of the content's body, for comparison with
// the vector's raw proposal, commit or application data.
func body(fc *message.FramedContent) []byte {
	switch fc.ContentType {
	case message.ContentProposal:
		return codec.Marshal(fc.Proposal)
	case message.ContentCommit:
		return codec.Marshal(fc.Commit)
	}
	return fc.ApplicationData
}

func decodeMLSMessage(data []byte, wf message.WireFormat) (*message.MLSMessage, error) {
	var m message.MLSMessage
	if err := codec.Unmarshal(data, &m, "mls_message"); err != nil {
		return nil, err
	}
	if m.WireFormat != wf {
		return nil, fmt.Errorf("wire format %d, want %d", m.WireFormat, wf)
	}
	return &m, nil
}

// TestMessageProtectionVectors follows test-vectors.md: for each of
// proposal, commit and application, unprotect the given PublicMessage and
// PrivateMessage, and protect the raw value both ways and unprotect the
// result (an application PublicMessage must be refused).
func TestMessageProtectionVectors(t *testing.T) {
	vectors.Run(t, "message-protection.json", checkProtectionCase, func(c *protectionCase) string { return fmt.Sprintf("suite %d", c.CipherSuite) })
}

func checkProtectionCase(c *protectionCase) error {
	s, err := suite.Lookup(suite.ID(c.CipherSuite))
	if err != nil {
		return err
	}
	ctx := c.context()
	kinds := []struct {
		name      string
		ct        message.ContentType
		raw       []byte
		pub, priv []byte
	}{
		{"proposal", message.ContentProposal, c.Proposal, c.ProposalPub, c.ProposalPriv},
		{"commit", message.ContentCommit, c.Commit, c.CommitPub, c.CommitPriv},
		{"application", message.ContentApplication, c.Application, nil, c.ApplicationPriv},
	}
	for _, k := range kinds {
		tree, err := secrettree.New(s, c.EncryptionSecret, 2, secrettree.Options{})
		if err != nil {
			return err
		}
		if err := checkPublic(s, c, ctx, k.ct, k.raw, k.pub); err != nil {
			return fmt.Errorf("%s public: %w", k.name, err)
		}
		if err := checkPrivate(s, c, ctx, tree, k.ct, k.raw, k.priv); err != nil {
			return fmt.Errorf("%s private: %w", k.name, err)
		}
	}
	return nil
}

// content builds the FramedContent that carries raw as content type ct.
func content(ctx *message.GroupContext, ct message.ContentType, raw []byte) (*message.FramedContent, error) {
	fc := &message.FramedContent{
		GroupID:           ctx.GroupID,
		Epoch:             ctx.Epoch,
		Sender:            message.MemberSender(vectorSender),
		AuthenticatedData: []byte{},
		ContentType:       ct,
	}
	switch ct {
	case message.ContentProposal:
		fc.Proposal = new(message.Proposal)
		return fc, codec.Unmarshal(raw, fc.Proposal, "proposal")
	case message.ContentCommit:
		fc.Commit = new(message.Commit)
		return fc, codec.Unmarshal(raw, fc.Commit, "commit")
	}
	fc.ApplicationData = raw
	return fc, nil
}

func signed(s *suite.Suite, c *protectionCase, ctx *message.GroupContext, wf message.WireFormat, ct message.ContentType, raw []byte) (*message.AuthenticatedContent, error) {
	fc, err := content(ctx, ct, raw)
	if err != nil {
		return nil, err
	}
	priv, err := s.NewSignaturePrivateKey(c.SignaturePriv)
	if err != nil {
		return nil, err
	}
	ac, err := Sign(priv, wf, fc, ctx)
	if err != nil {
		return nil, err
	}
	if ct == message.ContentCommit {
		// Any MAC will do: the vectors give no confirmation key, and
		// framing does not check the tag.
		ac.Auth.ConfirmationTag = s.MAC([]byte("confirmation key"), ctx.ConfirmedTranscriptHash)
	}
	return ac, nil
}

func checkPublic(s *suite.Suite, c *protectionCase, ctx *message.GroupContext, ct message.ContentType, raw, wire []byte) error {
	if ct == message.ContentApplication {
		ac, err := signed(s, c, ctx, message.WireFormatPublicMessage, ct, raw)
		if err != nil {
			return err
		}
		if _, err := ProtectPublic(s, ac, ctx, c.MembershipKey); !errors.Is(err, ErrApplicationInPublic) {
			return fmt.Errorf("protecting application data as PublicMessage: %v, want ErrApplicationInPublic", err)
		}
		return nil
	}
	m, err := decodeMLSMessage(wire, message.WireFormatPublicMessage)
	if err != nil {
		return err
	}
	ac, err := UnprotectPublic(s, m.PublicMessage, ctx, c.MembershipKey, c.senderKey)
	if err != nil {
		return fmt.Errorf("unprotect given: %w", err)
	}
	if !bytes.Equal(body(&ac.Content), raw) {
		return errors.New("given message carries other content")
	}
	ac, err = signed(s, c, ctx, message.WireFormatPublicMessage, ct, raw)
	if err != nil {
		return err
	}
	pm, err := ProtectPublic(s, ac, ctx, c.MembershipKey)
	if err != nil {
		return err
	}
	// Round-trip through the wire encoding, as a receiver would see it.
	var back message.PublicMessage
	if err := codec.Unmarshal(codec.Marshal(pm), &back, "public_message"); err != nil {
		return err
	}
	got, err := UnprotectPublic(s, &back, ctx, c.MembershipKey, c.senderKey)
	if err != nil {
		return fmt.Errorf("unprotect own: %w", err)
	}
	if !bytes.Equal(body(&got.Content), raw) {
		return errors.New("own message carries other content")
	}
	return nil
}

func checkPrivate(s *suite.Suite, c *protectionCase, ctx *message.GroupContext, tree *secrettree.Tree, ct message.ContentType, raw, wire []byte) error {
	m, err := decodeMLSMessage(wire, message.WireFormatPrivateMessage)
	if err != nil {
		return err
	}
	ac, err := UnprotectPrivate(s, m.PrivateMessage, ctx, tree, c.SenderDataSecret, c.memberKey)
	if err != nil {
		return fmt.Errorf("unprotect given: %w", err)
	}
	if !bytes.Equal(body(&ac.Content), raw) {
		return errors.New("given message carries other content")
	}

	// The sender and the receiver each hold their own copy of the tree.
	sender, err := secrettree.New(s, c.EncryptionSecret, 2, secrettree.Options{})
	if err != nil {
		return err
	}
	receiver := sender.Clone()
	ac, err = signed(s, c, ctx, message.WireFormatPrivateMessage, ct, raw)
	if err != nil {
		return err
	}
	pm, err := ProtectPrivate(s, ac, sender, c.SenderDataSecret, 7)
	if err != nil {
		return err
	}
	var back message.PrivateMessage
	if err := codec.Unmarshal(codec.Marshal(pm), &back, "private_message"); err != nil {
		return err
	}
	got, err := UnprotectPrivate(s, &back, ctx, receiver, c.SenderDataSecret, c.memberKey)
	if err != nil {
		return fmt.Errorf("unprotect own: %w", err)
	}
	if !bytes.Equal(body(&got.Content), raw) {
		return errors.New("own message carries other content")
	}
	return nil
}

type transcriptCase struct {
	CipherSuite                  uint16      `json:"cipher_suite"`
	ConfirmationKey              vectors.Hex `json:"confirmation_key"`
	AuthenticatedContent         vectors.Hex `json:"authenticated_content"`
	InterimTranscriptHashBefore  vectors.Hex `json:"interim_transcript_hash_before"`
	ConfirmedTranscriptHashAfter vectors.Hex `json:"confirmed_transcript_hash_after"`
	InterimTranscriptHashAfter   vectors.Hex `json:"interim_transcript_hash_after"`
}

func TestTranscriptHashVectors(t *testing.T) {
	var cases []transcriptCase
	vectors.Load(t, "transcript-hashes.json", &cases)
	passed := 0
	for i, c := range cases {
		if err := checkTranscriptCase(c); err != nil {
			t.Errorf("case %d (suite %d): %v", i, c.CipherSuite, err)
			continue
		}
		passed++
	}
	vectors.Report(t, "transcript-hashes.json", passed, len(cases))
}

func checkTranscriptCase(c transcriptCase) error {
	s, err := suite.Lookup(suite.ID(c.CipherSuite))
	if err != nil {
		return err
	}
	var ac message.AuthenticatedContent
	if err := codec.Unmarshal(c.AuthenticatedContent, &ac, "authenticated_content"); err != nil {
		return err
	}
	if ac.Content.ContentType != message.ContentCommit {
		return fmt.Errorf("content type %d, want commit", ac.Content.ContentType)
	}
	if err := VerifyConfirmationTag(s, c.ConfirmationKey, c.ConfirmedTranscriptHashAfter, ac.Auth.ConfirmationTag); err != nil {
		return err
	}
	confirmed, err := ConfirmedTranscriptHash(s, c.InterimTranscriptHashBefore, &ac)
	if err != nil {
		return err
	}
	if !bytes.Equal(confirmed, c.ConfirmedTranscriptHashAfter) {
		return errors.New("confirmed transcript hash mismatch")
	}
	if !bytes.Equal(InterimTranscriptHash(s, confirmed, ac.Auth.ConfirmationTag), c.InterimTranscriptHashAfter) {
		return errors.New("interim transcript hash mismatch")
	}
	return nil
}
