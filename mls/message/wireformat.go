package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// WireFormat is a value from the IANA "MLS Wire Formats" registry.
type WireFormat uint16

// The wire formats of RFC 9420 §17.2.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

// ContentType says what a FramedContent carries (RFC 9420 §6).
type ContentType uint8

// The content types of RFC 9420 §6.
const (
	ContentApplication ContentType = 1
	ContentProposal    ContentType = 2
	ContentCommit      ContentType = 3
)

func (c ContentType) known() bool { return c >= ContentApplication && c <= ContentCommit }

// readContentType reads a ContentType and rejects values that select no
// known body, because every structure that carries one also carries, or
// is the key to, a body whose layout it selects.
func readContentType(r *codec.Reader, field string) ContentType {
	ct := ContentType(r.Uint8(field))
	if r.Err() == nil && !ct.known() {
		r.Fail(field, fmt.Errorf("%w %d", ErrUnknownContentType, ct))
	}
	return ct
}
