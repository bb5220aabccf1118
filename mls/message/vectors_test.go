package message

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

type messagesCase struct {
	MLSWelcome                     vectors.Hex `json:"mls_welcome"`
	MLSGroupInfo                   vectors.Hex `json:"mls_group_info"`
	MLSKeyPackage                  vectors.Hex `json:"mls_key_package"`
	RatchetTree                    vectors.Hex `json:"ratchet_tree"`
	GroupSecrets                   vectors.Hex `json:"group_secrets"`
	AddProposal                    vectors.Hex `json:"add_proposal"`
	UpdateProposal                 vectors.Hex `json:"update_proposal"`
	RemoveProposal                 vectors.Hex `json:"remove_proposal"`
	PreSharedKeyProposal           vectors.Hex `json:"pre_shared_key_proposal"`
	ReInitProposal                 vectors.Hex `json:"re_init_proposal"`
	ExternalInitProposal           vectors.Hex `json:"external_init_proposal"`
	GroupContextExtensionsProposal vectors.Hex `json:"group_context_extensions_proposal"`
	Commit                         vectors.Hex `json:"commit"`
	PublicMessageApplication       vectors.Hex `json:"public_message_application"`
	PublicMessageProposal          vectors.Hex `json:"public_message_proposal"`
	PublicMessageCommit            vectors.Hex `json:"public_message_commit"`
	PrivateMessage                 vectors.Hex `json:"private_message"`
}

// messageField is one field of a messages.json case: its bytes, a fresh
// value to decode them into, and a check of what the decoded value must be.
type messageField struct {
	name  string
	data  []byte
	value codec.Unmarshaler
	check func(v codec.Unmarshaler) bool
}

func wireFormatIs(wf WireFormat) func(codec.Unmarshaler) bool {
	return func(v codec.Unmarshaler) bool { return v.(*MLSMessage).WireFormat == wf }
}

func publicContentIs(ct ContentType) func(codec.Unmarshaler) bool {
	return func(v codec.Unmarshaler) bool {
		m := v.(*MLSMessage)
		return m.WireFormat == WireFormatPublicMessage && m.PublicMessage.Content.ContentType == ct
	}
}

func (c *messagesCase) fields() []messageField {
	return []messageField{
		{"mls_welcome", c.MLSWelcome, new(MLSMessage), wireFormatIs(WireFormatWelcome)},
		{"mls_group_info", c.MLSGroupInfo, new(MLSMessage), wireFormatIs(WireFormatGroupInfo)},
		{"mls_key_package", c.MLSKeyPackage, new(MLSMessage), wireFormatIs(WireFormatKeyPackage)},
		{"ratchet_tree", c.RatchetTree, new(RatchetTree), nil},
		{"group_secrets", c.GroupSecrets, new(GroupSecrets), nil},
		{"add_proposal", c.AddProposal, new(Add), nil},
		{"update_proposal", c.UpdateProposal, new(Update), nil},
		{"remove_proposal", c.RemoveProposal, new(Remove), nil},
		{"pre_shared_key_proposal", c.PreSharedKeyProposal, new(PreSharedKey), nil},
		{"re_init_proposal", c.ReInitProposal, new(ReInit), nil},
		{"external_init_proposal", c.ExternalInitProposal, new(ExternalInit), nil},
		{"group_context_extensions_proposal", c.GroupContextExtensionsProposal, new(GroupContextExtensions), nil},
		{"commit", c.Commit, new(Commit), nil},
		{"public_message_application", c.PublicMessageApplication, new(MLSMessage), publicContentIs(ContentApplication)},
		{"public_message_proposal", c.PublicMessageProposal, new(MLSMessage), publicContentIs(ContentProposal)},
		{"public_message_commit", c.PublicMessageCommit, new(MLSMessage), publicContentIs(ContentCommit)},
		{"private_message", c.PrivateMessage, new(MLSMessage), wireFormatIs(WireFormatPrivateMessage)},
	}
}

// TestMessagesVectors decodes every field of every case, re-encodes it and
// requires the same bytes. A case passes only if all its fields do.
func TestMessagesVectors(t *testing.T) {
	var cases []messagesCase
	vectors.Load(t, "messages.json", &cases)
	passed := 0
	for i := range cases {
		ok := true
		for _, f := range cases[i].fields() {
			if len(f.data) == 0 {
				t.Errorf("case %d: %s missing", i, f.name)
				ok = false
				continue
			}
			if err := codec.Unmarshal(f.data, f.value, f.name); err != nil {
				t.Errorf("case %d: %s: %v", i, f.name, err)
				ok = false
				continue
			}
			if f.check != nil && !f.check(f.value) {
				t.Errorf("case %d: %s decoded to the wrong kind of message", i, f.name)
				ok = false
				continue
			}
			if got := codec.Marshal(f.value.(codec.Marshaler)); !bytes.Equal(got, f.data) {
				t.Errorf("case %d: %s re-encodes differently:\n got %x\nwant %x", i, f.name, got, []byte(f.data))
				ok = false
			}
		}
		if ok {
			passed++
		}
	}
	vectors.Report(t, "messages.json", passed, 300)
}
