package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// MLSMessage is the outer envelope of everything MLS sends (RFC 9420 §6).
// WireFormat selects which one of the body pointers is set; the others are
// nil after decoding and ignored when encoding.
type MLSMessage struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

// MarshalMLS implements codec.Marshaler. A body pointer that the wire
// format selects but that is nil is a programming error and panics.
func (m *MLSMessage) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(m.Version))
	w.Uint16(uint16(m.WireFormat))
	var body codec.Marshaler
	switch m.WireFormat {
	case WireFormatPublicMessage:
		body = nilIfAbsent(m.PublicMessage)
	case WireFormatPrivateMessage:
		body = nilIfAbsent(m.PrivateMessage)
	case WireFormatWelcome:
		body = nilIfAbsent(m.Welcome)
	case WireFormatGroupInfo:
		body = nilIfAbsent(m.GroupInfo)
	case WireFormatKeyPackage:
		body = nilIfAbsent(m.KeyPackage)
	default:
		panic(fmt.Sprintf("message: MLSMessage with unknown wire format %d", m.WireFormat))
	}
	if body == nil {
		panic(fmt.Sprintf("message: MLSMessage with wire format %d has no body", m.WireFormat))
	}
	body.MarshalMLS(w)
}

// nilIfAbsent turns a nil pointer into a nil interface, so that the check
// above does not need one case per type.
func nilIfAbsent[T any, P marshalerPtr[T]](p P) codec.Marshaler {
	if p == nil {
		return nil
	}
	return p
}

// UnmarshalMLS implements codec.Unmarshaler. Versions other than mls10 are
// rejected because the body's layout depends on the version.
func (m *MLSMessage) UnmarshalMLS(r *codec.Reader) {
	*m = MLSMessage{}
	m.Version = ProtocolVersion(r.Uint16("mls_message.version"))
	if r.Err() == nil && m.Version != MLS10 {
		r.Fail("mls_message.version", fmt.Errorf("%w %d", ErrUnsupportedVersion, m.Version))
		return
	}
	m.WireFormat = WireFormat(r.Uint16("mls_message.wire_format"))
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		m.PublicMessage.UnmarshalMLS(r)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		m.PrivateMessage.UnmarshalMLS(r)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.UnmarshalMLS(r)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.UnmarshalMLS(r)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.UnmarshalMLS(r)
	default:
		r.Fail("mls_message.wire_format", fmt.Errorf("%w %d", ErrUnknownWireFormat, m.WireFormat))
	}
}

// ParseMLSMessage decodes a complete MLSMessage.
func ParseMLSMessage(data []byte) (*MLSMessage, error) {
	m := new(MLSMessage)
	if err := codec.Unmarshal(data, m, "mls_message"); err != nil {
		return nil, err
	}
	return m, nil
}
