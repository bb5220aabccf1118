package group

import (
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// benchGroup is a large group built directly, without running n commits:
// the tree is what n members committing once each in leaf order (full) or
// one add-only commit (sparse) would leave, with valid signatures and
// parent hashes, and the states of two members.
type benchGroup struct {
	committer, receiver *Group
	// member returns the state of the member at leaf i, sharing the
	// receiver's Public.
	member func(i int) *Group
}

var (
	benchMu     sync.Mutex
	benchGroups = map[string]*benchGroup{}
)

func getBenchGroup(b *testing.B, n int, full bool) *benchGroup {
	b.Helper()
	key := fmt.Sprint(n, full)
	benchMu.Lock()
	defer benchMu.Unlock()
	if g, ok := benchGroups[key]; ok {
		return g
	}
	start := time.Now()
	g := buildBenchGroup(b, n, full)
	b.Logf("built %d-member %s group in %v", n, map[bool]string{true: "full", false: "sparse"}[full], time.Since(start))
	benchGroups[key] = g
	return g
}

func buildBenchGroup(b *testing.B, n int, full bool) *benchGroup {
	id := suite.X25519AES128GCMSHA256Ed25519
	s, _ := suite.Lookup(id)
	groupID := []byte("benchmark group")
	sigPrivs := make([]*suite.SignaturePrivateKey, n)
	encPrivs := make([]*suite.HPKEPrivateKey, n)
	leaves := make([]*message.LeafNode, n)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < n; i += 2 {
				kp := newBundle(b, id, name(i))
				sigPrivs[i], encPrivs[i] = kp.SignatureKey, kp.EncryptionKey
				leaf := kp.KeyPackage.LeafNode
				leaves[i] = &leaf
			}
		})
	}
	wg.Wait()
	t := tree.New(s, leaves[0])
	for i := 1; i < n; i++ {
		if _, err := t.AddLeaf(leaves[i]); err != nil {
			b.Fatal(err)
		}
	}
	// Each member in turn sets its filtered direct path from fresh path
	// secrets, as its commit would; the secrets that survive are kept so
	// that any member's private state can be derived.
	pathSecrets := map[treemath.NodeIndex][]byte{}
	if full {
		for i := range n {
			l := treemath.LeafIndex(i)
			fdp := t.FilteredDirectPath(l)
			keys := make([][]byte, len(fdp))
			for j, x := range fdp {
				// A node that a later member overwrites only needs some
				// bytes here (they enter parent hashes that are then
				// replaced too); only surviving nodes get real keys.
				if rightmostLeaf(x, n) != l {
					keys[j] = make([]byte, 32)
					rand.Read(keys[j])
					continue
				}
				ps := make([]byte, s.HashSize())
				rand.Read(ps)
				k, err := s.DeriveHPKEKey(s.DeriveSecret(ps, "node"))
				if err != nil {
					b.Fatal(err)
				}
				pathSecrets[x], keys[j] = ps, k.Public().Bytes()
			}
			ph, err := t.SetPathKeys(l, keys)
			if err != nil {
				b.Fatal(err)
			}
			leaf := *leaves[i]
			leaf.Source = message.LeafNodeSourceCommit
			leaf.Lifetime = message.Lifetime{}
			leaf.ParentHash = ph
			leaf.Signature, err = sigPrivs[i].SignWithLabel("LeafNodeTBS", leaf.TBS(groupID, uint32(i)))
			if err != nil {
				b.Fatal(err)
			}
			if err := t.SetLeaf(l, &leaf); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := message.GroupContext{
		Version: message.MLS10, CipherSuite: id, GroupID: groupID, Epoch: uint64(n),
		TreeHash: t.RootHash(), ConfirmedTranscriptHash: make([]byte, s.HashSize()), Extensions: []message.Extension{},
	}
	initSecret := make([]byte, s.HashSize())
	rand.Read(initSecret)
	d, err := keyschedule.Derive(s, keyschedule.Input{InitSecret: initSecret, GroupContext: codec.Marshal(&ctx)})
	if err != nil {
		b.Fatal(err)
	}
	tag, _ := d.Epoch.ConfirmationTag(ctx.ConfirmedTranscriptHash)
	pub, err := newPublic(s, ctx, t, tag, d.Epoch, Config{}.SecretTree)
	if err != nil {
		b.Fatal(err)
	}
	member := func(i int) *Group {
		l := treemath.LeafIndex(i)
		ps := treekem.NewPrivateState(l, encPrivs[i])
		for _, x := range t.LeafCount().DirectPath(l.Node()) {
			if t.IsBlank(x) {
				continue
			}
			if ps, err = ps.WithNodeSecret(t, x, pathSecrets[x]); err != nil {
				b.Fatal(err)
			}
		}
		if err := ps.Check(t); err != nil {
			b.Fatal(err)
		}
		return New(pub, NewPrivate(l, sigPrivs[i], ps), Config{})
	}
	return &benchGroup{committer: member(n / 2), receiver: member(n - 1), member: member}
}

var benchSizes = []int{10, 100, 1000, 10000}

// pathCommit returns a commit with a path by g's committer, parsed.
func (g *benchGroup) pathCommit(b *testing.B) *message.MLSMessage {
	b.Helper()
	pc, err := g.committer.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := message.ParseMLSMessage(pc.Commit)
	if err != nil {
		b.Fatal(err)
	}
	return msg
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU starts counting process CPU time; the returned function, called
// after the b.Loop loop, reports it per operation as "cpu-ms/op". Unlike
// ns/op it does not grow when other processes compete for the cores, so
// figures from a loaded machine stay comparable; for parallel code it is
// the sum over all goroutines, not the wall time.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		used := processCPU(b) - start
		b.ReportMetric(float64(used)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
}

func forEachBenchGroup(b *testing.B, fn func(b *testing.B, g *benchGroup)) {
	for _, full := range []bool{true, false} {
		for _, n := range benchSizes {
			kind := map[bool]string{true: "full", false: "sparse"}[full]
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				fn(b, getBenchGroup(b, n, full))
			})
		}
	}
}

