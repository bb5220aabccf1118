// Package grouptest builds the states of large groups without running the
// commits that would make them, for benchmarks and comparisons: running n
// commits through the public API costs O(n²) processing, far too long at
// 10,000 members.
//
// The tree Build makes is what n members joining by one add-only commit
// (sparse) or then committing once each in leaf order (full) would leave:
// each parent node holds the key of the last commit below it and each
// leaf a commit leaf with its parent hash and a valid signature, so the
// tree passes the full validation of a join (ours and other
// implementations'). Any member's state can be derived from it.
package grouptest

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

// Group is a built group: its shared epoch and what deriving any member's
// state takes.
type Group struct {
	pub         *group.Public
	tree        *tree.Tree
	bundles     []*group.KeyPackageBundle
	pathSecrets map[treemath.NodeIndex][]byte
}

// Build makes an n-member group in suite cs whose members are named
// "member-<i>", with a full or a sparse tree (package doc).
func Build(cs suite.ID, n int, full bool) (*Group, error) {
	return BuildWith(cs, n, full, Options{})
}

// Options change what Build makes.
type Options struct {
	// Name is the credential identity of the member at leaf i
	// ("member-<i>" if nil); callers whose members must be
	// "<user id>|<device id>" give it.
	Name func(i int) string
	// Scheme is the init scheme of the group's epoch (RFC 9420's if
	// zero): commits on it carry it on, and members that join later
	// assume their own configuration's.
	Scheme keyschedule.InitScheme
}

// BuildWith is Build with options.
func BuildWith(cs suite.ID, n int, full bool, o Options) (*Group, error) {
	name := o.Name
	if name == nil {
		name = func(i int) string { return fmt.Sprintf("member-%d", i) }
	}
	s, err := suite.Lookup(cs)
	if err != nil {
		return nil, err
	}
	groupID := []byte(fmt.Sprintf("grouptest %d", n))
	g := &Group{bundles: make([]*group.KeyPackageBundle, n), pathSecrets: map[treemath.NodeIndex][]byte{}}
	errs := make([]error, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				g.bundles[i], errs[i] = newMember(s, name(i))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	leaf := func(i int) *message.LeafNode { l := g.bundles[i].KeyPackage.LeafNode; return &l }
	t := tree.New(s, leaf(0))
	for i := 1; i < n; i++ {
		if _, err := t.AddLeaf(leaf(i)); err != nil {
			return nil, err
		}
	}
	if full {
		if err := g.commitAll(s, t, groupID); err != nil {
			return nil, err
		}
	}
	ctx := message.GroupContext{
		Version: message.MLS10, CipherSuite: cs, GroupID: groupID, Epoch: uint64(n),
		TreeHash: t.RootHash(), ConfirmedTranscriptHash: random(s.HashSize()), Extensions: []message.Extension{},
	}
	d, err := keyschedule.Derive(s, keyschedule.Input{InitSecret: random(s.HashSize()), GroupContext: codec.Marshal(&ctx), Scheme: o.Scheme})
	if err != nil {
		return nil, err
	}
	tag, err := d.Epoch.ConfirmationTag(ctx.ConfirmedTranscriptHash)
	if err != nil {
		return nil, err
	}
	if g.pub, err = group.NewPublic(ctx, t, tag, d.Epoch, group.Config{}.SecretTree); err != nil {
		return nil, err
	}
	g.tree = t
	return g, nil
}

// commitAll has each member in turn set its filtered direct path, as its
// commit would. Only the keys that survive the later commits are derived
// from path secrets, which are kept for Member; the others are random
// bytes that later commits replace anyway.
func (g *Group) commitAll(s *suite.Suite, t *tree.Tree, groupID []byte) error {
	n := len(g.bundles)
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
				return err
			}
			g.pathSecrets[x], keys[j] = ps, k.Public().Bytes()
		}
		ph, err := t.SetPathKeys(l, keys)
		if err != nil {
			return err
		}
		nl := g.bundles[i].KeyPackage.LeafNode
		nl.Source, nl.Lifetime, nl.ParentHash = message.LeafNodeSourceCommit, message.Lifetime{}, ph
		if nl.Signature, err = g.bundles[i].SignatureKey.SignWithLabel("LeafNodeTBS", nl.TBS(groupID, uint32(i))); err != nil {
			return err
		}
		if err := t.SetLeaf(l, &nl); err != nil {
			return err
		}
	}
	return nil
}

// Member returns the state of the member at leaf i, with every private key
// of its path. All members' states share the group's Public.
func (g *Group) Member(i int, cfg group.Config) (*group.Group, error) {
	l := treemath.LeafIndex(i)
	ps := treekem.NewPrivateState(l, g.bundles[i].EncryptionKey)
	var err error
	for _, x := range g.tree.LeafCount().DirectPath(l.Node()) {
		if g.tree.IsBlank(x) {
			continue
		}
		if ps, err = ps.WithNodeSecret(g.tree, x, g.pathSecrets[x]); err != nil {
			return nil, err
		}
	}
	if err := ps.Check(g.tree); err != nil {
		return nil, err
	}
	return group.New(g.pub, group.NewPrivate(l, g.bundles[i].SignatureKey, ps), cfg), nil
}

func newMember(s *suite.Suite, name string) (*group.KeyPackageBundle, error) {
	sig, err := s.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	return group.NewKeyPackage(message.BasicCredential([]byte(name)), sig, nil)
}

// lastLeafUnder returns the last of the n leaves under node x: the member
// whose commit sets x last.
func lastLeafUnder(x treemath.NodeIndex, n int) treemath.LeafIndex {
	span := uint32(1)<<x.Level() - 1
	return treemath.LeafIndex(min((uint32(x)+span)/2, uint32(n-1)))
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("grouptest: " + err.Error())
	}
	return b
}
