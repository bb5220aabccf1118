package epochs

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// chain builds R <- E1 <- ... <- En, each created by the given creators in
// turn, one second apart.
func chainOf(t *testing.T, creators ...Device) *Graph[string] {
	specs := []spec{{id: "E0"}}
	for i, c := range creators {
		specs = append(specs, spec{id: "E" + string(rune('1'+i)), parent: "E" + string(rune('0'+i)), tag: 1, creator: c})
	}
	return build(t, specs...)
}

// spokeAbove builds E0 <- E1 <- E2, both made by alice, where bob spoke
// in E1 and carol in E2 (so E0 has settled), the messages stamped at (not
// stamped if at is zero).
func spokeAbove(at time.Time) func(t *testing.T) *Graph[string] {
	return func(t *testing.T) *Graph[string] {
		g := chainOf(t, alice, alice)
		g.RecordMessage("E1", bob)
		g.RecordMessage("E2", carol)
		if !at.IsZero() {
			g.stampSpoken(at)
		}
		return g
	}
}

func TestExpired(t *testing.T) {
	far := t0.Add(24 * time.Hour)
	tests := []struct {
		name   string
		g      func(t *testing.T) *Graph[string]
		policy Policy
		now    time.Time
		want   []string
	}{
		{"nothing to drop", func(t *testing.T) *Graph[string] { return chainOf(t, alice) }, Policy{}, t0, nil},
		{"settled: every member committed above", func(t *testing.T) *Graph[string] {
			return chainOf(t, alice, bob, carol, alice)
		}, Policy{}, t0, []string{"E0", "E1"}},
		{"settled: messages above count as commits", func(t *testing.T) *Graph[string] {
			g := chainOf(t, alice, alice)
			g.RecordMessage("E1", bob)
			g.RecordMessage("E2", carol)
			return g
		}, Policy{}, t0, []string{"E0"}},
		{"settled: a message in the epoch itself does not count", func(t *testing.T) *Graph[string] {
			g := chainOf(t, alice, alice)
			g.RecordMessage("E1", bob)
			g.RecordMessage("E0", carol)
			return g
		}, Policy{}, t0, nil},
		{"linger: settled waits for the newest epoch above", func(t *testing.T) *Graph[string] {
			return chainOf(t, alice, bob, carol, alice) // E4 added at t0+4s
		}, Policy{Linger: 10 * time.Second}, t0.Add(13 * time.Second), nil},
		{"linger: settled goes once the newest epoch above is that old", func(t *testing.T) *Graph[string] {
			return chainOf(t, alice, bob, carol, alice)
		}, Policy{Linger: 10 * time.Second}, t0.Add(14 * time.Second), []string{"E0", "E1"}},
		{"linger: a first message above is a move", spokeAbove(t0.Add(time.Minute)),
			Policy{Linger: 10 * time.Second}, t0.Add(time.Minute + 9*time.Second), nil},
		{"linger: after the first message above", spokeAbove(t0.Add(time.Minute)),
			Policy{Linger: 10 * time.Second}, t0.Add(time.Minute + 10*time.Second), []string{"E0"}},
		{"linger: a message not stamped yet is a move now", spokeAbove(time.Time{}), Policy{Linger: time.Second}, far, nil},
		{"linger does not hold back age", func(t *testing.T) *Graph[string] {
			g := chainOf(t, alice, alice)
			g.RecordMessage("E2", carol)
			return g
		}, Policy{MaxAge: time.Hour, Linger: 2 * time.Hour}, far, []string{"E0", "E1"}},
		{"count keeps the newest", func(t *testing.T) *Graph[string] {
			return chainOf(t, alice, alice, alice, alice)
		}, Policy{MaxEpochs: 2}, t0, []string{"E0", "E1", "E2"}},
		{"count never drops heads", func(t *testing.T) *Graph[string] {
			return build(t, spec{id: "R"}, spec{id: "A", parent: "R", tag: 1}, spec{id: "B", parent: "R", tag: 2}, spec{id: "C", parent: "R", tag: 3})
		}, Policy{MaxEpochs: 1}, t0, []string{"R"}},
		{"age counts from supersession", func(t *testing.T) *Graph[string] {
			return chainOf(t, alice, alice, alice) // E0 superseded at t0+1s, E1 at +2s, E2 at +3s
		}, Policy{MaxAge: 2 * time.Second}, t0.Add(4 * time.Second), []string{"E0", "E1"}},
		{"age never drops heads", func(t *testing.T) *Graph[string] { return chainOf(t, alice) }, Policy{MaxAge: time.Second}, far, []string{"E0"}},
		{"fork: retired head goes with age", func(t *testing.T) *Graph[string] {
			return build(t, spec{id: "R"}, spec{id: "A", parent: "R", tag: 1}, spec{id: "B", parent: "R", tag: 2},
				spec{id: "C", parent: "B", tag: 1, resolves: []string{"A"}})
		}, Policy{MaxAge: time.Hour}, far, []string{"A", "B", "R"}},
		{"removed members do not hold an epoch", func(t *testing.T) *Graph[string] {
			g := build(t, spec{id: "R"})
			n := node(g, spec{id: "A", parent: "R", tag: 1, creator: alice}, t0.Add(time.Second))
			n.Members = []Device{alice, bob} // carol removed
			if err := g.Add(n); err != nil {
				t.Fatal(err)
			}
			n = node(g, spec{id: "B", parent: "A", tag: 1, creator: bob}, t0.Add(2*time.Second))
			n.Members = []Device{alice, bob}
			if err := g.Add(n); err != nil {
				t.Fatal(err)
			}
			return g
			// alice made A, so she has not committed above it: A stays.
		}, Policy{}, t0, []string{"R"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.g(t)
			got := g.Expired(tt.policy, tt.now)
			if !slices.Equal(got, ids(tt.want...)) {
				t.Fatalf("expired %q, want %q", got, tt.want)
			}
		})
	}
}

