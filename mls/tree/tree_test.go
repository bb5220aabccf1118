package tree

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

func validateOpts(tr *Tree) ValidateOptions {
	return ValidateOptions{GroupID: testGroupID, Version: message.MLS10, TreeHash: tr.RootHash()}
}

func TestBuiltTreeValidates(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 8, 13} {
		tr, _ := buildTree(t, n)
		if err := tr.Validate(validateOpts(tr)); err != nil {
			t.Errorf("%d members: %v", n, err)
		}
		// A tree rebuilt from its wire form hashes and validates the same.
		back, err := FromRatchetTree(tr.Suite(), tr.RatchetTree())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.RootHash(), tr.RootHash()) {
			t.Errorf("%d members: rebuilt tree hash differs", n)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tr, members := buildTree(t, 5)
	wantHash := tr.RootHash()
	cases := []struct {
		name   string
		change func(rt message.RatchetTree)
		want   error
	}{
		{"leaf signature", func(rt message.RatchetTree) {
			// Leaf 4 is in no parent's original sibling subtree, so only
			// its own signature breaks.
			leaf := *rt[8].Leaf
			leaf.Signature = append([]byte{}, leaf.Signature...)
			leaf.Signature[0] ^= 1
			rt[8] = &message.Node{Type: message.NodeTypeLeaf, Leaf: &leaf}
		}, ErrBadLeafSignature},
		{"parent key", func(rt message.RatchetTree) {
			p := *rt[1].Parent
			p.EncryptionKey = randomKey(t)
			rt[1] = &message.Node{Type: message.NodeTypeParent, Parent: &p}
		}, ErrParentHashMismatch},
		{"unmerged leaf outside subtree", func(rt message.RatchetTree) {
			p := *rt[1].Parent
			p.UnmergedLeaves = []uint32{3}
			rt[1] = &message.Node{Type: message.NodeTypeParent, Parent: &p}
		}, ErrUnmergedLeavesInvalid},
		{"unmerged leaf twice", func(rt message.RatchetTree) {
			p := *rt[1].Parent
			p.UnmergedLeaves = []uint32{1, 1}
			rt[1] = &message.Node{Type: message.NodeTypeParent, Parent: &p}
		}, ErrUnmergedLeavesInvalid},
		{"unmerged leaf skips a node", func(rt message.RatchetTree) {
			p := *rt[3].Parent
			p.UnmergedLeaves = []uint32{0}
			rt[3] = &message.Node{Type: message.NodeTypeParent, Parent: &p}
		}, ErrUnmergedLeavesInvalid},
		{"duplicate encryption key", func(rt message.RatchetTree) {
			leaf := *rt[2].Leaf
			leaf.EncryptionKey = rt[0].Leaf.EncryptionKey
			rt[2] = &message.Node{Type: message.NodeTypeLeaf, Leaf: &leaf}
		}, ErrDuplicateKey},
		{"duplicate signature key", func(rt message.RatchetTree) {
			leaf := *rt[2].Leaf
			leaf.SignatureKey = rt[0].Leaf.SignatureKey
			rt[2] = &message.Node{Type: message.NodeTypeLeaf, Leaf: &leaf}
		}, ErrDuplicateKey},
		{"unsupported suite", func(rt message.RatchetTree) {
			rt[8] = &message.Node{Type: message.NodeTypeLeaf, Leaf: members[4].signed(t, tr.Suite(), 4, func(l *message.LeafNode) {
				l.Capabilities.CipherSuites = nil
			})}
		}, ErrUnsupportedCapability},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt := tr.RatchetTree()
			c.change(rt)
			bad, err := FromRatchetTree(tr.Suite(), rt)
			if err != nil {
				t.Fatal(err)
			}
			err = bad.Validate(ValidateOptions{GroupID: testGroupID, Version: message.MLS10, ListsGroupParameters: true})
			if !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
	// One bit off (setting the first byte to 1 left it right when it
	// was 1 already: one run in 256).
	wrongHash := bytes.Clone(wantHash)
	wrongHash[0] ^= 1
	if err := tr.Validate(ValidateOptions{TreeHash: wrongHash}); !errors.Is(err, ErrTreeHashMismatch) {
		t.Errorf("wrong tree hash: %v", err)
	}
}

func TestOperationsKeepCloneAndCache(t *testing.T) {
	tr, members := buildTree(t, 5)
	before := tr.Clone()
	beforeHash := append([]byte{}, tr.RootHash()...)
	beforeWire := codec.Marshal(tr.RatchetTree())

	// Remove leaf 4: the right half becomes empty and the tree halves.
	if err := tr.RemoveLeaf(4); err != nil {
		t.Fatal(err)
	}
	if tr.LeafCount() != 4 {
		t.Errorf("leaf count after removing the last member = %d, want 4", tr.LeafCount())
	}
	// Add a member: it takes the lowest blank leaf? none is blank, so the
	// tree extends and the new leaf is 4, unmerged at the non-blank root.
	nm := newMember(t, tr.Suite(), "new")
	l, err := tr.AddLeaf(nm.signed(t, tr.Suite(), 0, nil))
	if err != nil || l != 4 {
		t.Fatalf("AddLeaf = %d, %v", l, err)
	}
	if err := tr.UpdateLeaf(1, members[1].signed(t, tr.Suite(), 1, func(ln *message.LeafNode) {
		ln.Source = message.LeafNodeSourceUpdate
		ln.EncryptionKey = randomKey(t)
	})); err != nil {
		t.Fatal(err)
	}
	if tr.Parent(1) != nil || tr.Parent(3) != nil {
		t.Error("update did not blank the direct path")
	}
	// Cached hashes must equal hashes computed from scratch.
	fresh, err := FromRatchetTree(tr.Suite(), tr.RatchetTree())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh.RootHash(), tr.RootHash()) {
		t.Error("cached root hash differs from a fresh computation")
	}
	if err := tr.Validate(ValidateOptions{GroupID: testGroupID}); err != nil {
		t.Errorf("tree after operations: %v", err)
	}
	// The clone is untouched.
	if !bytes.Equal(before.RootHash(), beforeHash) || !bytes.Equal(codec.Marshal(before.RatchetTree()), beforeWire) {
		t.Error("operations changed the clone")
	}
	if err := tr.RemoveLeaf(4); err != nil {
		t.Fatal(err)
	}
	if err := tr.RemoveLeaf(4); !errors.Is(err, ErrLeafOutOfRange) {
		t.Errorf("removing twice: %v", err)
	}
	if err := tr.RemoveLeaf(7); !errors.Is(err, ErrLeafOutOfRange) {
		t.Errorf("removing beyond the tree: %v", err)
	}
}

