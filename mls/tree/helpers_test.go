package tree

import (
	"crypto/rand"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

var testGroupID = []byte("tree test group")

func testCapabilities(s *suite.Suite) message.Capabilities {
	return message.Capabilities{
		Versions:     []message.ProtocolVersion{message.MLS10},
		CipherSuites: []suite.ID{s.ID()},
		Extensions:   []message.ExtensionType{},
		Proposals:    []message.ProposalType{},
		Credentials:  []message.CredentialType{message.CredentialBasic},
	}
}

// member is a test client: its signing key and a leaf template.
type member struct {
	sigPriv *suite.SignaturePrivateKey
	leaf    message.LeafNode
}

func newMember(tb testing.TB, s *suite.Suite, name string) *member {
	tb.Helper()
	sigPriv, err := s.GenerateSignatureKey()
	if err != nil {
		tb.Fatal(err)
	}
	encPriv, err := s.GenerateHPKEKey()
	if err != nil {
		tb.Fatal(err)
	}
	return &member{sigPriv: sigPriv, leaf: message.LeafNode{
		EncryptionKey: encPriv.Public().Bytes(),
		SignatureKey:  sigPriv.Public().Bytes(),
		Credential:    message.BasicCredential([]byte(name)),
		Capabilities:  testCapabilities(s),
		Source:        message.LeafNodeSourceKeyPackage,
		Lifetime:      message.Lifetime{NotBefore: 0, NotAfter: 1 << 62},
		Extensions:    []message.Extension{},
	}}
}

// signed returns m's leaf with the given changes applied and re-signed.
func (m *member) signed(tb testing.TB, s *suite.Suite, l treemath.LeafIndex, edit func(*message.LeafNode)) *message.LeafNode {
	tb.Helper()
	leaf := m.leaf
	if edit != nil {
		edit(&leaf)
	}
	sig, err := m.sigPriv.SignWithLabel("LeafNodeTBS", leaf.TBS(testGroupID, uint32(l)))
	if err != nil {
		tb.Fatal(err)
	}
	leaf.Signature = sig
	return &leaf
}

func (m *member) keyPackage(tb testing.TB, s *suite.Suite) *message.KeyPackage {
	tb.Helper()
	initPriv, err := s.GenerateHPKEKey()
	if err != nil {
		tb.Fatal(err)
	}
	kp := &message.KeyPackage{
		Version:     message.MLS10,
		CipherSuite: s.ID(),
		InitKey:     initPriv.Public().Bytes(),
		LeafNode:    *m.signed(tb, s, 0, nil),
		Extensions:  []message.Extension{},
	}
	kp.Signature, err = m.sigPriv.SignWithLabel("KeyPackageTBS", kp.TBS())
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

func randomKey(tb testing.TB) []byte {
	k := make([]byte, 32) // an X25519 public key: any 32 bytes are valid
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// buildTree returns a valid, fully populated tree of n members in suite 1
// whose every parent node is set and parent-hash valid, as if members had
// joined one by one and then every even leaf had committed in order. Each
// commit's keys are random public keys: the tree package never needs the
// private ones.
func buildTree(tb testing.TB, n int) (*Tree, []*member) {
	tb.Helper()
	s, err := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		tb.Fatal(err)
	}
	members := make([]*member, n)
	for i := range members {
		members[i] = newMember(tb, s, "member")
	}
	tr := New(s, members[0].signed(tb, s, 0, nil))
	for i := 1; i < n; i++ {
		if _, err := tr.AddLeaf(members[i].signed(tb, s, 0, nil)); err != nil {
			tb.Fatal(err)
		}
	}
	for l := 0; l < n; l += 2 {
		commitRandomPath(tb, tr, members[l], treemath.LeafIndex(l))
	}
	return tr, members
}

func commitRandomPath(tb testing.TB, tr *Tree, m *member, l treemath.LeafIndex) {
	tb.Helper()
	keys := make([][]byte, len(tr.FilteredDirectPath(l)))
	for i := range keys {
		keys[i] = randomKey(tb)
	}
	ph, err := tr.SetPathKeys(l, keys)
	if err != nil {
		tb.Fatal(err)
	}
	leaf := m.signed(tb, tr.Suite(), l, func(ln *message.LeafNode) {
		ln.Source = message.LeafNodeSourceCommit
		ln.ParentHash = ph
		ln.EncryptionKey = randomKey(tb)
	})
	m.leaf = *leaf
	if err := tr.SetLeaf(l, leaf); err != nil {
		tb.Fatal(err)
	}
}