// expired also says when retention has work next, if nothing happens:
// the earliest end of a settled epoch's linger or of an epoch's age.
func TestExpiredNext(t *testing.T) {
	tests := []struct {
		name   string
		g      func(t *testing.T) *Graph[string]
		policy Policy
		now    time.Time
		want   time.Time
	}{
		{"nothing to wait for", func(t *testing.T) *Graph[string] { return chainOf(t, alice, alice) }, Policy{}, t0, time.Time{}},
		{"age: the oldest superseded", func(t *testing.T) *Graph[string] { return chainOf(t, alice, alice) }, // E0 superseded at t0+1s
			Policy{MaxAge: time.Hour}, t0.Add(2 * time.Second), t0.Add(time.Hour + time.Second)},
		{"linger: from the first message above", spokeAbove(t0.Add(time.Minute)), Policy{Linger: 10 * time.Second},
			t0.Add(time.Minute), t0.Add(time.Minute + 10*time.Second)},
		{"linger before age", spokeAbove(t0.Add(time.Minute)), Policy{Linger: 10 * time.Second, MaxAge: time.Hour},
			t0.Add(time.Minute), t0.Add(time.Minute + 10*time.Second)},
		{"dropped now: nothing next", spokeAbove(t0.Add(time.Minute)), Policy{Linger: 10 * time.Second},
			t0.Add(time.Hour), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, next := tt.g(t).expired(tt.policy, tt.now, ownView[string]{}); !next.Equal(tt.want) {
				t.Fatalf("next %v, want %v", next, tt.want)
			}
		})
	}
}

