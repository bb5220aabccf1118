package epochs

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBaseSelection(t *testing.T) {
	tests := []struct {
		name  string
		specs []spec
		heads []string // best first
	}{
		{"single chain", []spec{{id: "R"}, {id: "A", parent: "R", tag: 1}}, []string{"A"}},
		{"two-way fork, higher tag wins", []spec{
			{id: "R"}, {id: "A", parent: "R", tag: 1}, {id: "B", parent: "R", tag: 2},
		}, []string{"B", "A"}},
		{"higher number beats higher tag", []spec{
			{id: "R"}, {id: "A", parent: "R", tag: 1}, {id: "A2", parent: "A", tag: 0}, {id: "B", parent: "R", tag: 9},
		}, []string{"A2", "B"}},
		{"equal tags fall back to dmls_epoch", []spec{
			{id: "R"}, {id: "X", parent: "R", tag: 5}, {id: "Y", parent: "R", tag: 5},
		}, []string{"Y", "X"}},
		{"three-way fork", []spec{
			{id: "R"}, {id: "A", parent: "R", tag: 7}, {id: "B", parent: "R", tag: 3}, {id: "C", parent: "R", tag: 9},
		}, []string{"C", "A", "B"}},
		{"decided at the first differing commit, not the heads", []spec{
			{id: "R"},
			{id: "A", parent: "R", tag: 5}, {id: "A1", parent: "A", tag: 1},
			{id: "B", parent: "R", tag: 3}, {id: "B1", parent: "B", tag: 99},
		}, []string{"A1", "B1"}},
		{"nested forks", []spec{
			{id: "R"},
			{id: "A", parent: "R", tag: 5},
			{id: "A1", parent: "A", tag: 1}, {id: "A2", parent: "A", tag: 9},
			{id: "B", parent: "R", tag: 3}, {id: "B1", parent: "B", tag: 99},
			{id: "A21", parent: "A2", tag: 1}, {id: "A22", parent: "A2", tag: 2},
			{id: "A11", parent: "A1", tag: 200},
			{id: "B11", parent: "B1", tag: 255},
		}, []string{"A22", "A21", "A11", "B11"}},
		{"nested fork, longer losing branch wins by number", []spec{
			{id: "R"},
			{id: "A", parent: "R", tag: 9}, {id: "A1", parent: "A", tag: 9},
			{id: "B", parent: "R", tag: 1}, {id: "B1", parent: "B", tag: 1}, {id: "B2", parent: "B1", tag: 1},
		}, []string{"B2", "A1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The answer must not depend on the order in which a member
			// learned the epochs (parents always come first).
			r := rand.New(rand.NewPCG(1, 1))
			for round := range 20 {
				specs := slices.Clone(tt.specs)
				if round > 0 {
					specs = shuffleTopological(r, specs)
				}
				g := build(t, specs...)
				if got := g.Heads(); !slices.Equal(got, ids(tt.heads...)) {
					t.Fatalf("round %d: heads %q, want %q", round, got, tt.heads)
				}
				base, err := g.Base()
				if err != nil || base != ID(tt.heads[0]) {
					t.Fatalf("base %q, %v", base, err)
				}
				if g.Forked() != (len(tt.heads) > 1) {
					t.Fatal("Forked disagrees with Heads")
				}
			}
		})
	}
}

// shuffleTopological returns specs in a random order in which every parent
// still precedes its children.
func shuffleTopological(r *rand.Rand, specs []spec) []spec {
	var out []spec
	done := map[string]bool{"": true}
	rest := slices.Clone(specs)
	for len(rest) > 0 {
		var ready []int
		for i, s := range rest {
			if done[s.parent] {
				ready = append(ready, i)
			}
		}
		i := ready[r.IntN(len(ready))]
		out = append(out, rest[i])
		done[rest[i].id] = true
		rest = slices.Delete(rest, i, i+1)
	}
	return out
}

