package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// FramedContent is the content of a message before it is protected
// (RFC 9420 §6). ContentType selects which one of ApplicationData, Proposal
// and Commit is the body; the other two are ignored when encoding and left
// zero when decoding.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte

	ContentType     ContentType
	ApplicationData []byte
	Proposal        *Proposal
	Commit          *Commit
}

// MarshalMLS implements codec.Marshaler.
func (c *FramedContent) MarshalMLS(w *codec.Writer) {
	w.Opaque(c.GroupID)
	w.Uint64(c.Epoch)
	c.Sender.MarshalMLS(w)
	w.Opaque(c.AuthenticatedData)
	w.Uint8(uint8(c.ContentType))
	marshalBody(w, c.ContentType, c.ApplicationData, c.Proposal, c.Commit)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (c *FramedContent) UnmarshalMLS(r *codec.Reader) {
	*c = FramedContent{}
	c.GroupID = r.Opaque("framed_content.group_id")
	c.Epoch = r.Uint64("framed_content.epoch")
	c.Sender.UnmarshalMLS(r)
	c.AuthenticatedData = r.Opaque("framed_content.authenticated_data")
	c.ContentType = readContentType(r, "framed_content.content_type")
	c.ApplicationData, c.Proposal, c.Commit = unmarshalBody(r, c.ContentType, "framed_content")
}

// marshalBody writes the body that ct selects. FramedContent and
// PrivateMessageContent share it. A missing body is a programming error,
// not something an encoding can express, so it panics.
func marshalBody(w *codec.Writer, ct ContentType, app []byte, p *Proposal, c *Commit) {
	switch ct {
	case ContentApplication:
		w.Opaque(app)
	case ContentProposal:
		if p == nil {
			panic("message: proposal content without a Proposal")
		}
		p.MarshalMLS(w)
	case ContentCommit:
		if c == nil {
			panic("message: commit content without a Commit")
		}
		c.MarshalMLS(w)
	}
}

func unmarshalBody(r *codec.Reader, ct ContentType, prefix string) (app []byte, p *Proposal, c *Commit) {
	switch ct {
	case ContentApplication:
		app = r.Opaque(prefix + ".application_data")
	case ContentProposal:
		p = new(Proposal)
		p.UnmarshalMLS(r)
	case ContentCommit:
		c = new(Commit)
		c.UnmarshalMLS(r)
	default:
		r.Fail(prefix+".content_type", fmt.Errorf("%w %d", ErrUnknownContentType, ct))
	}
	return app, p, c
}

// FramedContentAuthData authenticates a FramedContent (RFC 9420 §6.1).
// ConfirmationTag is on the wire only when the content is a commit, so
// encoding and decoding need the content type; it is not a
// codec.Marshaler on its own.
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte // present iff the content type is commit
}

// MarshalMLSFor encodes the auth data of content of type ct.
func (a *FramedContentAuthData) MarshalMLSFor(w *codec.Writer, ct ContentType) {
	w.Opaque(a.Signature)
	if ct == ContentCommit {
		w.Opaque(a.ConfirmationTag)
	}
}

// UnmarshalMLSFor decodes the auth data of content of type ct.
func (a *FramedContentAuthData) UnmarshalMLSFor(r *codec.Reader, ct ContentType) {
	*a = FramedContentAuthData{}
	a.Signature = r.Opaque("auth.signature")
	if ct == ContentCommit {
		a.ConfirmationTag = r.Opaque("auth.confirmation_tag")
	}
}

// AuthenticatedContent is a FramedContent together with its wire format and
// authentication (RFC 9420 §6). Its encoding is what a ProposalRef hashes
// and what the transcript hashes are built from.
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