func TestMergeUpdatePathChecksParentHash(t *testing.T) {
	tr, members := buildTree(t, 4)
	committer := tr.Clone()
	commitRandomPath(t, committer, members[2], 2)
	fdp := committer.FilteredDirectPath(2)
	path := &message.UpdatePath{LeafNode: *committer.Leaf(2)}
	for _, x := range fdp {
		path.Nodes = append(path.Nodes, message.UpdatePathNode{EncryptionKey: committer.EncryptionKey(x)})
	}
	good := tr.Clone()
	if err := good.MergeUpdatePath(2, path); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(good.RootHash(), committer.RootHash()) {
		t.Error("merged tree differs from the committer's")
	}
	path.Nodes[0].EncryptionKey = randomKey(t)
	if err := tr.Clone().MergeUpdatePath(2, path); !errors.Is(err, ErrParentHashMismatch) {
		t.Errorf("tampered path: %v", err)
	}
	path.Nodes = path.Nodes[1:]
	if err := tr.Clone().MergeUpdatePath(2, path); !errors.Is(err, ErrPathLength) {
		t.Errorf("short path: %v", err)
	}
}

func TestLeafAndKeyPackageValidation(t *testing.T) {
	tr, _ := buildTree(t, 3)
	s := tr.Suite()
	m := newMember(t, s, "joiner")
	kp := m.keyPackage(t, s)
	if err := ValidateKeyPackage(s, kp, LeafContext{Now: time.Now()}); err != nil {
		t.Fatalf("valid key package: %v", err)
	}
	bad := *kp
	bad.InitKey = kp.LeafNode.EncryptionKey
	if err := ValidateKeyPackage(s, &bad, LeafContext{}); !errors.Is(err, ErrKeyPackageInvalid) {
		t.Errorf("init key = encryption key: %v", err)
	}
	bad = *kp
	bad.Signature = append([]byte{}, kp.Signature...)
	bad.Signature[3] ^= 1
	if err := ValidateKeyPackage(s, &bad, LeafContext{}); !errors.Is(err, ErrKeyPackageInvalid) {
		t.Errorf("bad signature: %v", err)
	}
	bad = *kp
	bad.CipherSuite = 2
	if err := ValidateKeyPackage(s, &bad, LeafContext{}); !errors.Is(err, ErrKeyPackageInvalid) {
		t.Errorf("wrong suite: %v", err)
	}
	expired := m.signed(t, s, 0, func(l *message.LeafNode) { l.Lifetime = message.Lifetime{NotBefore: 1, NotAfter: 2} })
	if err := ValidateLeafNode(s, expired, LeafContext{Now: time.Now()}); !errors.Is(err, ErrLifetime) || !errors.Is(err, ErrLeafNodeInvalid) {
		t.Errorf("expired leaf: %v", err)
	}
	if err := ValidateLeafNode(s, &kp.LeafNode, LeafContext{Source: message.LeafNodeSourceUpdate}); !errors.Is(err, ErrLeafNodeInvalid) {
		t.Errorf("wrong source: %v", err)
	}
	req := &message.RequiredCapabilities{ExtensionTypes: []message.ExtensionType{0x0a0a}}
	if err := ValidateLeafNode(s, &kp.LeafNode, LeafContext{Required: req}); !errors.Is(err, ErrUnsupportedCapability) {
		t.Errorf("missing required extension: %v", err)
	}
	withExt := m.signed(t, s, 0, func(l *message.LeafNode) {
		l.Extensions = []message.Extension{{Type: 0x0b0b, Data: []byte{}}}
	})
	if err := ValidateLeafNode(s, withExt, LeafContext{}); !errors.Is(err, ErrUnsupportedCapability) {
		t.Errorf("unlisted own extension: %v", err)
	}
	if err := tr.CheckNewLeaf(treemath.LeafIndex(tr.LeafCount()), &kp.LeafNode); err != nil {
		t.Errorf("fresh leaf: %v", err)
	}
	dup := kp.LeafNode
	dup.SignatureKey = tr.Leaf(1).SignatureKey
	if err := tr.CheckNewLeaf(3, &dup); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("duplicate signature key: %v", err)
	}
	same := *tr.Leaf(1)
	if err := tr.CheckNewLeaf(1, &same); !errors.Is(err, ErrLeafNodeInvalid) {
		t.Errorf("update keeping the encryption key: %v", err)
	}
}

