package message

import (
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

// minimalLeaf is a LeafNode encoding up to (and including) the source byte:
// empty keys, a basic credential with an empty identity, empty
// capabilities.
var minimalLeafHead = []byte{0, 0, 0x00, 0x01, 0, 0, 0, 0, 0, 0}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestDecodeRejections(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		v     func() codec.Unmarshaler
		want  error
		field string
	}{
		{"unknown wire format", []byte{0, 1, 0, 9}, func() codec.Unmarshaler { return new(MLSMessage) },
			ErrUnknownWireFormat, "mls_message.wire_format"},
		{"reserved wire format", []byte{0, 1, 0, 0}, func() codec.Unmarshaler { return new(MLSMessage) },
			ErrUnknownWireFormat, "mls_message.wire_format"},
		{"unsupported version", []byte{0, 2, 0, 1}, func() codec.Unmarshaler { return new(MLSMessage) },
			ErrUnsupportedVersion, "mls_message.version"},
		{"truncated epoch", []byte{0, 1, 0, 2, 0x01, 0xaa, 0, 0, 0}, func() codec.Unmarshaler { return new(MLSMessage) },
			codec.ErrTruncated, "private_message.epoch"},
		{"vector longer than input", []byte{0, 1, 0, 2, 0x05, 0xaa}, func() codec.Unmarshaler { return new(MLSMessage) },
			codec.ErrLengthTooLarge, "private_message.group_id"},
		{"trailing bytes", []byte{0, 3, 0, 0, 0, 0, 0, 7, 0}, func() codec.Unmarshaler { return new(Remove) },
			codec.ErrTrailingData, "test"},
		{"bad optional marker", []byte{0x00, 0x02}, func() codec.Unmarshaler { return new(Commit) },
			codec.ErrInvalidValue, "commit.path"},
		{"bad optional in tree", []byte{0x01, 0x07}, func() codec.Unmarshaler { return new(RatchetTree) },
			codec.ErrInvalidValue, "ratchet_tree.node"},
		{"bad path_secret marker", []byte{0x00, 0x03, 0x00}, func() codec.Unmarshaler { return new(GroupSecrets) },
			codec.ErrInvalidValue, "group_secrets.path_secret"},
		{"unknown proposal type", []byte{0x0a, 0x0a, 0x00}, func() codec.Unmarshaler { return new(Proposal) },
			ErrUnknownProposalType, "proposal.proposal_type"},
		{"unknown proposal-or-ref", []byte{0x02, 0x03, 0x00}, func() codec.Unmarshaler { return new(Commit) },
			ErrUnknownProposalOrRefType, "proposal_or_ref.type"},
		{"unknown credential type", []byte{0x0a, 0x0a, 0x00}, func() codec.Unmarshaler { return new(Credential) },
			ErrUnknownCredentialType, "credential.credential_type"},
		{"unknown leaf node source", cat(minimalLeafHead, []byte{0x04, 0, 0}), func() codec.Unmarshaler { return new(LeafNode) },
			ErrUnknownLeafNodeSource, "leaf_node.leaf_node_source"},
		{"unknown node type", []byte{0x02, 0x01, 0x03}, func() codec.Unmarshaler { return new(RatchetTree) },
			ErrUnknownNodeType, "node.node_type"},
		{"unknown psk type", []byte{0x03, 0x00}, func() codec.Unmarshaler { return new(PreSharedKeyID) },
			ErrUnknownPSKType, "psk_id.psktype"},
		{"unknown sender type", []byte{0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x05}, func() codec.Unmarshaler { return new(FramedContent) },
			ErrUnknownSenderType, "sender.sender_type"},
		{"unknown content type", []byte{0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0x04}, func() codec.Unmarshaler { return new(FramedContent) },
			ErrUnknownContentType, "framed_content.content_type"},
		{"unknown private content type", []byte{0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0, 0, 0}, func() codec.Unmarshaler { return new(PrivateMessage) },
			ErrUnknownContentType, "private_message.content_type"},
		{"odd-length uint16 list", []byte{0x01, 0xaa, 0, 0, 0, 0}, func() codec.Unmarshaler { return new(Capabilities) },
			codec.ErrTruncated, "capabilities.versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := codec.Unmarshal(tt.in, tt.v(), "test")
			var de *codec.DecodeError
			if !errors.Is(err, tt.want) || !errors.As(err, &de) || de.Field != tt.field {
				t.Fatalf("got %v, want %v in field %q", err, tt.want, tt.field)
			}
		})
	}
}

func TestPrivateMessageContentPadding(t *testing.T) {
	// application_data "hi", signature 0xaa, then padding.
	body := []byte{0x02, 'h', 'i', 0x01, 0xaa}
	tests := []struct {
		name    string
		padding []byte
		want    error
	}{
		{"no padding", nil, nil},
		{"zero padding", make([]byte, 32), nil},
		{"non-zero last byte", []byte{0, 0, 1}, ErrNonZeroPadding},
		{"non-zero first byte", []byte{0x80}, ErrNonZeroPadding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cat(body, tt.padding)
			c, err := UnmarshalPrivateMessageContent(in, ContentApplication)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if c.Padding != len(tt.padding) || string(c.ApplicationData) != "hi" {
				t.Fatalf("decoded %+v", c)
			}
			if got := codec.Marshal(c); string(got) != string(in) {
				t.Fatalf("re-encoded %x, want %x", got, in)
			}
		})
	}
}

func TestPrivateMessageContentNeedsKnownType(t *testing.T) {
	_, err := UnmarshalPrivateMessageContent([]byte{0x00, 0x00}, 0)
	if !errors.Is(err, ErrUnknownContentType) {
		t.Fatalf("got %v", err)
	}
}

// TestTruncatedVectorsRejected cuts real messages at every length and
// requires each prefix to be rejected as truncated, never decoded.
func TestTruncatedVectorsRejected(t *testing.T) {
	var cases []messagesCase
	vectors.Load(t, "messages.json", &cases)
	for _, f := range cases[0].fields() {
		for n := 0; n < len(f.data); n++ {
			err := codec.Unmarshal(f.data[:n], f.value, f.name)
			if !errors.Is(err, codec.ErrTruncated) && !errors.Is(err, codec.ErrLengthTooLarge) {
				t.Fatalf("%s cut to %d bytes: got %v", f.name, n, err)
			}
		}
		err := codec.Unmarshal(append(append([]byte{}, f.data...), 0), f.value, f.name)
		if !errors.Is(err, codec.ErrTrailingData) {
			t.Fatalf("%s with a trailing byte: got %v", f.name, err)
		}
	}
}
