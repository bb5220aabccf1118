package treekem

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

var testGroupID = []byte("treekem test group")

// group is a test group: a public tree and each member's private state and
// signing key, built by real commits so that every key is known.
type group struct {
	s       *suite.Suite
	tree    *tree.Tree
	states  []*PrivateState
	sigPriv []*suite.SignaturePrivateKey
}

func testContext(epoch uint64) PathOptions {
	return PathOptions{GroupContext: message.GroupContext{
		Version: message.MLS10, CipherSuite: suite.X25519AES128GCMSHA256Ed25519,
		GroupID: testGroupID, Epoch: epoch, ConfirmedTranscriptHash: []byte{},
		Extensions: []message.Extension{},
	}}
}

func newLeaf(tb testing.TB, s *suite.Suite) (message.LeafNode, *suite.SignaturePrivateKey, *suite.HPKEPrivateKey) {
	tb.Helper()
	sigPriv, err := s.GenerateSignatureKey()
	if err != nil {
		tb.Fatal(err)
	}
	encPriv, err := s.GenerateHPKEKey()
	if err != nil {
		tb.Fatal(err)
	}
	leaf := message.LeafNode{
		EncryptionKey: encPriv.Public().Bytes(),
		SignatureKey:  sigPriv.Public().Bytes(),
		Credential:    message.BasicCredential([]byte("m")),
		Capabilities: message.Capabilities{
			Versions: []message.ProtocolVersion{message.MLS10}, CipherSuites: []suite.ID{s.ID()},
			Extensions: []message.ExtensionType{}, Proposals: []message.ProposalType{},
			Credentials: []message.CredentialType{message.CredentialBasic},
		},
		Source:     message.LeafNodeSourceKeyPackage,
		Lifetime:   message.Lifetime{NotAfter: 1 << 62},
		Extensions: []message.Extension{},
	}
	leaf.Signature, err = sigPriv.SignWithLabel("LeafNodeTBS", leaf.TBS(nil, 0))
	if err != nil {
		tb.Fatal(err)
	}
	return leaf, sigPriv, encPriv
}

// newGroup adds n members to a one-member group, then lets every even leaf
// commit in order, so that the tree is fully populated. Commits are
// applied to the public tree directly; members' states take the path
// secrets a Welcome or the commit would give them.
func newGroup(tb testing.TB, n int) *group {
	tb.Helper()
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	g := &group{s: s}
	for i := range n {
		leaf, sigPriv, encPriv := newLeaf(tb, s)
		if i == 0 {
			g.tree = tree.New(s, &leaf)
		} else if _, err := g.tree.AddLeaf(&leaf); err != nil {
			tb.Fatal(err)
		}
		g.states = append(g.states, NewPrivateState(treemath.LeafIndex(i), encPriv))
		g.sigPriv = append(g.sigPriv, sigPriv)
	}
	for l := 0; l < n; l += 2 {
		gen, err := g.states[l].Generate(g.tree, *g.tree.Leaf(treemath.LeafIndex(l)), g.sigPriv[l], testContext(0))
		if err != nil {
			tb.Fatal(err)
		}
		g.states[l] = gen.Private
		for j := range n {
			if j == l {
				continue
			}
			ps := gen.PathSecretFor(treemath.LeafIndex(j))
			if ps == nil {
				continue
			}
			st, err := g.states[j].WithJoinerPathSecret(g.tree, treemath.LeafIndex(l), ps)
			if err != nil {
				tb.Fatal(err)
			}
			// Drop keys the commit made outdated, as Apply would.
			g.states[j] = st.with(func(x treemath.NodeIndex) bool {
				return !x.IsLeaf() && g.tree.EncryptionKey(x) == nil
			}, nil)
		}
	}
	return g
}