// MarshalMLS implements codec.Marshaler.
func (a *AuthenticatedContent) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(a.WireFormat))
	a.Content.MarshalMLS(w)
	a.Auth.MarshalMLSFor(w, a.Content.ContentType)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (a *AuthenticatedContent) UnmarshalMLS(r *codec.Reader) {
	a.WireFormat = WireFormat(r.Uint16("authenticated_content.wire_format"))
	a.Content.UnmarshalMLS(r)
	a.Auth.UnmarshalMLSFor(r, a.Content.ContentType)
}

// TBS returns the structure the sender signs. ctx is the group context of
// the epoch and is required for member and new_member_commit senders.
func (a *AuthenticatedContent) TBS(ctx *GroupContext) *FramedContentTBS {
	return &FramedContentTBS{WireFormat: a.WireFormat, Content: a.Content, Context: ctx}
}

// ConfirmedTranscriptHashInput returns the input to the confirmed
// transcript hash for this content, which must be a commit.
func (a *AuthenticatedContent) ConfirmedTranscriptHashInput() *ConfirmedTranscriptHashInput {
	return &ConfirmedTranscriptHashInput{WireFormat: a.WireFormat, Content: a.Content, Signature: a.Auth.Signature}
}

// FramedContentTBS is the content that FramedContentAuthData.Signature
// signs with the label "FramedContentTBS" (RFC 9420 §6.1). It is only ever
// built, never decoded.
type FramedContentTBS struct {
	WireFormat WireFormat
	Content    FramedContent
	// Context is encoded only for member and new_member_commit senders,
	// and must then be set.
	Context *GroupContext
}

// MarshalMLS implements codec.Marshaler.
func (t *FramedContentTBS) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(MLS10))
	w.Uint16(uint16(t.WireFormat))
	t.Content.MarshalMLS(w)
	switch t.Content.Sender.Type {
	case SenderMember, SenderNewMemberCommit:
		if t.Context == nil {
			panic("message: FramedContentTBS for a member or new_member_commit sender needs the GroupContext")
		}
		t.Context.MarshalMLS(w)
	}
}

// AuthenticatedContentTBM is the input to a PublicMessage's membership tag
// (RFC 9420 §6.2): the signed content followed by its auth data.
type AuthenticatedContentTBM struct {
	ContentTBS FramedContentTBS
	Auth       FramedContentAuthData
}

// MarshalMLS implements codec.Marshaler.
func (t *AuthenticatedContentTBM) MarshalMLS(w *codec.Writer) {
	t.ContentTBS.MarshalMLS(w)
	t.Auth.MarshalMLSFor(w, t.ContentTBS.Content.ContentType)
}

// ConfirmedTranscriptHashInput is hashed into the confirmed transcript
// hash of the epoch a commit creates (RFC 9420 §8.2).
type ConfirmedTranscriptHashInput struct {
	WireFormat WireFormat
	Content    FramedContent // a commit
	Signature  []byte
}

// MarshalMLS implements codec.Marshaler.
func (c *ConfirmedTranscriptHashInput) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(c.WireFormat))
	c.Content.MarshalMLS(w)
	w.Opaque(c.Signature)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (c *ConfirmedTranscriptHashInput) UnmarshalMLS(r *codec.Reader) {
	c.WireFormat = WireFormat(r.Uint16("confirmed_transcript_hash_input.wire_format"))
	c.Content.UnmarshalMLS(r)
	c.Signature = r.Opaque("confirmed_transcript_hash_input.signature")
}

// InterimTranscriptHashInput is hashed into the interim transcript hash
// after a commit is confirmed (RFC 9420 §8.2).
type InterimTranscriptHashInput struct {
	ConfirmationTag []byte
}

// MarshalMLS implements codec.Marshaler.
func (i *InterimTranscriptHashInput) MarshalMLS(w *codec.Writer) {
	w.Opaque(i.ConfirmationTag)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (i *InterimTranscriptHashInput) UnmarshalMLS(r *codec.Reader) {
	i.ConfirmationTag = r.Opaque("interim_transcript_hash_input.confirmation_tag")
}
