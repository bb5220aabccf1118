package epochs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func TestAddRejects(t *testing.T) {
	g := build(t, spec{id: "R"}, spec{id: "A", parent: "R", tag: 1}, spec{id: "B", parent: "A", tag: 1})
	if err := g.Drop(ids("A"), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		n    Node[string]
		want error
	}{
		{"empty id", Node[string]{}, ErrInvalidEpoch},
		{"id too long", Node[string]{Identity: Identity{ID: ID(strings.Repeat("x", 65))}}, ErrInvalidEpoch},
		{"duplicate", Node[string]{Identity: Identity{ID: "R"}}, ErrDuplicateEpoch},
		{"unknown parent", Node[string]{Identity: Identity{ID: "C", Number: 1}, Parent: "Q"}, ErrParentNotRetained},
		{"dropped parent", Node[string]{Identity: Identity{ID: "C", Number: 2}, Parent: "A"}, ErrParentNotRetained},
		{"number skips", Node[string]{Identity: Identity{ID: "C", Number: 4}, Parent: "B"}, ErrEpochNumber},
		{"number repeats", Node[string]{Identity: Identity{ID: "C", Number: 2}, Parent: "B"}, ErrEpochNumber},
	}
	for _, tt := range tests {
		if err := g.Add(tt.n); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if g.Len() != 3 {
		t.Errorf("rejected adds changed the graph: %d epochs", g.Len())
	}
}

func TestAncestry(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 1}, spec{id: "A1", parent: "A", tag: 1}, spec{id: "A2", parent: "A1", tag: 1},
		spec{id: "B", parent: "R", tag: 2}, spec{id: "B1", parent: "B", tag: 1},
		spec{id: "C", parent: "A", tag: 3},
	)
	above := []struct {
		x, y string
		want bool
	}{
		{"A2", "R", true}, {"A2", "A", true}, {"A2", "A2", false}, {"A", "A2", false},
		{"B1", "A", false}, {"C", "A", true}, {"C", "A1", false}, {"Q", "R", false},
	}
	for _, tt := range above {
		if got := g.Above(ID(tt.x), ID(tt.y)); got != tt.want {
			t.Errorf("Above(%s, %s) = %v", tt.x, tt.y, got)
		}
	}
	diff := []struct {
		a, b, ca, cb string
		ok           bool
	}{
		{"A2", "B1", "A", "B", true},
		{"A2", "C", "A1", "C", true},
		{"C", "A2", "C", "A1", true},
		{"A2", "A", "", "", false}, // ancestor
		{"A2", "A2", "", "", false},
		{"A2", "Q", "", "", false},
	}
	for _, tt := range diff {
		ca, cb, ok := g.FirstDifference(ID(tt.a), ID(tt.b))
		if ca != ID(tt.ca) || cb != ID(tt.cb) || ok != tt.ok {
			t.Errorf("FirstDifference(%s, %s) = %s, %s, %v", tt.a, tt.b, ca, cb, ok)
		}
	}
	// Superseded is the Added time of the first child.
	if n, _ := g.Node("A"); !n.Superseded.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("A superseded at %v", n.Superseded)
	}
	if n, _ := g.Node("A2"); !n.Superseded.IsZero() {
		t.Error("a head is superseded")
	}
}

func TestFind(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 1, creator: alice},
		spec{id: "A'", parent: "R", tag: 2, creator: alice},
		spec{id: "B", parent: "R", tag: 2, creator: bob},
	)
	if got := g.Find(ResolvesPair{Number: 1, Creator: alice}); len(got) != 2 || got[0] != "A" || got[1] != "A'" {
		t.Errorf("Find: %q", got)
	}
}

func TestStateAndSetState(t *testing.T) {
	g := build(t, spec{id: "R"}, spec{id: "A", parent: "R", tag: 1})
	if s, ok := g.State("R"); !ok || s != "state of R" {
		t.Fatalf("State(R) = %q, %v", s, ok)
	}
	if err := g.SetState("A", "advanced"); err != nil {
		t.Fatal(err)
	}
	if s, _ := g.State("A"); s != "advanced" {
		t.Fatalf("State(A) = %q", s)
	}
	if err := g.SetState("Q", "x"); !errors.Is(err, ErrParentNotRetained) {
		t.Fatal(err)
	}
}

func TestDeriveIDAndDevice(t *testing.T) {
	s, _ := suite.Lookup(1)
	secret := make([]byte, 32)
	id := DeriveID(s, secret)
	if string(id) != string(s.DeriveSecret(secret, "epoch")) {
		t.Fatal("DeriveID")
	}
	back, err := ParseID(id.String())
	if err != nil || back != id {
		t.Fatalf("ParseID: %v", err)
	}
	for _, bad := range []string{"", "!!", strings.Repeat("A", 100)} {
		if _, err := ParseID(bad); !errors.Is(err, ErrInvalidEpoch) {
			t.Errorf("ParseID(%q): %v", bad, err)
		}
	}
	d, err := ParseDevice("@alice:example.org|DEV|ICE")
	if err != nil || d != dev("@alice:example.org", "DEV|ICE") || d.Identity() != "@alice:example.org|DEV|ICE" {
		t.Fatalf("ParseDevice: %+v, %v", d, err)
	}
	for _, bad := range []string{"", "nobar", "|dev", "@u:x|"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) accepted", bad)
		}
	}
}

