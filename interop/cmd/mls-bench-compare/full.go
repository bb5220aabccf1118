package main

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"sync"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// fullGroup builds, without running n commits, the state of one member of
// an n-member group whose tree is what every member committing once, in
// leaf order, leaves: each parent node holds the key of the last commit
// below it, each leaf a commit leaf with its parent hash and a valid
// signature. Running those commits would take O(n²) processing, far too
// long at 10,000 members through any implementation's public API; the
// state built here passes the full tree validation of a join (ours and
// OpenMLS's), so the members added to it from here on are real.
//
// The returned member sits in the middle of the tree and holds every key
// of its path, so that it can commit.
func fullGroup(cs suite.ID, n int) (*group.Group, error) {
	s, err := suite.Lookup(cs)
	if err != nil {
		return nil, err
	}
	groupID := []byte(fmt.Sprintf("bench-full-%d", n))
	bundles := make([]*group.KeyPackageBundle, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				bundles[i], errs[i] = newMember(cs, fmt.Sprintf("member-%d", i))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	leaf := func(i int) *message.LeafNode { l := bundles[i].KeyPackage.LeafNode; return &l }
	t := tree.New(s, leaf(0))
	for i := 1; i < n; i++ {
		if _, err := t.AddLeaf(leaf(i)); err != nil {
			return nil, err
		}
	}
	// Each member in turn sets its filtered direct path, as its commit
	// would. Only the keys that survive the later commits are derived
	// from path secrets (kept, so that the member returned can hold its
	// path's keys); the others are random bytes that later commits
	// replace anyway.
	me := treemath.LeafIndex(n / 2)
	pathSecrets := map[treemath.NodeIndex][]byte{}
	for i := range n {
		l := treemath.LeafIndex(i)
		fdp := t.FilteredDirectPath(l)
		keys := make([][]byte, len(fdp))
		for j, x := range fdp {
			if lastLeafUnder(x, n) != l {
				keys[j] = random(32)
				continue
			}
			ps := random(s.HashSize())
			k, err := s.DeriveHPKEKey(s.DeriveSecret(ps, "node"))
			if err != nil {
				return nil, err
			}
			pathSecrets[x], keys[j] = ps, k.Public().Bytes()
		}
		ph, err := t.SetPathKeys(l, keys)
		if err != nil {
			return nil, err
		}
		nl := *leaf(i)
		nl.Source, nl.Lifetime, nl.ParentHash = message.LeafNodeSourceCommit, message.Lifetime{}, ph
		if nl.Signature, err = bundles[i].SignatureKey.SignWithLabel("LeafNodeTBS", nl.TBS(groupID, uint32(i))); err != nil {
			return nil, err
		}
		if err := t.SetLeaf(l, &nl); err != nil {
			return nil, err
		}
	}
	ctx := message.GroupContext{
		Version: message.MLS10, CipherSuite: cs, GroupID: groupID, Epoch: uint64(n),
		TreeHash: t.RootHash(), ConfirmedTranscriptHash: random(s.HashSize()), Extensions: []message.Extension{},
	}
	d, err := keyschedule.Derive(s, keyschedule.Input{InitSecret: random(s.HashSize()), GroupContext: codec.Marshal(&ctx)})
	if err != nil {
		return nil, err
	}
	tag, err := d.Epoch.ConfirmationTag(ctx.ConfirmedTranscriptHash)
	if err != nil {
		return nil, err
	}
	pub, err := group.NewPublic(ctx, t, tag, d.Epoch, group.Config{}.SecretTree)
	if err != nil {
		return nil, err
	}
	ps := treekem.NewPrivateState(me, bundles[me].EncryptionKey)
	for _, x := range t.LeafCount().DirectPath(me.Node()) {
		if t.IsBlank(x) {
			continue
		}
		if ps, err = ps.WithNodeSecret(t, x, pathSecrets[x]); err != nil {
			return nil, err
		}
	}
	return group.New(pub, group.NewPrivate(me, bundles[me].SignatureKey, ps), group.Config{}), nil
}

// lastLeafUnder returns the last of the n leaves under node x: the member
// whose commit sets x last.
func lastLeafUnder(x treemath.NodeIndex, n int) treemath.LeafIndex {
	span := uint32(1)<<x.Level() - 1
	return treemath.LeafIndex(min((uint32(x)+span)/2, uint32(n-1)))
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
