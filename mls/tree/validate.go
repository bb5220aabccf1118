package tree

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// ValidateOptions describe the group whose tree a joiner validates.
type ValidateOptions struct {
	// GroupID is signed by update and commit leaves.
	GroupID []byte
	// Version is the group's protocol version; with ListsGroupParameters,
	// every leaf must list it and the suite (see LeafContext).
	Version              message.ProtocolVersion
	ListsGroupParameters bool
	// TreeHash, if not nil, is the tree_hash the GroupInfo commits to.
	TreeHash []byte
	// Required is the group's required_capabilities extension, if any.
	Required *message.RequiredCapabilities
	// Now, if not zero, is checked against key_package leaves' lifetimes.
	Now time.Time
}

// Validate performs the checks a new member makes on the tree of the group
// it joins (§12.4.3.1): the tree hash, the unmerged leaves of every parent,
// uniqueness of encryption and signature keys, parent-hash validity of
// every non-blank parent (§7.9.2), and every leaf's validity (§7.3).
//
// Leaf signatures, nearly all of the cost, are verified on
// runtime.GOMAXPROCS goroutines, in batches of a block of leaves
// (suite.VerifyBatch: about half the cost of one by one in the Ed25519
// suites), while this goroutine performs the other checks, so that those
// add almost nothing to the time on a multi-core machine. A failure of
// the other checks is reported in preference to a leaf's, as if they ran
// first, and stops the leaf workers.
func (t *Tree) Validate(o ValidateOptions) error {
	// From here on the hash cache is filled in place, while the leaf
	// workers read nodes of the same chunks.
	t.store.own()
	leaves := t.startLeafValidation(o)
	if err := t.validateStructure(o); err != nil {
		leaves.stop()
		leaves.wait()
		return err
	}
	return leaves.wait()
}

func (t *Tree) validateStructure(o ValidateOptions) error {
	if o.TreeHash != nil && !bytes.Equal(t.RootHash(), o.TreeHash) {
		return ErrTreeHashMismatch
	}
	if err := t.checkUnmergedLeaves(); err != nil {
		return err
	}
	if err := t.checkUniqueKeys(); err != nil {
		return err
	}
	return t.VerifyParentHashes()
}

// checkUnmergedLeaves checks each unmerged_leaves entry of each parent: a
// non-blank leaf below the parent, listed once, and listed by every
// non-blank node between the leaf and the parent.
func (t *Tree) checkUnmergedLeaves() error {
	type entry struct {
		node treemath.NodeIndex
		leaf uint32
	}
	var listed map[entry]struct{}
	for i := 1; i < t.store.width; i += 2 {
		n := t.store.node(treemath.NodeIndex(i))
		if n == nil || len(n.Parent.UnmergedLeaves) == 0 {
			continue
		}
		if listed == nil {
			listed = make(map[entry]struct{})
		}
		p := treemath.NodeIndex(i)
		for _, u := range n.Parent.UnmergedLeaves {
			l := treemath.LeafIndex(u)
			if !t.leaves.ContainsLeaf(l) || t.store.node(l.Node()) == nil || !treemath.InSubtree(l.Node(), p) {
				return fmt.Errorf("%w: node %d lists leaf %d", ErrUnmergedLeavesInvalid, p, u)
			}
			e := entry{p, u}
			if _, dup := listed[e]; dup {
				return fmt.Errorf("%w: node %d lists leaf %d twice", ErrUnmergedLeavesInvalid, p, u)
			}
			listed[e] = struct{}{}
		}
	}
	for e := range listed {
		x := treemath.LeafIndex(e.leaf).Node()
		for q, _ := t.leaves.Parent(x); q != e.node; q, _ = t.leaves.Parent(q) {
			if t.store.node(q) == nil {
				continue
			}
			if _, ok := listed[entry{q, e.leaf}]; !ok {
				return fmt.Errorf("%w: node %d lists leaf %d but node %d below it does not", ErrUnmergedLeavesInvalid, e.node, e.leaf, q)
			}
		}
	}
	return nil
}

