package tree

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

func decodeTree(s *suite.Suite, data []byte) (*Tree, error) {
	var rt message.RatchetTree
	if err := codec.Unmarshal(data, &rt, "ratchet_tree"); err != nil {
		return nil, err
	}
	return FromRatchetTree(s, rt)
}

type treeValidationCase struct {
	CipherSuite suite.ID      `json:"cipher_suite"`
	Tree        vectors.Hex   `json:"tree"`
	GroupID     vectors.Hex   `json:"group_id"`
	Resolutions [][]uint32    `json:"resolutions"`
	TreeHashes  []vectors.Hex `json:"tree_hashes"`
}

func checkTreeValidation(c *treeValidationCase) error {
	s, err := suite.Lookup(c.CipherSuite)
	if err != nil {
		return err
	}
	tr, err := decodeTree(s, c.Tree)
	if err != nil {
		return err
	}
	if int(tr.Width()) != len(c.Resolutions) || len(c.Resolutions) != len(c.TreeHashes) {
		return fmt.Errorf("width %d, vector has %d resolutions and %d hashes", tr.Width(), len(c.Resolutions), len(c.TreeHashes))
	}
	for i := range c.Resolutions {
		got := tr.Resolution(treemath.NodeIndex(i))
		want := make([]treemath.NodeIndex, len(c.Resolutions[i]))
		for j, x := range c.Resolutions[i] {
			want[j] = treemath.NodeIndex(x)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("resolution of %d = %v, want %v", i, got, want)
		}
		if h := tr.TreeHash(treemath.NodeIndex(i)); !bytes.Equal(h, c.TreeHashes[i]) {
			return fmt.Errorf("tree hash of %d = %x, want %x", i, h, c.TreeHashes[i])
		}
	}
	return tr.Validate(ValidateOptions{GroupID: c.GroupID, Version: message.MLS10, ListsGroupParameters: true, TreeHash: c.TreeHashes[tr.leaves.Root()]})
}

func TestTreeValidationVectors(t *testing.T) {
	vectors.Run(t, "tree-validation.json", checkTreeValidation, func(c *treeValidationCase) string { return fmt.Sprintf("suite %d", c.CipherSuite) })
}

type treeOperationsCase struct {
	CipherSuite    suite.ID    `json:"cipher_suite"`
	TreeBefore     vectors.Hex `json:"tree_before"`
	Proposal       vectors.Hex `json:"proposal"`
	ProposalSender uint32      `json:"proposal_sender"`
	TreeHashBefore vectors.Hex `json:"tree_hash_before"`
	TreeAfter      vectors.Hex `json:"tree_after"`
	TreeHashAfter  vectors.Hex `json:"tree_hash_after"`
}

func checkTreeOperations(c *treeOperationsCase) error {
	s, err := suite.Lookup(c.CipherSuite)
	if err != nil {
		return err
	}
	tr, err := decodeTree(s, c.TreeBefore)
	if err != nil {
		return err
	}
	if h := tr.RootHash(); !bytes.Equal(h, c.TreeHashBefore) {
		return fmt.Errorf("tree hash before = %x, want %x", h, c.TreeHashBefore)
	}
	before := tr.Clone()
	var p message.Proposal
	if err := codec.Unmarshal(c.Proposal, &p, "proposal"); err != nil {
		return err
	}
	switch p.Type {
	case message.ProposalAdd:
		_, err = tr.AddLeaf(&p.Add.KeyPackage.LeafNode)
	case message.ProposalUpdate:
		err = tr.UpdateLeaf(treemath.LeafIndex(c.ProposalSender), &p.Update.LeafNode)
	case message.ProposalRemove:
		err = tr.RemoveLeaf(treemath.LeafIndex(p.Remove.Removed))
	default:
		err = fmt.Errorf("unexpected proposal type %d", p.Type)
	}
	if err != nil {
		return err
	}
	if got := codec.Marshal(tr.RatchetTree()); !bytes.Equal(got, c.TreeAfter) {
		return fmt.Errorf("tree after = %x, want %x", got, c.TreeAfter)
	}
	if h := tr.RootHash(); !bytes.Equal(h, c.TreeHashAfter) {
		return fmt.Errorf("tree hash after = %x, want %x", h, c.TreeHashAfter)
	}
	// The cached hashes must agree with a tree built from scratch, and the
	// clone taken before the change must be untouched.
	fresh, err := decodeTree(s, c.TreeAfter)
	if err != nil {
		return err
	}
	if !bytes.Equal(fresh.RootHash(), c.TreeHashAfter) {
		return fmt.Errorf("fresh tree hash after differs")
	}
	if !bytes.Equal(codec.Marshal(before.RatchetTree()), c.TreeBefore) || !bytes.Equal(before.RootHash(), c.TreeHashBefore) {
		return fmt.Errorf("clone of the tree before was changed")
	}
	return nil
}

func TestTreeOperationsVectors(t *testing.T) {
	vectors.Run(t, "tree-operations.json", checkTreeOperations, nil)
}