func TestSettledWaitsForEveryMember(t *testing.T) {
	g := chainOf(t, alice, bob) // carol has not committed above E0
	if got := g.Expired(Policy{}, t0); len(got) != 0 {
		t.Fatalf("expired %q", got)
	}
	// A commit by carol on another branch above E0 counts too.
	if err := g.Add(node(g, spec{id: "X", parent: "E1", tag: 9, creator: carol}, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if got := g.Expired(Policy{}, t0); !slices.Equal(got, ids("E0")) {
		t.Fatalf("expired %q", got)
	}
}

func TestRecordMessage(t *testing.T) {
	g := chainOf(t, alice)
	if err := g.Drop(ids("E0"), nil); err != nil {
		t.Fatal(err)
	}
	outsider := dev("@dave:x", "D1")
	tests := []struct {
		name   string
		epoch  ID
		sender Device
		want   bool
	}{
		{"member", "E1", bob, true},
		{"again", "E1", bob, false},
		{"another member", "E1", alice, true},
		{"not a member", "E1", outsider, false},
		{"epoch dropped", "E0", carol, false},
		{"epoch unknown", "X", carol, false},
	}
	for _, tt := range tests {
		if got := g.RecordMessage(tt.epoch, tt.sender); got != tt.want {
			t.Errorf("%s: RecordMessage(%v, %v) = %v, want %v", tt.name, tt.epoch, tt.sender, got, tt.want)
		}
	}
	if n, _ := g.Node("E1"); !slices.Equal(n.Spoke, []Device{alice, bob}) {
		t.Fatalf("spoke %v, want alice and bob in order", n.Spoke)
	}
}

func TestDrop(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 5}, spec{id: "A1", parent: "A", tag: 1},
		spec{id: "B", parent: "R", tag: 3}, spec{id: "B1", parent: "B", tag: 99},
	)
	var destroyed []string
	destroy := func(s string) { destroyed = append(destroyed, s) }
	if err := g.Drop(ids("A1"), destroy); !errors.Is(err, ErrDropHead) {
		t.Fatalf("drop head: %v", err)
	}
	if err := g.Drop(ids("Q"), destroy); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("drop unknown: %v", err)
	}
	if len(destroyed) != 0 {
		t.Fatal("refused drop destroyed states")
	}
	if err := g.Drop(ids("R", "A", "B"), destroy); err != nil {
		t.Fatal(err)
	}
	slices.Sort(destroyed)
	if !slices.Equal(destroyed, []string{"state of A", "state of B", "state of R"}) {
		t.Fatalf("destroyed %q", destroyed)
	}
	if _, ok := g.State("A"); ok {
		t.Fatal("dropped epoch still has state")
	}
	// The fork point R and the first differing commits A and B stay as
	// metadata, so the base is still decided by A's tag over B's.
	if heads := g.Heads(); !slices.Equal(heads, ids("A1", "B1")) {
		t.Fatalf("heads after drop %q", heads)
	}
	if g.Len() != 5 {
		t.Fatalf("%d epochs known", g.Len())
	}
	// Dropping again is a no-op.
	if err := g.Drop(ids("A"), destroy); err != nil || len(destroyed) != 3 {
		t.Fatalf("second drop: %v, %d destroyed", err, len(destroyed))
	}
	// Once the fork is resolved and the losing branch dropped, the
	// metadata below the new common ancestor is forgotten.
	if err := g.Add(node(g, spec{id: "A2", parent: "A1", tag: 1, resolves: []string{"B1"}}, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := g.Drop(ids("B1", "A1"), destroy); err != nil {
		t.Fatal(err)
	}
	if g.Len() != 1 {
		t.Fatalf("%d epochs known after resolution, want only A2", g.Len())
	}
	if heads := g.Heads(); !slices.Equal(heads, ids("A2")) {
		t.Fatalf("heads %q", heads)
	}
}

func TestRetentionBoundsALongChain(t *testing.T) {
	g := build(t, spec{id: "R"})
	prev := ID("R")
	for i := range 200 {
		id := ID([]byte{byte(i), byte(i >> 8), 1})
		n := node(g, spec{id: string(id), parent: string(prev), tag: byte(i), creator: alice}, t0.Add(time.Duration(i)*time.Second))
		n.Members = []Device{alice, bob}
		if err := g.Add(n); err != nil {
			t.Fatal(err)
		}
		if err := g.Drop(g.Expired(Policy{MaxEpochs: 5, MaxAge: time.Hour}, n.Added), nil); err != nil {
			t.Fatal(err)
		}
		prev = id
	}
	if g.Len() > 5 {
		t.Fatalf("%d epochs known after 200 commits with MaxEpochs 5", g.Len())
	}
}

// A dropped epoch whose commit resolved an epoch that is still retained
// keeps its metadata: forgetting it would make that epoch a head again.
func TestPruneKeepsResolutionsOfRetainedEpochs(t *testing.T) {
	g := build(t,
		spec{id: "R"},
		spec{id: "A", parent: "R", tag: 5}, spec{id: "B", parent: "R", tag: 3},
		spec{id: "C", parent: "A", tag: 1, resolves: []string{"B"}},
		spec{id: "D", parent: "C", tag: 1},
	)
	// Keep B (retired by C) while the chain below D is dropped.
	if err := g.Drop(ids("R", "A", "C"), nil); err != nil {
		t.Fatal(err)
	}
	if heads := g.Heads(); !slices.Equal(heads, ids("D")) {
		t.Fatalf("heads %q: B came back", heads)
	}
	if _, ok := g.Node("C"); !ok {
		t.Fatal("the resolution of a retained epoch was forgotten")
	}
	// Once B goes, so does C's metadata.
	if err := g.Drop(ids("B"), nil); err != nil {
		t.Fatal(err)
	}
	if g.Len() != 1 {
		t.Fatalf("%d epochs known, want only D", g.Len())
	}
}

// MissingHistory names the parents to fetch while the histories of the
// retained epochs do not meet, and nothing once they do.
func TestMissingHistory(t *testing.T) {
	others, nodeOf := forkSeenByOthers(t)
	g := New[string]()
	if err := g.Join(nodeOf("A1")); err != nil {
		t.Fatal(err)
	}
	if m := g.MissingHistory(); m != nil {
		t.Fatalf("one branch: %q", m)
	}
	if err := g.Join(nodeOf("B1")); err != nil {
		t.Fatal(err)
	}
	if m := g.MissingHistory(); !slices.Equal(m, ids("A", "B")) {
		t.Fatalf("two branches: %q", m)
	}
	for _, id := range []string{"A", "B"} {
		if err := g.Learn(nodeOf(id)); err != nil {
			t.Fatal(err)
		}
	}
	if m := g.MissingHistory(); m != nil {
		t.Fatalf("siblings of a missing parent meet there: %q", m)
	}
	base, _ := g.Base()
	want, _ := others.Base()
	if base != want {
		t.Fatalf("base %v, others chose %v", base, want)
	}
	// A learned epoch gets a state when a member joins it later.
	if err := g.Hold("A", []Device{alice}, "state of A", t0); err != nil {
		t.Fatal(err)
	}
	if s, ok := g.State("A"); !ok || s != "state of A" {
		t.Fatal("held epoch has no state")
	}
	if n, _ := g.Node("A"); n.Added != t0 || n.Superseded != t0 || !slices.Equal(n.Members, []Device{alice}) {
		t.Fatalf("held epoch %+v", n)
	}
	if err := g.Hold("A", nil, "", t0); !errors.Is(err, ErrDuplicateEpoch) {
		t.Fatalf("hold a retained epoch: %v", err)
	}
	if err := g.Hold("Z", nil, "", t0); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("hold an unknown epoch: %v", err)
	}
}