func TestCommitRoundTrip(t *testing.T) {
	g := newGroup(t, 7)
	for _, st := range g.states {
		if err := st.Check(g.tree); err != nil {
			t.Fatal(err)
		}
	}
	// Leaf 3 commits adding nobody; every other member must agree.
	committed := g.tree.Clone()
	gen, err := g.states[3].Generate(committed, *g.tree.Leaf(3), g.sigPriv[3], testContext(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.ValidateLeafNode(g.s, &gen.Path.LeafNode, tree.LeafContext{GroupID: testGroupID, LeafIndex: 3, Source: message.LeafNodeSourceCommit}); err != nil {
		t.Fatalf("generated leaf: %v", err)
	}
	if err := committed.Validate(tree.ValidateOptions{GroupID: testGroupID}); err != nil {
		t.Fatalf("committed tree: %v", err)
	}
	for j, st := range g.states {
		if j == 3 {
			continue
		}
		before := g.tree.Clone()
		got, err := st.Apply(before, 3, gen.Path, testContext(1))
		if err != nil {
			t.Fatalf("member %d: %v", j, err)
		}
		if !bytes.Equal(got.CommitSecret, gen.CommitSecret) || !bytes.Equal(before.RootHash(), committed.RootHash()) {
			t.Fatalf("member %d disagrees", j)
		}
		if err := got.Private.Check(before); err != nil {
			t.Fatalf("member %d: %v", j, err)
		}
		// The old state is untouched and still fits the old tree.
		if err := st.Check(g.tree); err != nil {
			t.Fatalf("member %d's old state: %v", j, err)
		}
	}
}

func TestApplyRejects(t *testing.T) {
	g := newGroup(t, 4)
	committed := g.tree.Clone()
	gen, err := g.states[0].Generate(committed, *g.tree.Leaf(0), g.sigPriv[0], testContext(1))
	if err != nil {
		t.Fatal(err)
	}
	path := func() *message.UpdatePath {
		p := *gen.Path
		p.Nodes = append([]message.UpdatePathNode{}, gen.Path.Nodes...)
		return &p
	}
	if _, err := g.states[0].Apply(g.tree.Clone(), 0, path(), testContext(1)); !errors.Is(err, ErrOwnPath) {
		t.Errorf("own path: %v", err)
	}
	if _, err := g.states[1].Apply(g.tree.Clone(), 0, path(), testContext(2)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong group context: %v", err)
	}
	p := path()
	p.Nodes[0].EncryptedPathSecret = nil
	if _, err := g.states[1].Apply(g.tree.Clone(), 0, p, testContext(1)); !errors.Is(err, ErrCiphertextCount) {
		t.Errorf("missing ciphertext: %v", err)
	}
	// A path whose public key does not match the encrypted secret: the
	// parent hash catches it first, as the leaf signs the keys.
	p = path()
	other, _ := g.s.GenerateHPKEKey()
	p.Nodes[1].EncryptionKey = other.Public().Bytes()
	if _, err := g.states[1].Apply(g.tree.Clone(), 0, p, testContext(1)); !errors.Is(err, tree.ErrParentHashMismatch) {
		t.Errorf("swapped key: %v", err)
	}
	if _, err := g.states[1].Apply(g.tree.Clone(), 0, &message.UpdatePath{LeafNode: gen.Path.LeafNode}, testContext(1)); !errors.Is(err, tree.ErrPathLength) {
		t.Errorf("empty path: %v", err)
	}
	if _, err := g.states[1].Apply(g.tree.Clone(), 0, path(), PathOptions{GroupContext: testContext(1).GroupContext, Exclude: []treemath.LeafIndex{1}}); !errors.Is(err, ErrCiphertextCount) {
		t.Errorf("receiver excluded: %v", err)
	}
}

func TestStateEncoding(t *testing.T) {
	g := newGroup(t, 5)
	for _, st := range g.states {
		data, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back PrivateState
		if err := back.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		if err := back.Check(g.tree); err != nil || back.Leaf() != st.Leaf() || len(back.keys) != len(st.keys) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range data {
			if back.UnmarshalBinary(data[:i]) == nil {
				t.Fatalf("truncation at %d accepted", i)
			}
		}
	}
}

func mustSuite() *suite.Suite {
	s, err := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		panic(err)
	}
	return s
}

// TestStaleKeysDropped checks that a member's state keeps no key for a node
// that the commit's proposals blanked: Apply drops them, and Prune does for
// a tree changed without a path.
func TestStaleKeysDropped(t *testing.T) {
	cases := []struct {
		name    string
		change  func(*tree.Tree) error
		members []int // who holds a key the change makes stale
		updated int   // a member whose leaf key the change replaced, or -1
	}{
		{"remove", func(tr *tree.Tree) error { return tr.RemoveLeaf(5) }, []int{4, 6, 7}, -1},
		{"update", func(tr *tree.Tree) error {
			leaf, _, _ := newLeaf(t, tr.Suite())
			return tr.UpdateLeaf(6, &leaf)
		}, []int{4, 5, 7}, 6},
		{"remove and truncate", func(tr *tree.Tree) error {
			for _, l := range []treemath.LeafIndex{7, 6, 5} {
				if err := tr.RemoveLeaf(l); err != nil {
					return err
				}
			}
			return nil
		}, []int{4}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGroup(t, 8)
			staged := g.tree.Clone()
			if err := c.change(staged); err != nil {
				t.Fatal(err)
			}
			for _, j := range c.members {
				if staged.Leaf(treemath.LeafIndex(j)) == nil {
					continue
				}
				if err := g.states[j].Check(staged); !errors.Is(err, ErrPublicKeyMismatch) {
					t.Fatalf("member %d before pruning: got %v, want a stale key", j, err)
				}
				if err := g.states[j].Prune(staged).Check(staged); err != nil {
					t.Fatalf("member %d after Prune: %v", j, err)
				}
			}
			committed := staged.Clone()
			gen, err := g.states[0].Generate(committed, *staged.Leaf(0), g.sigPriv[0], testContext(1))
			if err != nil {
				t.Fatal(err)
			}
			if err := gen.Private.Check(committed); err != nil {
				t.Fatalf("committer: %v", err)
			}
			for j := 1; j < 8; j++ {
				if staged.Leaf(treemath.LeafIndex(j)) == nil || j == c.updated {
					continue
				}
				merged := staged.Clone()
				got, err := g.states[j].Apply(merged, 0, gen.Path, testContext(1))
				if err != nil {
					t.Fatalf("member %d: %v", j, err)
				}
				if err := got.Private.Check(merged); err != nil {
					t.Fatalf("member %d after Apply: %v", j, err)
				}
			}
		})
	}
}

