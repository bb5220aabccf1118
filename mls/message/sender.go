package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// SenderType says who sent a message (RFC 9420 §6).
type SenderType uint8

// The sender types of RFC 9420 §6.
const (
	SenderMember            SenderType = 1
	SenderExternal          SenderType = 2
	SenderNewMemberProposal SenderType = 3
	SenderNewMemberCommit   SenderType = 4
)

func (t SenderType) known() bool { return t >= SenderMember && t <= SenderNewMemberCommit }

// Sender identifies the sender of a FramedContent. LeafIndex is meaningful
// only for SenderMember and SenderIndex only for SenderExternal (an index
// into the external_senders extension); the new-member types carry nothing.
type Sender struct {
	Type        SenderType
	LeafIndex   uint32
	SenderIndex uint32
}

// MemberSender returns the Sender for the member at leafIndex.
func MemberSender(leafIndex uint32) Sender {
	return Sender{Type: SenderMember, LeafIndex: leafIndex}
}

// MarshalMLS implements codec.Marshaler.
func (s *Sender) MarshalMLS(w *codec.Writer) {
	w.Uint8(uint8(s.Type))
	switch s.Type {
	case SenderMember:
		w.Uint32(s.LeafIndex)
	case SenderExternal:
		w.Uint32(s.SenderIndex)
	}
}

// UnmarshalMLS implements codec.Unmarshaler.
func (s *Sender) UnmarshalMLS(r *codec.Reader) {
	*s = Sender{Type: SenderType(r.Uint8("sender.sender_type"))}
	switch s.Type {
	case SenderMember:
		s.LeafIndex = r.Uint32("sender.leaf_index")
	case SenderExternal:
		s.SenderIndex = r.Uint32("sender.sender_index")
	case SenderNewMemberProposal, SenderNewMemberCommit:
	default:
		r.Fail("sender.sender_type", fmt.Errorf("%w %d", ErrUnknownSenderType, s.Type))
	}
}