func TestCompareIsATotalOrder(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 5}, spec{id: "B", parent: "R", tag: 5}, spec{id: "C", parent: "R", tag: 1},
		spec{id: "A1", parent: "A", tag: 2}, spec{id: "A2", parent: "A", tag: 2}, spec{id: "B1", parent: "B", tag: 7},
		spec{id: "C1", parent: "C", tag: 9},
	)
	// A second root: history that never meets the first.
	if err := g.Add(Node[string]{Identity: Identity{ID: "Z", Number: 1}, ConfirmationTag: []byte{3}}); err != nil {
		t.Fatal(err)
	}
	all := ids("R", "A", "B", "C", "A1", "A2", "B1", "C1", "Z")
	for _, a := range all {
		for _, b := range all {
			ab, ba := g.Compare(a, b), g.Compare(b, a)
			if ab != -ba || (ab == 0) != (a == b) {
				t.Fatalf("Compare(%s, %s) = %d, reverse %d", a, b, ab, ba)
			}
			for _, c := range all {
				if ab > 0 && g.Compare(b, c) > 0 && g.Compare(a, c) <= 0 {
					t.Fatalf("not transitive: %s > %s > %s", a, b, c)
				}
			}
		}
	}
}

func TestResolvingCommitRetiresHeads(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 1, creator: alice},
		spec{id: "B", parent: "R", tag: 2, creator: bob},
		spec{id: "C", parent: "R", tag: 3, creator: carol},
	)
	res, err := g.Resolution()
	if err != nil {
		t.Fatal(err)
	}
	if res.Base != "C" || !slices.Equal(res.Resolves, ids("B", "A")) {
		t.Fatalf("resolution %+v", res)
	}
	wantPairs := []ResolvesPair{{Number: 1, Creator: bob}, {Number: 1, Creator: alice}}
	if !slices.Equal(res.ResolvesPairs, wantPairs) {
		t.Fatalf("pairs %+v", res.ResolvesPairs)
	}
	if got, err := g.ResolvedIDs(res.ResolvesPairs); err != nil || !slices.Equal(got, res.Resolves) {
		t.Fatalf("ResolvedIDs: %q, %v", got, err)
	}
	if err := g.Add(node(g, spec{id: "D", parent: "C", tag: 0, creator: alice, resolves: []string{"B", "A"}}, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if heads := g.Heads(); !slices.Equal(heads, ids("D")) {
		t.Fatalf("heads after resolution: %q", heads)
	}
	if by, ok := g.Retired("A"); !ok || by != "D" {
		t.Fatalf("Retired(A) = %q, %v", by, ok)
	}
	if n, _ := g.Node("A"); !n.Superseded.Equal(t0.Add(time.Minute)) {
		t.Fatalf("resolved head superseded at %v", n.Superseded)
	}
	// A retired head stays retained for late messages.
	if _, ok := g.State("A"); !ok {
		t.Fatal("retired head lost its state")
	}
}

func TestResolutionBeforeTheBranchItResolves(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 9},
		spec{id: "D", parent: "A", tag: 1, resolves: []string{"B"}},
	)
	// B arrives late, after the commit that resolved it.
	if err := g.Add(node(g, spec{id: "B", parent: "R", tag: 1}, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if heads := g.Heads(); !slices.Equal(heads, ids("D")) {
		t.Fatalf("late resolved branch reopened the fork: %q", heads)
	}
	if n, _ := g.Node("B"); n.Superseded.IsZero() {
		t.Fatal("late resolved branch not superseded")
	}
	// Someone who did not see the resolution commits on B: a new fork.
	if err := g.Add(node(g, spec{id: "B1", parent: "B", tag: 1}, t0.Add(2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if heads := g.Heads(); !slices.Equal(heads, ids("D", "B1")) {
		t.Fatalf("heads %q", heads)
	}
}

func TestHostileResolutionsLeaveHeads(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 1, resolves: []string{"B"}},
		spec{id: "B", parent: "R", tag: 2, resolves: []string{"A"}},
	)
	if heads := g.Heads(); !slices.Equal(heads, ids("B", "A")) {
		t.Fatalf("heads %q", heads)
	}
}

func TestResolvedIDsAmbiguous(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 1, creator: alice},
		spec{id: "A'", parent: "R", tag: 2, creator: alice},
	)
	got, err := g.ResolvedIDs([]ResolvesPair{{Number: 1, Creator: alice}, {Number: 7, Creator: bob}})
	if !errors.Is(err, ErrUnknownEpoch) || len(got) != 0 {
		t.Fatalf("ambiguous pair: %q, %v", got, err)
	}
}

func TestNoHeads(t *testing.T) {
	g := New[string]()
	if _, err := g.Base(); !errors.Is(err, ErrNoHeads) {
		t.Fatal(err)
	}
	if _, err := g.NextCommit(Room{}); !errors.Is(err, ErrNoHeads) {
		t.Fatal(err)
	}
}
