package group_test

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/group/grouptest"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// benchGroup is a large group built directly (grouptest.Build), without
// running n commits, and the states of two members.
type benchGroup struct {
	committer, receiver *group.Group
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
	built, err := grouptest.Build(suite.X25519AES128GCMSHA256Ed25519, n, full)
	if err != nil {
		b.Fatal(err)
	}
	g := &benchGroup{}
	if g.committer, err = built.Member(n/2, group.Config{}); err != nil {
		b.Fatal(err)
	}
	if g.receiver, err = built.Member(n-1, group.Config{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d-member %s group in %v", n, map[bool]string{true: "full", false: "sparse"}[full], time.Since(start))
	benchGroups[key] = g
	return g
}

// newBundle is a fresh KeyPackage in suite 1.
func newBundle(b *testing.B, name string) *group.KeyPackageBundle {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	sig, err := s.GenerateSignatureKey()
	if err != nil {
		b.Fatal(err)
	}
	kp, err := group.NewKeyPackage(message.BasicCredential([]byte(name)), sig, nil)
	if err != nil {
		b.Fatal(err)
	}
	return kp
}

var benchSizes = []int{10, 100, 1000, 10000}

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
			pc, err := g.committer.Commit(group.CommitOptions{ForcePath: true})
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
		pc, err := g.committer.Commit(group.CommitOptions{ForcePath: true})
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

func BenchmarkAddMember(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		kp := newBundle(b, "joiner")
		var commitSize, welcomeSize int
		defer reportCPU(b)()
		for b.Loop() {
			pc, err := g.committer.Commit(group.CommitOptions{Proposals: []*message.Proposal{group.AddProposal(&kp.KeyPackage)}})
			if err != nil {
				b.Fatal(err)
			}
			commitSize, welcomeSize = len(pc.Commit), len(pc.Welcome)
		}
		b.ReportMetric(float64(commitSize), "commit-bytes")
		b.ReportMetric(float64(welcomeSize), "welcome-bytes")
	})
}

func BenchmarkJoin(b *testing.B) {
	forEachBenchGroup(b, func(b *testing.B, g *benchGroup) {
		kp := newBundle(b, "joiner")
		pc, err := g.committer.Commit(group.CommitOptions{Proposals: []*message.Proposal{group.AddProposal(&kp.KeyPackage)}})
		if err != nil {
			b.Fatal(err)
		}
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := group.Join(pc.Welcome, kp, nil); err != nil {
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
			if _, err := group.UnmarshalGroup(data, group.Config{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
