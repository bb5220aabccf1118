package message

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func sampleContext() *GroupContext {
	return &GroupContext{Version: MLS10, CipherSuite: 1, GroupID: []byte("g"), Epoch: 7,
		TreeHash: []byte{1}, ConfirmedTranscriptHash: []byte{2}, Extensions: []Extension{}}
}

func sampleCommit() *FramedContent {
	return &FramedContent{GroupID: []byte("g"), Epoch: 7, Sender: MemberSender(3), AuthenticatedData: []byte{},
		ContentType: ContentCommit, Commit: &Commit{Proposals: []ProposalOrRef{
			{Type: ProposalOrRefReference, Reference: []byte{9, 9}},
			{Type: ProposalOrRefProposal, Proposal: &Proposal{Type: ProposalRemove, Remove: &Remove{Removed: 5}}},
		}}}
}

func TestAuthDataDependsOnContentType(t *testing.T) {
	auth := FramedContentAuthData{Signature: []byte{0xaa}, ConfirmationTag: []byte{0xbb}}
	for _, tt := range []struct {
		ct   ContentType
		want []byte
	}{
		{ContentApplication, []byte{1, 0xaa}},
		{ContentProposal, []byte{1, 0xaa}},
		{ContentCommit, []byte{1, 0xaa, 1, 0xbb}},
	} {
		var w codec.Writer
		auth.MarshalMLSFor(&w, tt.ct)
		if !bytes.Equal(w.Bytes(), tt.want) {
			t.Errorf("content type %d: %x, want %x", tt.ct, w.Bytes(), tt.want)
		}
	}
}

func TestPublicMessageMembershipTag(t *testing.T) {
	for _, sender := range []Sender{MemberSender(1), {Type: SenderExternal, SenderIndex: 2},
		{Type: SenderNewMemberProposal}, {Type: SenderNewMemberCommit}} {
		content := *sampleCommit()
		content.Sender = sender
		pm := &PublicMessage{Content: content, Auth: FramedContentAuthData{Signature: []byte{1}, ConfirmationTag: []byte{2}},
			MembershipTag: []byte{3, 3}}
		enc := codec.Marshal(pm)
		hasTag := bytes.HasSuffix(enc, []byte{2, 3, 3})
		if hasTag != (sender.Type == SenderMember) {
			t.Errorf("sender type %d: membership tag present = %v", sender.Type, hasTag)
		}
		var back PublicMessage
		if err := codec.Unmarshal(enc, &back, "public_message"); err != nil {
			t.Fatalf("sender type %d: %v", sender.Type, err)
		}
		if !bytes.Equal(codec.Marshal(&back), enc) || back.Content.Sender != sender {
			t.Errorf("sender type %d: round trip differs", sender.Type)
		}
	}
}

func TestFramedContentTBS(t *testing.T) {
	ctx := sampleContext()
	content := sampleCommit()
	for _, tt := range []struct {
		sender      SenderType
		withContext bool
	}{
		{SenderMember, true},
		{SenderNewMemberCommit, true},
		{SenderExternal, false},
		{SenderNewMemberProposal, false},
	} {
		c := *content
		c.Sender = Sender{Type: tt.sender}
		if tt.sender == SenderMember {
			c.Sender.LeafIndex = 3
		}
		want := cat([]byte{0, 1, 0, 1}, codec.Marshal(&c))
		if tt.withContext {
			want = cat(want, codec.Marshal(ctx))
		}
		ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: c}
		if got := codec.Marshal(ac.TBS(ctx)); !bytes.Equal(got, want) {
			t.Errorf("sender type %d: TBS %x, want %x", tt.sender, got, want)
		}
	}
}

func TestAuthenticatedContentTBM(t *testing.T) {
	ctx := sampleContext()
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: *sampleCommit(),
		Auth: FramedContentAuthData{Signature: []byte{1}, ConfirmationTag: []byte{2}}}
	tbm := &AuthenticatedContentTBM{ContentTBS: *ac.TBS(ctx), Auth: ac.Auth}
	want := cat(codec.Marshal(ac.TBS(ctx)), []byte{1, 1, 1, 2})
	if got := codec.Marshal(tbm); !bytes.Equal(got, want) {
		t.Fatalf("TBM %x, want %x", got, want)
	}
}

func TestTranscriptHashInputs(t *testing.T) {
	ac := &AuthenticatedContent{WireFormat: WireFormatPrivateMessage, Content: *sampleCommit(),
		Auth: FramedContentAuthData{Signature: []byte{1}, ConfirmationTag: []byte{2}}}
	// ConfirmedTranscriptHashInput is AuthenticatedContent without the
	// confirmation tag.
	full := codec.Marshal(ac)
	confirmed := codec.Marshal(ac.ConfirmedTranscriptHashInput())
	if !bytes.Equal(confirmed, full[:len(full)-2]) {
		t.Fatalf("confirmed input %x is not the prefix of %x", confirmed, full)
	}
	var back ConfirmedTranscriptHashInput
	if err := codec.Unmarshal(confirmed, &back, "confirmed"); err != nil || !bytes.Equal(codec.Marshal(&back), confirmed) {
		t.Fatalf("round trip: %v", err)
	}
	if got := codec.Marshal(&InterimTranscriptHashInput{ConfirmationTag: []byte{2}}); !bytes.Equal(got, []byte{1, 2}) {
		t.Fatalf("interim input %x", got)
	}
}