// checkUniqueKeys checks that no encryption key appears in two nodes and
// no signature key in two leaves, using the key index that
// FromRatchetTree built.
func (t *Tree) checkUniqueKeys() error {
	var err error
	for i := range t.store.width {
		x := treemath.NodeIndex(i)
		n := t.store.node(x)
		if n == nil {
			continue
		}
		t.enc.find(nodeEncryptionKey(n), func(y treemath.NodeIndex) bool {
			if y != x {
				err = fmt.Errorf("%w: encryption key of nodes %d and %d", ErrDuplicateKey, min(x, y), max(x, y))
			}
			return err == nil
		})
		if err == nil && n.Leaf != nil {
			t.sig.find(n.Leaf.SignatureKey, func(y treemath.NodeIndex) bool {
				if y != x {
					err = fmt.Errorf("%w: signature key of nodes %d and %d", ErrDuplicateKey, min(x, y), max(x, y))
				}
				return err == nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// VerifyParentHashes checks that every non-blank parent node is parent-hash
// valid (§7.9.2), top down: exactly one node D in the resolution of one of
// its children C must carry the parent's hash with copath child S (the other
// child), with the rest of C's resolution being exactly the parent's
// unmerged leaves under C. Chains then lead from every parent to a leaf.
//
// The work is linear in the tree: a node is visited by the resolution of
// only the one child whose parent is its nearest non-blank ancestor, and the
// original sibling tree hash comes from the cache unless unmerged leaves lie
// under S. The unmerged leaves must have been checked first
// (checkUnmergedLeaves, part of Validate), so that resolutions hold no
// duplicates.
func (t *Tree) VerifyParentHashes() error {
	var res []treemath.NodeIndex
	hs := t.newHasher()
	for i := 1; i < t.store.width; i += 2 {
		n := t.store.node(treemath.NodeIndex(i))
		if n == nil {
			continue
		}
		p := treemath.NodeIndex(i)
		left, _ := treemath.Left(p)
		right, _ := treemath.Right(p)
		valid := 0
		for _, side := range [2][2]treemath.NodeIndex{{left, right}, {right, left}} {
			c, s := side[0], side[1]
			res = t.AppendResolution(res[:0], c)
			d, ok := chainCandidate(res, n.Parent.UnmergedLeaves, c)
			if !ok {
				continue
			}
			dn := t.store.node(d)
			var dph []byte
			switch {
			case dn.Parent != nil:
				dph = dn.Parent.ParentHash
			case dn.Leaf.Source == message.LeafNodeSourceCommit:
				dph = dn.Leaf.ParentHash
			default:
				continue
			}
			if bytes.Equal(dph, t.parentHashOf(hs, p, s)) {
				valid++
			}
		}
		if valid != 1 {
			return fmt.Errorf("%w: node %d is linked from %d descendants", ErrParentHashMismatch, p, valid)
		}
	}
	return nil
}

// chainCandidate returns the one node of res (the resolution of c) that is
// not among the parent's unmerged leaves, provided the rest of res is
// exactly the unmerged leaves under c.
func chainCandidate(res []treemath.NodeIndex, unmerged []uint32, c treemath.NodeIndex) (treemath.NodeIndex, bool) {
	under := 0
	for _, u := range unmerged {
		if treemath.InSubtree(treemath.LeafIndex(u).Node(), c) {
			under++
		}
	}
	if len(res) != under+1 {
		return 0, false
	}
	var d treemath.NodeIndex
	found := false
	for _, x := range res {
		if l, ok := x.Leaf(); ok && containsUint32(unmerged, uint32(l)) {
			continue
		}
		if found {
			return 0, false
		}
		d, found = x, true
	}
	return d, found
}

// leafValidation is the validation of every leaf, running in the
// background.
type leafValidation struct {
	wg   sync.WaitGroup
	errs []error // the first failure of each block of leaves
	// failed is the lowest block known to have failed; blocks above it
	// are skipped. -1 stops every worker.
	failed atomic.Int64
}

// leafBlock is the number of leaves a worker takes at a time: enough to
// make the shared counter cheap, few enough to balance the workers when
// one shares its core with other work.
const leafBlock = 64

// startLeafValidation starts validating every leaf on runtime.GOMAXPROCS
// goroutines. Its wait reports the failure of the lowest leaf index, as a
// sequential loop would.
func (t *Tree) startLeafValidation(o ValidateOptions) *leafValidation {
	c := LeafContext{
		GroupID:              o.GroupID,
		Version:              o.Version,
		ListsGroupParameters: o.ListsGroupParameters,
		Required:             o.Required,
		CredentialTypes:      t.CredentialTypes(),
		Now:                  o.Now,
	}
	leaves := int(t.leaves)
	blocks := (leaves + leafBlock - 1) / leafBlock
	v := &leafValidation{errs: make([]error, blocks)}
	v.failed.Store(math.MaxInt64)
	var next atomic.Int64
	for range min(runtime.GOMAXPROCS(0), blocks) {
		v.wg.Go(func() {
			c := c
			for {
				b := next.Add(1) - 1
				if b >= int64(blocks) || b > v.failed.Load() {
					return
				}
				if err := t.validateLeafBlock(c, int(b)*leafBlock, min(leaves, int(b+1)*leafBlock)); err != nil {
					v.errs[b] = err
					v.fail(b)
				}
			}
		})
	}
	return v
}

// validateLeafBlock validates leaves [from, to) and returns the error of
// the first that is not valid, as ValidateLeafNode on each in turn would.
// Their signatures are verified in one batch (suite.VerifyBatch), after
// the other checks of every leaf up to the first that fails them.
func (t *Tree) validateLeafBlock(c LeafContext, from, to int) error {
	var (
		checks  []suite.SignatureCheck
		indexes []treemath.LeafIndex
		failed  error
	)
	for l := from; l < to; l++ {
		n := t.store.node(treemath.NodeIndex(2 * l))
		if n == nil {
			continue
		}
		c.LeafIndex = treemath.LeafIndex(l)
		if failed = CheckLeafNode(t.suite, n.Leaf, c); failed != nil {
			break
		}
		checks = append(checks, LeafSignature(n.Leaf, c.GroupID, c.LeafIndex))
		indexes = append(indexes, c.LeafIndex)
	}
	if bad, err := t.suite.VerifyBatch(checks); err != nil {
		return leafSignatureError(indexes[bad], err)
	}
	return failed
}

// fail lowers failed to b.
func (v *leafValidation) fail(b int64) {
	for {
		cur := v.failed.Load()
		if b >= cur || v.failed.CompareAndSwap(cur, b) {
			return
		}
	}
}

func (v *leafValidation) stop() { v.fail(-1) }

func (v *leafValidation) wait() error {
	v.wg.Wait()
	return errorsJoinFirst(v.errs)
}