// A foothold (the newest epoch one of our devices holds) is never dropped
// by the count bound; age still drops it.
func TestExpiredKeepsFootholds(t *testing.T) {
	g := chainOf(t, alice, alice, alice, alice) // E0 <- E1 <- E2 <- E3 <- E4
	keep := map[ID]bool{ids("E1")[0]: true}
	expired := func(p Policy, now time.Time) []ID {
		drop, _ := g.expired(p, now, ownView[string]{footholds: keep})
		return drop
	}
	if got, want := expired(Policy{MaxEpochs: 2}, t0), ids("E0", "E2", "E3"); !slices.Equal(got, want) {
		t.Fatalf("count: expired %q, want %q", got, want)
	}
	if got, want := expired(Policy{MaxEpochs: 2, MaxAge: time.Second}, t0.Add(time.Hour)), ids("E0", "E1", "E2", "E3"); !slices.Equal(got, want) {
		t.Fatalf("age: expired %q, want %q", got, want)
	}
}

// BenchmarkExpiredLargeGroup measures the settled rule at every save of
// a 10,000-member room holding 8 epochs where every member but one has
// sent a message in the newest: the worst case, each member searched
// for before the last one is found not to have moved on.
func BenchmarkExpiredLargeGroup(b *testing.B) {
	members := make([]Device, 10000)
	for i := range members {
		members[i] = dev(fmt.Sprintf("@user%05d:example.org", i), "DEVICE")
	}
	g := New[string]()
	prev := ID("")
	for i := range 8 {
		id := ID(fmt.Sprintf("E%d", i))
		n := Node[string]{Identity: Identity{ID: id, Number: uint64(i), Creator: members[0]}, Parent: prev,
			ConfirmationTag: []byte{1}, Members: members, Added: t0.Add(time.Duration(i) * time.Second)}
		if err := g.Add(n); err != nil {
			b.Fatal(err)
		}
		prev = id
	}
	for _, m := range members[:len(members)-1] {
		g.RecordMessage(prev, m)
	}
	b.ResetTimer()
	for b.Loop() {
		if got := g.Expired(Policy{MaxEpochs: 64}, t0); len(got) != 0 {
			b.Fatalf("expired %v", got)
		}
	}
}