// TestKeyPackageSignatures: a KeyPackage's two signatures, verified in
// one batch, are reported as when checked in turn: the leaf's first.
func TestKeyPackageSignatures(t *testing.T) {
	tr, _ := buildTree(t, 3)
	s := tr.Suite()
	kp := newMember(t, s, "joiner").keyPackage(t, s)
	damage := func(leaf, pkg bool) *message.KeyPackage {
		bad := *kp
		if leaf {
			bad.LeafNode.Signature = bytes.Clone(kp.LeafNode.Signature)
			bad.LeafNode.Signature[7] ^= 1
		}
		if pkg {
			bad.Signature = bytes.Clone(kp.Signature)
			bad.Signature[3] ^= 1
		}
		return &bad
	}
	for _, tc := range []struct {
		name       string
		kp         *message.KeyPackage
		leafFailed bool
	}{
		{"leaf", damage(true, false), true},
		{"key package", damage(false, true), false},
		{"both", damage(true, true), true},
	} {
		err := ValidateKeyPackage(s, tc.kp, LeafContext{})
		if !errors.Is(err, ErrKeyPackageInvalid) || !errors.Is(err, suite.ErrBadSignature) ||
			errors.Is(err, ErrBadLeafSignature) != tc.leafFailed || errors.Is(err, ErrLeafNodeInvalid) != tc.leafFailed {
			t.Errorf("%s signature damaged: %v", tc.name, err)
		}
	}
	if err := ValidateKeyPackage(s, kp, LeafContext{}); err != nil {
		t.Fatalf("the undamaged key package: %v", err)
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	tr, _ := buildTree(t, 7)
	data, err := tr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Tree
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.RootHash(), tr.RootHash()) || back.LeafCount() != tr.LeafCount() {
		t.Error("round trip changed the tree")
	}
	for i := range data {
		if err := back.UnmarshalBinary(data[:i]); err == nil {
			t.Fatalf("truncation at %d accepted", i)
		}
	}
}