func TestLeafNodeTBS(t *testing.T) {
	leaf := &LeafNode{EncryptionKey: []byte{1}, SignatureKey: []byte{2}, Credential: BasicCredential([]byte("id")),
		Source: LeafNodeSourceKeyPackage, Lifetime: Lifetime{1, 2}, Signature: []byte{0xee}}
	enc := codec.Marshal(leaf)
	content := enc[:len(enc)-2] // without the signature
	if got := leaf.TBS([]byte("g"), 4); !bytes.Equal(got, content) {
		t.Errorf("key_package TBS %x, want %x", got, content)
	}
	leaf.Source, leaf.ParentHash = LeafNodeSourceCommit, []byte{5}
	enc = codec.Marshal(leaf)
	want := cat(enc[:len(enc)-2], []byte{1, 'g', 0, 0, 0, 4})
	if got := leaf.TBS([]byte("g"), 4); !bytes.Equal(got, want) {
		t.Errorf("commit TBS %x, want %x", got, want)
	}
}

func TestSignedStructuresTBS(t *testing.T) {
	var cases []messagesCase
	vectors.Load(t, "messages.json", &cases)
	m, err := ParseMLSMessage(cases[0].MLSKeyPackage)
	if err != nil {
		t.Fatal(err)
	}
	kp := m.KeyPackage
	enc := codec.Marshal(kp)
	sig := codec.Marshal(&ExternalInit{KEMOutput: kp.Signature}) // opaque<V> of the signature
	if !bytes.Equal(cat(kp.TBS(), sig), enc) {
		t.Error("KeyPackage TBS plus signature is not the encoding")
	}
	m, err = ParseMLSMessage(cases[0].MLSGroupInfo)
	if err != nil {
		t.Fatal(err)
	}
	gi := m.GroupInfo
	sig = codec.Marshal(&ExternalInit{KEMOutput: gi.Signature})
	if !bytes.Equal(cat(gi.TBS(), sig), codec.Marshal(gi)) {
		t.Error("GroupInfo TBS plus signature is not the encoding")
	}
}

// TestKeyPackageRef checks Ref against the Welcome in welcome.json, which
// names its one new member by the KeyPackageRef of the KeyPackage.
func TestKeyPackageRef(t *testing.T) {
	var cases []struct {
		CipherSuite suite.ID    `json:"cipher_suite"`
		KeyPackage  vectors.Hex `json:"key_package"`
		Welcome     vectors.Hex `json:"welcome"`
	}
	vectors.Load(t, "welcome.json", &cases)
	for i, c := range cases {
		s, err := suite.Lookup(c.CipherSuite)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		kp, err1 := ParseMLSMessage(c.KeyPackage)
		w, err2 := ParseMLSMessage(c.Welcome)
		if err1 != nil || err2 != nil {
			t.Fatalf("case %d: %v %v", i, err1, err2)
		}
		if len(w.Welcome.Secrets) != 1 || !bytes.Equal(kp.KeyPackage.Ref(s), w.Welcome.Secrets[0].NewMember) {
			t.Errorf("case %d: KeyPackageRef does not match the Welcome's new_member", i)
		}
	}
}

func TestExtensionPayloads(t *testing.T) {
	payloads := []struct {
		name string
		v    codec.Marshaler
		back codec.Unmarshaler
	}{
		{"application_id", &ApplicationID{ID: []byte("app")}, new(ApplicationID)},
		{"required_capabilities", &RequiredCapabilities{ExtensionTypes: []ExtensionType{5}, ProposalTypes: []ProposalType{},
			CredentialTypes: []CredentialType{1, 2}}, new(RequiredCapabilities)},
		{"external_pub", &ExternalPub{PublicKey: []byte{1, 2}}, new(ExternalPub)},
		{"external_senders", &ExternalSenders{{SignatureKey: []byte{1}, Credential: Credential{Type: CredentialX509,
			Certificates: [][]byte{{1}, {2, 3}}}}}, new(ExternalSenders)},
	}
	for _, p := range payloads {
		enc := codec.Marshal(p.v)
		if err := codec.Unmarshal(enc, p.back, p.name); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if got := codec.Marshal(p.back.(codec.Marshaler)); !bytes.Equal(got, enc) {
			t.Errorf("%s: %x re-encodes as %x", p.name, enc, got)
		}
	}
}

func TestMarshalMissingBodyPanics(t *testing.T) {
	for name, v := range map[string]codec.Marshaler{
		"proposal":    &Proposal{Type: ProposalAdd},
		"mls_message": &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome},
		"content":     &FramedContent{ContentType: ContentCommit},
		"node":        &Node{Type: NodeTypeParent},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: encoding a missing body did not panic", name)
				}
			}()
			codec.Marshal(v)
		}()
	}
}