// BenchmarkRetainOwnDevices measures Member.Retain, run at every save of
// a room, in a group of 10,000 devices that are all ours, holding 8
// epochs our commits made (confirmed) and lingering before they go:
// each older epoch is settled because our devices hold the newer ones.
func BenchmarkRetainOwnDevices(b *testing.B) {
	m := ownDevicesMember(b)
	for b.Loop() {
		if got, err := m.Retain(t0.Add(time.Minute)); err != nil || len(got) != 0 {
			b.Fatalf("dropped %v (%v)", got, err)
		}
	}
}

// BenchmarkLoadMemberOwnDevices decodes the metadata of the Member of
// BenchmarkRetainOwnDevices (8 epochs, each held by 10,000 devices of
// ours): what every load of such a room costs before anything else.
func BenchmarkLoadMemberOwnDevices(b *testing.B) {
	meta, err := ownDevicesMember(b).marshalMetadata()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(meta)))
	for b.Loop() {
		if _, err := LoadMember(meta, dmlsConfig, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// ownDevicesMember is a Member of a group of 10,000 devices, all ours
// (100 users of 100 devices), holding 8 epochs that our confirmed
// commits made, all held by every device.
func ownDevicesMember(b *testing.B) *Member {
	ours := make([]Device, 10000)
	for i := range ours {
		ours[i] = dev(fmt.Sprintf("@puppet%03d:example.org", i/100), fmt.Sprintf("DEVICE%02d", i%100))
	}
	ours = sortedDevices(ours)
	m := &Member{graph: New[*EpochState](), Policy: Policy{MaxEpochs: 64, Linger: time.Hour},
		seen: map[[32]byte]ID{}, known: map[ID]knownCommit{}}
	prev := ID("")
	for i := range 8 {
		id := ID(fmt.Sprintf("E%d", i))
		n := Node[*EpochState]{Identity: Identity{ID: id, Number: uint64(i), Creator: ours[0]}, Parent: prev,
			ConfirmationTag: []byte{1}, Members: ours, Added: t0.Add(time.Duration(i) * time.Second), Echoed: true,
			State: &EpochState{holders: ours}}
		if err := m.graph.Add(n); err != nil {
			b.Fatal(err)
		}
		prev = id
	}
	return m
}
