package message

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

// roundTrip is the property every fuzz target checks: decoding never
// panics, and whatever decodes re-encodes to the input bytes.
func roundTrip[T any, P interface {
	*T
	codec.Marshaler
	codec.Unmarshaler
}](t *testing.T, data []byte) {
	v := P(new(T))
	if codec.Unmarshal(data, v, "fuzz") != nil {
		return
	}
	if got := codec.Marshal(v); !bytes.Equal(got, data) {
		t.Fatalf("round trip:\n in %x\nout %x", data, got)
	}
}

// seed adds the fields of the first messages.json cases to the corpus.
func seed(f *testing.F, pick func(c *messagesCase) []byte) {
	var cases []messagesCase
	vectors.Load(f, "messages.json", &cases)
	for i := 0; i < len(cases) && i < 8; i++ {
		f.Add([]byte(pick(&cases[i])))
	}
}

func FuzzMLSMessage(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.MLSWelcome })
	seed(f, func(c *messagesCase) []byte { return c.MLSGroupInfo })
	seed(f, func(c *messagesCase) []byte { return c.MLSKeyPackage })
	seed(f, func(c *messagesCase) []byte { return c.PublicMessageApplication })
	seed(f, func(c *messagesCase) []byte { return c.PublicMessageProposal })
	seed(f, func(c *messagesCase) []byte { return c.PublicMessageCommit })
	seed(f, func(c *messagesCase) []byte { return c.PrivateMessage })
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[MLSMessage](t, data) })
}

func FuzzProposal(f *testing.F) {
	// Proposal vectors are bare bodies; prefix each with its type.
	for _, p := range []struct {
		typ  ProposalType
		pick func(c *messagesCase) []byte
	}{
		{ProposalAdd, func(c *messagesCase) []byte { return c.AddProposal }},
		{ProposalUpdate, func(c *messagesCase) []byte { return c.UpdateProposal }},
		{ProposalRemove, func(c *messagesCase) []byte { return c.RemoveProposal }},
		{ProposalPreSharedKey, func(c *messagesCase) []byte { return c.PreSharedKeyProposal }},
		{ProposalReInit, func(c *messagesCase) []byte { return c.ReInitProposal }},
		{ProposalExternalInit, func(c *messagesCase) []byte { return c.ExternalInitProposal }},
		{ProposalGroupContextExtensions, func(c *messagesCase) []byte { return c.GroupContextExtensionsProposal }},
	} {
		seed(f, func(c *messagesCase) []byte { return cat([]byte{0, byte(p.typ)}, p.pick(c)) })
	}
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[Proposal](t, data) })
}

func FuzzCommit(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.Commit })
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[Commit](t, data) })
}

func FuzzKeyPackage(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.AddProposal }) // an Add is a bare KeyPackage
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[KeyPackage](t, data) })
}

func FuzzLeafNode(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.UpdateProposal }) // an Update is a bare LeafNode
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[LeafNode](t, data) })
}

func FuzzRatchetTree(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.RatchetTree })
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[RatchetTree](t, data) })
}

func FuzzGroupInfo(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.MLSGroupInfo[4:] }) // strip version and wire format
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[GroupInfo](t, data) })
}

func FuzzGroupSecrets(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.GroupSecrets })
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[GroupSecrets](t, data) })
}

func FuzzWelcome(f *testing.F) {
	seed(f, func(c *messagesCase) []byte { return c.MLSWelcome[4:] })
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip[Welcome](t, data) })
}

// FuzzPrivateMessageContent takes the content type from the first byte,
// as the enclosing PrivateMessage would supply it.
func FuzzPrivateMessageContent(f *testing.F) {
	f.Add([]byte{byte(ContentApplication), 0x02, 'h', 'i', 0x01, 0xaa, 0, 0})
	seed(f, func(c *messagesCase) []byte {
		return cat([]byte{byte(ContentProposal), 0, byte(ProposalRemove)}, c.RemoveProposal, []byte{1, 0xaa})
	})
	seed(f, func(c *messagesCase) []byte {
		return cat([]byte{byte(ContentCommit)}, c.Commit, []byte{1, 0xaa, 1, 0xbb, 0})
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		plaintext := data[1:]
		c, err := UnmarshalPrivateMessageContent(plaintext, ContentType(data[0]))
		if err != nil {
			return
		}
		if got := codec.Marshal(c); !bytes.Equal(got, plaintext) {
			t.Fatalf("round trip:\n in %x\nout %x", plaintext, got)
		}
	})
}

// FuzzOtherDecoders covers the remaining decoders; the first byte picks
// which one reads the rest.
func FuzzOtherDecoders(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 2, 0x01, 0xaa, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0, 1, 0xbb})
	f.Add([]byte{5, 0x05, 0x01, 0xaa, 0x00, 0x01, 0x00})
	f.Add([]byte{6, 0x00, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		rest := data[1:]
		switch data[0] % 12 {
		case 0:
			roundTrip[AuthenticatedContent](t, rest)
		case 1:
			roundTrip[PrivateMessage](t, rest)
		case 2:
			roundTrip[SenderData](t, rest)
		case 3:
			roundTrip[PrivateContentAAD](t, rest)
		case 4:
			roundTrip[SenderDataAAD](t, rest)
		case 5:
			roundTrip[ExternalSenders](t, rest)
		case 6:
			roundTrip[RequiredCapabilities](t, rest)
		case 7:
			roundTrip[ExternalPub](t, rest)
		case 8:
			roundTrip[PreSharedKeyID](t, rest)
		case 9:
			roundTrip[ConfirmedTranscriptHashInput](t, rest)
		case 10:
			roundTrip[PublicMessage](t, rest)
		case 11:
			roundTrip[GroupContext](t, rest)
		}
	})
}
