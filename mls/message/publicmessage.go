package message

import "github.com/mls-appservice/mls-appservice/mls/codec"

// PublicMessage is signed but not encrypted content (RFC 9420 §6.2).
type PublicMessage struct {
	Content FramedContent
	Auth    FramedContentAuthData
	// MembershipTag is on the wire only when the sender is a member.
	MembershipTag []byte
}

// MarshalMLS implements codec.Marshaler.
func (p *PublicMessage) MarshalMLS(w *codec.Writer) {
	p.Content.MarshalMLS(w)
	p.Auth.MarshalMLSFor(w, p.Content.ContentType)
	if p.Content.Sender.Type == SenderMember {
		w.Opaque(p.MembershipTag)
	}
}

// UnmarshalMLS implements codec.Unmarshaler.
func (p *PublicMessage) UnmarshalMLS(r *codec.Reader) {
	*p = PublicMessage{}
	p.Content.UnmarshalMLS(r)
	p.Auth.UnmarshalMLSFor(r, p.Content.ContentType)
	if p.Content.Sender.Type == SenderMember {
		p.MembershipTag = r.Opaque("public_message.membership_tag")
	}
}

// AuthenticatedContent returns the content and auth data of p with the
// public-message wire format, sharing p's slices.
func (p *PublicMessage) AuthenticatedContent() *AuthenticatedContent {
	return &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: p.Content, Auth: p.Auth}
}