func BenchmarkCommitWithPath(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		var size int
		defer reportCPU(b)()
		for b.Loop() {
			pc, err := g.committer.Commit(CommitOptions{ForcePath: true})
			if err != nil {
				b.Fatal(err)
			}
			size = len(pc.Commit)
		}
		b.ReportMetric(float64(size), "commit-bytes")
	})
}

func BenchmarkProcessCommit(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		pc, err := g.committer.Commit(CommitOptions{ForcePath: true})
		if err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := g.receiver.Handle(pc.Commit); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkProcessCommitShared processes one commit (with a path, in a
// full tree of 1,000) once for 1 and for 10 members of ours sharing the
// receiver's Public (HandleCommitShared): the key schedule runs once,
// each member decrypts its own path secret. ours=1 is Handle's work.
func BenchmarkProcessCommitShared(b *testing.B) {
	const n = 1000
	for _, ours := range []int{1, 10} {
		b.Run(fmt.Sprintf("full/%d/ours=%d", n, ours), func(b *testing.B) {
			g := getBenchGroup(b, n, true)
			msg := g.pathCommit(b)
			// The others are spread over the tree, so that their common
			// ancestors with the committer differ.
			var others []*Private
			for k := 1; k < ours; k++ {
				others = append(others, g.member(k*n/ours-1).Private())
			}
			defer reportCPU(b)()
			for b.Loop() {
				tr, err := g.receiver.HandleCommitShared(msg, others)
				if err != nil || tr.Public == nil || slices.Contains(tr.Privates, nil) {
					b.Fatal(err)
				}
			}
		})
	}
}

// allOurs returns the private parts of every member of g but the
// committer and the receiver, each decoded from its own encoding as a
// service that stores them apart loads them: no two share a key object.
func allOurs(b *testing.B, g *benchGroup, n int) []*Private {
	b.Helper()
	c, r := g.committer.Private().leaf, g.receiver.Private().leaf
	var out []*Private
	for i := range n {
		if l := treemath.LeafIndex(i); l == c || l == r {
			continue
		}
		data, err := g.member(i).Private().MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		p, err := UnmarshalPrivate(data)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// BenchmarkOursAll is a service that holds every member of a full group
// but one: a commit of its own carrying the next private parts of all
// the others (Commit with Others), and one from the member it does not
// hold processed for all of them (HandleCommitShared).
func BenchmarkOursAll(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("commit/full/%d", n), func(b *testing.B) {
			g := getBenchGroup(b, n, true)
			others := append(allOurs(b, g, n), g.receiver.Private())
			defer reportCPU(b)()
			for b.Loop() {
				pc, err := g.committer.Commit(CommitOptions{ForcePath: true, Others: others})
				if err != nil || len(pc.Others) != len(others) || slices.Contains(pc.Others, nil) {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("receive/full/%d", n), func(b *testing.B) {
			g := getBenchGroup(b, n, true)
			msg := g.pathCommit(b)
			others := allOurs(b, g, n)
			defer reportCPU(b)()
			for b.Loop() {
				tr, err := g.receiver.HandleCommitShared(msg, others)
				if err != nil || tr.Public == nil || slices.Contains(tr.Privates, nil) {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAddMember(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		kp := newBundle(b, suite.X25519AES128GCMSHA256Ed25519, "joiner")
		var commitSize, welcomeSize int
		defer reportCPU(b)()
		for b.Loop() {
			pc, err := g.committer.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&kp.KeyPackage)}})
			if err != nil {
				b.Fatal(err)
			}
			commitSize, welcomeSize = len(pc.Commit), len(pc.Welcome)
		}
		b.ReportMetric(float64(commitSize), "commit-bytes")
		b.ReportMetric(float64(welcomeSize), "welcome-bytes")
	})
}

// BenchmarkAddMembers: one commit adding 100 members, as a room's bulk
// invite does: a Welcome sealing the group secrets to each under the
// encrypted GroupInfo, which holds the whole ratchet tree.
func BenchmarkAddMembers(b *testing.B) {
	const adds = 100
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		proposals := make([]*message.Proposal, adds)
		for i := range proposals {
			kp := newBundle(b, suite.X25519AES128GCMSHA256Ed25519, fmt.Sprintf("joiner-%d", i))
			proposals[i] = AddProposal(&kp.KeyPackage)
		}
		var welcomeSize int
		defer reportCPU(b)()
		for b.Loop() {
			pc, err := g.committer.Commit(CommitOptions{Proposals: proposals})
			if err != nil {
				b.Fatal(err)
			}
			welcomeSize = len(pc.Welcome)
		}
		b.ReportMetric(float64(welcomeSize), "welcome-bytes")
	})
}

func BenchmarkJoin(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		kp := newBundle(b, suite.X25519AES128GCMSHA256Ed25519, "joiner")
		pc, err := g.committer.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&kp.KeyPackage)}})
		if err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := Join(pc.Welcome, kp, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkStateSize(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		var pub, priv, all int
		defer reportCPU(b)()
		for b.Loop() {
			p, err := g.committer.Public().MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			q, _ := g.committer.Private().MarshalBinary()
			a, _ := g.committer.MarshalBinary()
			pub, priv, all = len(p), len(q), len(a)
		}
		b.ReportMetric(float64(pub), "public-bytes")
		b.ReportMetric(float64(priv), "private-bytes")
		b.ReportMetric(float64(all), "state-bytes")
	})
}

func BenchmarkDecodeState(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		data, err := g.committer.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := UnmarshalGroup(data, Config{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// rightmostLeaf returns the last of the n leaves under node x.
func rightmostLeaf(x treemath.NodeIndex, n int) treemath.LeafIndex {
	span := uint32(1)<<x.Level() - 1
	return treemath.LeafIndex(min((uint32(x)+span)/2, uint32(n-1)))
}