func TestFromRatchetTreeRejectsMalformed(t *testing.T) {
	tr, _ := buildTree(t, 3)
	rt := tr.RatchetTree()
	for name, bad := range map[string]message.RatchetTree{
		"empty":          {},
		"trailing blank": append(append(message.RatchetTree{}, rt...), nil),
		"parent at leaf": append(message.RatchetTree{rt[1]}, rt[1:]...),
		"leaf at parent": append(message.RatchetTree{rt[0], rt[0]}, rt[2:]...),
	} {
		if _, err := FromRatchetTree(tr.Suite(), bad); !errors.Is(err, ErrMalformedTree) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestValidateReportsFirstBadLeaf checks that batched signature checks
// (validateLeafBlock) report what checking each leaf in turn would: the
// lowest invalid leaf, within a block of leafBlock leaves and across
// blocks, and a leaf's other failure before its signature's.
func TestValidateReportsFirstBadLeaf(t *testing.T) {
	s, err := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	m := newMember(t, s, "member")
	tr := New(s, m.signed(t, s, 0, nil))
	for range n - 1 {
		if _, err := tr.AddLeaf(newMember(t, s, "member").signed(t, s, 0, nil)); err != nil {
			t.Fatal(err)
		}
	}
	badSignature := func(rt message.RatchetTree, l int) {
		leaf := *rt[2*l].Leaf
		leaf.Signature = bytes.Clone(leaf.Signature)
		leaf.Signature[10] ^= 1
		rt[2*l] = &message.Node{Type: message.NodeTypeLeaf, Leaf: &leaf}
	}
	badSuite := func(rt message.RatchetTree, l int) {
		leaf := *rt[2*l].Leaf
		leaf.Capabilities.CipherSuites = nil
		rt[2*l] = &message.Node{Type: message.NodeTypeLeaf, Leaf: &leaf}
	}
	type damage struct {
		leaf int
		f    func(message.RatchetTree, int)
	}
	cases := []struct {
		name    string
		damages []damage
		want    error
		leaf    int // reported in the error for a signature
	}{
		{"one signature", []damage{{100, badSignature}}, ErrBadLeafSignature, 100},
		{"two in a block", []damage{{7, badSignature}, {3, badSignature}}, ErrBadLeafSignature, 3},
		{"two blocks", []damage{{130, badSignature}, {70, badSignature}}, ErrBadLeafSignature, 70},
		{"first and last", []damage{{0, badSignature}, {n - 1, badSignature}}, ErrBadLeafSignature, 0},
		{"signature before suite", []damage{{2, badSignature}, {5, badSuite}}, ErrBadLeafSignature, 2},
		{"suite before signature", []damage{{5, badSuite}, {9, badSignature}}, ErrUnsupportedCapability, -1},
		{"suite and signature of one leaf", []damage{{5, badSignature}, {5, badSuite}}, ErrUnsupportedCapability, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt := tr.RatchetTree()
			for _, d := range c.damages {
				d.f(rt, d.leaf)
			}
			bad, err := FromRatchetTree(s, rt)
			if err != nil {
				t.Fatal(err)
			}
			err = bad.Validate(ValidateOptions{GroupID: testGroupID, Version: message.MLS10, ListsGroupParameters: true})
			if !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
			if c.leaf >= 0 && !strings.Contains(err.Error(), fmt.Sprintf("leaf %d:", c.leaf)) {
				t.Fatalf("Validate = %v, want leaf %d", err, c.leaf)
			}
		})
	}
	if err := tr.Validate(ValidateOptions{GroupID: testGroupID, Version: message.MLS10, ListsGroupParameters: true}); err != nil {
		t.Fatalf("undamaged tree: %v", err)
	}
}