func TestResolvesPairJSON(t *testing.T) {
	p := ResolvesPair{Number: 7, Creator: alice}
	b, err := p.MarshalJSON()
	if err != nil || string(b) != `[7,["@alice:x","A1"]]` {
		t.Fatalf("%s, %v", b, err)
	}
	for _, in := range []string{`[7,["@alice:x","A1"]]`, `["7",["@alice:x","A1"]]`} {
		var q ResolvesPair
		if err := q.UnmarshalJSON([]byte(in)); err != nil || q != p {
			t.Errorf("%s: %+v, %v", in, q, err)
		}
	}
	for _, in := range []string{`[]`, `[7]`, `[7,["a"]]`, `[-1,["a","b"]]`, `["x",["a","b"]]`, `{}`, `[7,["","b"]]`, `[7,["a","b"],1]`} {
		var q ResolvesPair
		if err := q.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// forkSeenByOthers is what the older members saw: R, then the fork A
// (tag 5) / B (tag 3), then A1 and B1 each adding a newcomer; nodeOf
// returns their node of an epoch.
func forkSeenByOthers(t *testing.T) (others *Graph[string], nodeOf func(string) Node[string]) {
	others = build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 5}, spec{id: "A1", parent: "A", tag: 1},
		spec{id: "B", parent: "R", tag: 3}, spec{id: "B1", parent: "B", tag: 99},
	)
	return others, func(id string) Node[string] { n, _ := others.Node(ID(id)); return n }
}

func TestJoinAndLearn(t *testing.T) {
	others, nodeOf := forkSeenByOthers(t)

	// Welcomed by both, with no history, the newcomer compares A1 and B1
	// themselves and would choose B1: not what the others choose.
	blind := New[string]()
	for _, id := range []string{"B1", "A1"} {
		if err := blind.Join(nodeOf(id)); err != nil {
			t.Fatal(err)
		}
	}
	if base, _ := blind.Base(); base != "B1" {
		t.Fatalf("blind base %v", base)
	}

	// With the history learned from commit_event links, it agrees.
	g := New[string]()
	for _, id := range []string{"B1", "A1"} {
		if err := g.Join(nodeOf(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"A", "B", "R"} { // any order
		if err := g.Learn(nodeOf(id)); err != nil {
			t.Fatalf("learn %s: %v", id, err)
		}
	}
	want, _ := others.Base()
	if base, _ := g.Base(); base != want || want != "A1" {
		t.Fatalf("base %v, others chose %v", base, want)
	}
	if _, ok := g.State("A"); ok {
		t.Fatal("a learned epoch has a state")
	}
	// Learning is checked like adding.
	bad := nodeOf("R")
	bad.ID, bad.Number = "R2", 7
	bad.Parent = ""
	if err := g.Learn(bad); err != nil {
		t.Fatal(err)
	}
	wrong := nodeOf("A1")
	wrong.ID, wrong.Parent, wrong.Number = "X", "R2", 3
	if err := g.Join(wrong); !errors.Is(err, ErrEpochNumber) {
		t.Fatalf("child number not checked: %v", err)
	}
	orphan := nodeOf("A1")
	orphan.ID, orphan.Parent, orphan.Number = "Y", "Q", 2
	if err := g.Join(orphan); err != nil {
		t.Fatal(err)
	}
	parent := nodeOf("R")
	parent.ID, parent.Number = "Q", 5
	if err := g.Learn(parent); !errors.Is(err, ErrEpochNumber) {
		t.Fatalf("learned parent with the wrong number for its child: %v", err)
	}
}

func TestResolvingRun(t *testing.T) {
	// Two changes fork R; A1 resolves B; A1 and C race and fork again; D
	// resolves C on A1; then an ordinary commit E.
	specs := []spec{
		{id: "R"},
		{id: "A", parent: "R", tag: 2}, {id: "B", parent: "R", tag: 1},
		{id: "A1", parent: "A", tag: 2, resolves: []string{"B"}},
		{id: "C", parent: "A", tag: 1, resolves: []string{"B"}},
		{id: "D", parent: "A1", tag: 1, resolves: []string{"C"}},
		{id: "E", parent: "D", tag: 1},
	}
	tests := []struct {
		upTo int // specs[:upTo]
		want int
	}{
		{1, 0}, // R alone
		{3, 0}, // forked: the base A is an ordinary commit
		{4, 1}, // A1 resolved
		{5, 1}, // forked again: the base is A1
		{6, 2}, // D on A1
		{7, 0}, // an ordinary commit ends the run
	}
	for _, tt := range tests {
		if got := build(t, specs[:tt.upTo]...).ResolvingRun(); got != tt.want {
			base, _ := build(t, specs[:tt.upTo]...).Base()
			t.Errorf("after %s (base %s): run %d, want %d", specs[tt.upTo-1].id, base, got, tt.want)
		}
	}
}