// TestCheckPlaced: a stored state's check refuses a stale leaf key and a
// key at a node blank now, and (unlike Check) takes the keys above the
// leaf as stored.
func TestCheckPlaced(t *testing.T) {
	g := newGroup(t, 8)
	for j, st := range g.states {
		if err := st.CheckPlaced(g.tree); err != nil {
			t.Fatalf("member %d: %v", j, err)
		}
	}
	updated := g.tree.Clone()
	leaf, _, _ := newLeaf(t, g.s)
	if err := updated.UpdateLeaf(6, &leaf); err != nil {
		t.Fatal(err)
	}
	if err := g.states[6].CheckPlaced(updated); !errors.Is(err, ErrPublicKeyMismatch) {
		t.Fatalf("a replaced leaf key: %v, want a mismatch", err)
	}
	if err := g.states[7].CheckPlaced(updated); !errors.Is(err, ErrPublicKeyMismatch) {
		t.Fatalf("a key at a node the update blanked: %v, want a mismatch", err)
	}
	if err := g.states[0].Prune(updated).CheckPlaced(updated); err != nil {
		t.Fatalf("another member, its keys pruned: %v", err)
	}
	// Member 0 commits: member 1's key for their parent is stale but
	// the node is not blank, and its leaf is unchanged.
	committed := g.tree.Clone()
	if _, err := g.states[0].Generate(committed, *committed.Leaf(0), g.sigPriv[0], testContext(1)); err != nil {
		t.Fatal(err)
	}
	if err := g.states[1].Check(committed); !errors.Is(err, ErrPublicKeyMismatch) {
		t.Fatalf("Check of a stale path key: %v, want a mismatch", err)
	}
	if err := g.states[1].CheckPlaced(committed); err != nil {
		t.Fatalf("CheckPlaced of a stale path key: %v, want it taken as stored", err)
	}
	if err := g.states[1].CheckPlaced(tree.New(g.s, &leaf)); !errors.Is(err, ErrNotInTree) {
		t.Fatalf("a leaf outside the tree: %v, want ErrNotInTree", err)
	}
}
