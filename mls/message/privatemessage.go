package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// PrivateMessage is encrypted content (RFC 9420 §6.3).
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

// MarshalMLS implements codec.Marshaler.
func (p *PrivateMessage) MarshalMLS(w *codec.Writer) {
	w.Opaque(p.GroupID)
	w.Uint64(p.Epoch)
	w.Uint8(uint8(p.ContentType))
	w.Opaque(p.AuthenticatedData)
	w.Opaque(p.EncryptedSenderData)
	w.Opaque(p.Ciphertext)
}

// UnmarshalMLS implements codec.Unmarshaler. An unknown content type is
// rejected here, since the ciphertext could not be decoded anyway.
func (p *PrivateMessage) UnmarshalMLS(r *codec.Reader) {
	p.GroupID = r.Opaque("private_message.group_id")
	p.Epoch = r.Uint64("private_message.epoch")
	p.ContentType = readContentType(r, "private_message.content_type")
	p.AuthenticatedData = r.Opaque("private_message.authenticated_data")
	p.EncryptedSenderData = r.Opaque("private_message.encrypted_sender_data")
	p.Ciphertext = r.Opaque("private_message.ciphertext")
}

// ContentAAD returns the AAD for the encryption of p's content.
func (p *PrivateMessage) ContentAAD() *PrivateContentAAD {
	return &PrivateContentAAD{GroupID: p.GroupID, Epoch: p.Epoch, ContentType: p.ContentType, AuthenticatedData: p.AuthenticatedData}
}

// SenderDataAAD returns the AAD for the encryption of p's sender data.
func (p *PrivateMessage) SenderDataAAD() *SenderDataAAD {
	return &SenderDataAAD{GroupID: p.GroupID, Epoch: p.Epoch, ContentType: p.ContentType}
}

// PrivateMessageContent is the plaintext of PrivateMessage.Ciphertext
// (RFC 9420 §6.3.1). Its content type is not part of the encoding; it comes
// from the enclosing PrivateMessage, so decoding goes through
// UnmarshalPrivateMessageContent rather than codec.Unmarshal.
type PrivateMessageContent struct {
	ContentType     ContentType
	ApplicationData []byte
	Proposal        *Proposal
	Commit          *Commit
	Auth            FramedContentAuthData
	// Padding is the number of zero bytes that follow the auth data.
	Padding int
}

// MarshalMLS implements codec.Marshaler.
func (c *PrivateMessageContent) MarshalMLS(w *codec.Writer) {
	marshalBody(w, c.ContentType, c.ApplicationData, c.Proposal, c.Commit)
	c.Auth.MarshalMLSFor(w, c.ContentType)
	w.Raw(make([]byte, c.Padding))
}

// UnmarshalPrivateMessageContent decodes the plaintext of a PrivateMessage
// whose content type is ct. Everything after the auth data is padding and
// must be zero.
func UnmarshalPrivateMessageContent(data []byte, ct ContentType) (*PrivateMessageContent, error) {
	c := &PrivateMessageContent{ContentType: ct}
	r := codec.NewReader(data)
	c.ApplicationData, c.Proposal, c.Commit = unmarshalBody(r, ct, "private_message_content")
	c.Auth.UnmarshalMLSFor(r, ct)
	if err := r.Err(); err != nil {
		return nil, err
	}
	padding := data[len(data)-r.Remaining():]
	// Padding is plaintext the sender chose, not a secret, so an early
	// exit reveals nothing.
	for i, b := range padding {
		if b != 0 {
			r.Fail("private_message_content.padding", fmt.Errorf("%w at padding byte %d", ErrNonZeroPadding, i))
			return nil, r.Err()
		}
	}
	c.Padding = len(padding)
	return c, nil
}

// SenderData is the plaintext of PrivateMessage.EncryptedSenderData
// (RFC 9420 §6.3.2).
type SenderData struct {
	LeafIndex  uint32
	Generation uint32
	ReuseGuard [4]byte
}

// MarshalMLS implements codec.Marshaler.
func (s *SenderData) MarshalMLS(w *codec.Writer) {
	w.Uint32(s.LeafIndex)
	w.Uint32(s.Generation)
	w.Raw(s.ReuseGuard[:])
}

// UnmarshalMLS implements codec.Unmarshaler.
func (s *SenderData) UnmarshalMLS(r *codec.Reader) {
	s.LeafIndex = r.Uint32("sender_data.leaf_index")
	s.Generation = r.Uint32("sender_data.generation")
	copy(s.ReuseGuard[:], r.Fixed("sender_data.reuse_guard", 4))
}

// PrivateContentAAD is the AAD of the content encryption (RFC 9420 §6.3.1).
type PrivateContentAAD struct {
	GroupID           []byte
	Epoch             uint64
	ContentType       ContentType
	AuthenticatedData []byte
}

// MarshalMLS implements codec.Marshaler.
func (a *PrivateContentAAD) MarshalMLS(w *codec.Writer) {
	w.Opaque(a.GroupID)
	w.Uint64(a.Epoch)
	w.Uint8(uint8(a.ContentType))
	w.Opaque(a.AuthenticatedData)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (a *PrivateContentAAD) UnmarshalMLS(r *codec.Reader) {
	a.GroupID = r.Opaque("private_content_aad.group_id")
	a.Epoch = r.Uint64("private_content_aad.epoch")
	a.ContentType = readContentType(r, "private_content_aad.content_type")
	a.AuthenticatedData = r.Opaque("private_content_aad.authenticated_data")
}

// SenderDataAAD is the AAD of the sender data encryption (RFC 9420 §6.3.2).
type SenderDataAAD struct {
	GroupID     []byte
	Epoch       uint64
	ContentType ContentType
}

// MarshalMLS implements codec.Marshaler.
func (a *SenderDataAAD) MarshalMLS(w *codec.Writer) {
	w.Opaque(a.GroupID)
	w.Uint64(a.Epoch)
	w.Uint8(uint8(a.ContentType))
}

// UnmarshalMLS implements codec.Unmarshaler.
func (a *SenderDataAAD) UnmarshalMLS(r *codec.Reader) {
	a.GroupID = r.Opaque("sender_data_aad.group_id")
	a.Epoch = r.Uint64("sender_data_aad.epoch")
	a.ContentType = readContentType(r, "sender_data_aad.content_type")
}
