package epochs

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The simulation runs the rules of this package for a room whose members
// join and leave while commits race. MLS itself is replaced by a toy: an
// epoch's identity and confirmation tag are hashes of its commit, and its
// state is the list of devices. What it checks is the protocol: once
// membership stops changing and every event is delivered, every device of
// every joined user holds one head, the same one, whose devices are
// exactly the joined users' devices, and no honest commit was rejected.

type simEvent struct {
	node     Node[int]
	added    []Device
	removed  []Device
	step     int // when it was sent: the room state at the commit
	baseStep int // when its base was made: the room state at the base
}

type simDevice struct {
	dev     Device
	graph   *Graph[int]
	inbox   []simDelivery
	timerAt int // step at which a delayed commit fires; -1: none
	jitter  *rand.Rand
}

type simDelivery struct {
	at int
	ev *simEvent
}

type simulation struct {
	t         *testing.T
	r         *rand.Rand
	step      int
	rooms     []Room // room state after each step
	room      Room
	devices   map[Device]*simDevice
	events    map[ID]*simEvent
	rejected  int
	commits   int
	resolving int // commits that named other heads
	timing    simTiming
}

// simTiming is how long, in steps, events take and devices wait.
type simTiming struct {
	maxDelay int // steps an event may take to reach a device
	grace    int
	jitter   int
}

// simDeployed is the timing a deployment should choose: a grace longer
// than the delivery delay.
var simDeployed = simTiming{maxDelay: 6, grace: 8, jitter: 4}

func simTime(step int) time.Time { return t0.Add(time.Duration(step) * time.Second) }

func newSimulation(t *testing.T, seed uint64, users int) *simulation {
	return newTimedSimulation(t, seed, users, simDeployed)
}

func newTimedSimulation(t *testing.T, seed uint64, users int, timing simTiming) *simulation {
	s := &simulation{
		t: t, r: rand.New(rand.NewPCG(seed, 99)), timing: timing,
		room:    Room{Members: map[string]MemberState{}, Devices: map[string][]string{}},
		devices: map[Device]*simDevice{}, events: map[ID]*simEvent{},
	}
	for i := range users {
		user := fmt.Sprintf("@u%d:x", i)
		// Every third user has two devices.
		devs := []string{"D1"}
		if i%3 == 2 {
			devs = append(devs, "D2")
		}
		s.room.Devices[user] = devs
		for _, d := range devs {
			dv := Device{user, d}
			s.devices[dv] = &simDevice{dev: dv, timerAt: -1, jitter: rand.New(rand.NewPCG(seed, uint64(i*7+len(d))))}
		}
	}
	// u0 creates the room and the group's first epoch.
	s.room.Members["@u0:x"] = Join
	creator := s.devices[Device{"@u0:x", "D1"}]
	creator.graph = New[int]()
	first := Node[int]{
		Identity: Identity{ID: "genesis", Creator: creator.dev, CommitEvent: "$create"},
		Members:  []Device{creator.dev}, Added: simTime(0),
	}
	if err := creator.graph.Add(first); err != nil {
		t.Fatal(err)
	}
	s.events["genesis"] = &simEvent{node: first}
	s.rooms = append(s.rooms, s.snapshot())
	return s
}

func (s *simulation) snapshot() Room {
	m := map[string]MemberState{}
	for k, v := range s.room.Members {
		m[k] = v
	}
	return Room{Members: m, Devices: s.room.Devices}
}

func (s *simulation) joinedDevices() []Device {
	var out []Device
	for user, st := range s.room.Members {
		if st == Join {
			for _, d := range s.room.Devices[user] {
				out = append(out, Device{user, d})
			}
		}
	}
	slices.SortFunc(out, Device.Compare)
	return out
}

// changeMembership toggles a random user other than the creator.
func (s *simulation) changeMembership(users int) {
	user := fmt.Sprintf("@u%d:x", 1+s.r.IntN(users-1))
	if s.room.Members[user] == Join {
		s.room.Members[user] = Leave
	} else {
		s.room.Members[user] = Join
	}
}

func (s *simulation) commit(d *simDevice) {
	plan, err := d.graph.NextCommit(s.room)
	if err != nil {
		s.t.Fatal(err)
	}
	base, _ := d.graph.Node(plan.Base)
	members := slices.DeleteFunc(slices.Clone(base.Members), func(x Device) bool { return slices.Contains(plan.Remove, x) })
	members = append(members, plan.Add...)
	s.commits++
	if len(plan.Resolves) > 0 {
		s.resolving++
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s|%v|%d|%d", plan.Base, d.dev, s.step, s.commits))
	id := ID(h[:])
	tag := sha256.Sum256(append([]byte("tag"), h[:]...))
	ev := &simEvent{
		node: Node[int]{
			Identity:        Identity{ID: id, Number: base.Number + 1, Creator: d.dev, CommitEvent: "$" + id.String()},
			Parent:          plan.Base,
			ConfirmationTag: tag[:],
			Members:         members,
			Resolves:        plan.Resolves,
			State:           s.step,
		},
		added: plan.Add, removed: plan.Remove, step: s.step, baseStep: s.events[plan.Base].step,
	}
	s.events[id] = ev
	s.receive(d, ev) // the committer applies its own commit at once
	// In device order: the delays are drawn from the seeded source, so
	// map order would make a seed replay differently.
	for _, dv := range slices.SortedFunc(maps.Keys(s.devices), Device.Compare) {
		if other := s.devices[dv]; other != d {
			other.inbox = append(other.inbox, simDelivery{at: s.step + 1 + s.r.IntN(s.timing.maxDelay), ev: ev})
		}
	}
}

// receive applies ev if it can; false means "not yet" (its base is still
// missing), and the event stays queued.
func (s *simulation) receive(d *simDevice, ev *simEvent) bool {
	n := ev.node
	n.Added = simTime(s.step)
	if d.graph != nil {
		if _, known := d.graph.Node(n.ID); known {
			return true
		}
	}
	welcomed := slices.Contains(ev.added, d.dev)
	canApply := d.graph != nil && func() bool { _, ok := d.graph.State(n.Parent); return ok }()
	if !canApply && !welcomed {
		// The commit waits for its base: a member for the commit that
		// makes it, a device outside the group for its Welcome, which
		// may arrive after the commits made on the epoch it joins (the
		// service holds such a commit 8 × groups.wait, DESIGN §5).
		return false
	}
	err := CheckCommit(CommitEffect{Added: ev.added, Removed: ev.removed, After: n.Members, Resolving: len(n.Resolves) > 0},
		s.rooms[ev.step], s.rooms[ev.baseStep])
	if err != nil {
		s.rejected++
		s.t.Errorf("step %d: %v rejected an honest commit: %v", s.step, d.dev, err)
		return true
	}
	if canApply {
		if err := d.graph.Add(n); err != nil {
			s.t.Fatalf("%v: add: %v", d.dev, err)
		}
		return true
	}
	// A Welcome. The new member fetches the history of the epoch it joins
	// (following commit_event links) so that it compares branches as the
	// others do.
	if d.graph == nil {
		d.graph = New[int]()
	}
	var history []Node[int]
	for p := ev.node.Parent; p != ""; p = s.events[p].node.Parent {
		if _, known := d.graph.Node(p); known {
			break
		}
		history = append(history, s.events[p].node)
	}
	slices.Reverse(history)
	for _, h := range history {
		h.Added = n.Added
		if err := d.graph.Learn(h); err != nil {
			s.t.Fatalf("%v: learn: %v", d.dev, err)
		}
	}
	if err := d.graph.Join(n); err != nil {
		s.t.Fatalf("%v: join: %v", d.dev, err)
	}
	return true
}

func (s *simulation) deliver(d *simDevice) {
	// Retry until nothing more applies: an event may unblock another.
	for progress := true; progress; {
		progress = false
		kept := d.inbox[:0]
		for _, m := range d.inbox {
			if m.at <= s.step && s.receive(d, m.ev) {
				progress = true
				continue
			}
			kept = append(kept, m)
		}
		d.inbox = kept
	}
}

// act applies the committer rule for d.
func (s *simulation) act(d *simDevice) {
	if d.graph == nil || s.room.Members[d.dev.UserID] != Join {
		d.timerAt = -1
		return
	}
	plan, err := d.graph.NextCommit(s.room)
	if err != nil {
		s.t.Fatal(err)
	}
	base, _ := d.graph.Node(plan.Base)
	if !slices.Contains(base.Members, d.dev) {
		return // removed in the base; only a Welcome brings it back
	}
	if plan.Plan.Empty() && len(plan.Resolves) == 0 {
		d.timerAt = -1
		return
	}
	if d.timerAt >= 0 {
		if s.step >= d.timerAt {
			d.timerAt = -1
			s.commit(d)
		}
		return
	}
	var joined []LeafDevice
	for i, m := range base.Members {
		if s.room.Members[m.UserID] == Join {
			joined = append(joined, LeafDevice{Device: m, Leaf: uint32(i)})
		}
	}
	dec := DecideCommitter(CommitterInput{
		Joined: joined, Self: d.dev, Seen: simTime(s.step),
		Grace: time.Duration(s.timing.grace) * time.Second, MaxJitter: time.Duration(s.timing.jitter) * time.Second,
		Jitter: d.jitter, Rounds: d.graph.ResolvingRun(),
	})
	switch dec.Action {
	case CommitNow:
		s.commit(d)
	case CommitLater:
		d.timerAt = s.step + int(dec.Delay/time.Second)
	}
}

func (s *simulation) run(steps, users int, changeEvery int) {
	order := slices.SortedFunc(func(yield func(Device) bool) {
		for d := range s.devices {
			if !yield(d) {
				return
			}
		}
	}, Device.Compare)
	for end := s.step + steps; s.step < end; {
		s.step++
		if changeEvery > 0 && s.step%changeEvery == 0 {
			s.changeMembership(users)
		}
		s.rooms = append(s.rooms, s.snapshot())
		for _, dv := range order {
			s.deliver(s.devices[dv])
		}
		for _, dv := range order {
			s.act(s.devices[dv])
		}
		for _, dv := range order {
			if g := s.devices[dv].graph; g != nil {
				if err := g.Drop(g.Expired(Policy{MaxEpochs: 64, MaxAge: time.Hour}, simTime(s.step)), nil); err != nil {
					s.t.Fatal(err)
				}
			}
		}
	}
}

func TestSimulationConverges(t *testing.T) {
	seeds := uint64(24)
	if testing.Short() {
		seeds = 4
	}
	var commits, resolving int
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const users = 7
			s := newSimulation(t, seed, users)
			// Membership changes every 3 steps for 120 steps, faster than
			// commits can settle, so forks happen; then 200 quiet steps.
			s.run(120, users, 3)
			s.run(200, users, 0)
			commits += s.commits
			resolving += s.resolving
			if s.rejected > 0 {
				t.Fatalf("%d honest commits rejected", s.rejected)
			}
			s.assertConverged()
		})
	}
	t.Logf("%d seeds: %d commits, %d of them resolving forks", seeds, commits, resolving)
	if resolving == 0 {
		t.Fatal("the simulation never forked, so it proved nothing")
	}
}

func TestSimulationRejectsUnauthorisedAdd(t *testing.T) {
	s := newSimulation(t, 1, 3)
	s.run(30, 3, 0)
	creator := s.devices[Device{"@u0:x", "D1"}]
	base, _ := creator.graph.Base()
	mallory := Device{"@mallory:x", "M"}
	ev := &simEvent{
		node: Node[int]{
			Identity: Identity{ID: "evil", Number: 1, Creator: Device{"@u0:x", "D1"}},
			Parent:   base, ConfirmationTag: []byte{1}, Members: []Device{creator.dev, mallory},
		},
		added: []Device{mallory}, step: s.step - 1, baseStep: 0,
	}
	err := CheckCommit(CommitEffect{Added: ev.added, After: ev.node.Members}, s.rooms[ev.step], s.rooms[ev.baseStep])
	if !errors.Is(err, ErrUnauthorisedAdd) {
		t.Fatalf("got %v", err)
	}
}

// assertConverged fails unless every joined device has one head, the same
// one, whose group is exactly the joined devices.
func (s *simulation) assertConverged() {
	s.t.Helper()
	want := s.joinedDevices()
	var head ID
	for _, d := range want {
		g := s.devices[d].graph
		if g == nil {
			s.t.Fatalf("%v joined but was never welcomed", d)
		}
		heads := g.Heads()
		if len(heads) != 1 {
			for _, h := range heads {
				n, _ := g.Node(h)
				by, retired := g.Retired(h)
				ev := s.events[h]
				s.t.Logf("head %v number %d parent %v creator %v step %d members %v retired %v by %v", h, n.Number, n.Parent, n.Creator, ev.step, n.Members, retired, by)
				for _, o := range want {
					og := s.devices[o].graph
					on, ok := og.Node(h)
					s.t.Logf("   at %v: known %v retained %v heads %v", o, ok, on.Retained, og.Heads())
				}
			}
			s.t.Fatalf("%v has %d heads", d, len(heads))
		}
		if head == "" {
			head = heads[0]
		} else if heads[0] != head {
			s.t.Fatalf("%v is on %v, others on %v", d, heads[0], head)
		}
		n, _ := g.Node(head)
		if !slices.Equal(n.Members, want) {
			s.t.Fatalf("group %v, room %v", n.Members, want)
		}
	}
}

// TestSimulationOutlastsShortGrace runs the simulation with a grace and
// jitter shorter than events take to arrive, the misconfiguration (or
// overloaded homeserver) under which every waiting device commits its own
// resolution before the first one reaches it: each round of resolutions
// forks again, and without the doubling of the wait per resolving round
// (package doc, "Committer") the group never settled.
func TestSimulationOutlastsShortGrace(t *testing.T) {
	seeds := uint64(12)
	if testing.Short() {
		seeds = 3
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const users = 7
			s := newTimedSimulation(t, seed, users, simTiming{maxDelay: 8, grace: 1, jitter: 2})
			s.run(60, users, 3)
			s.run(300, users, 0)
			if s.rejected > 0 {
				t.Fatalf("%d honest commits rejected", s.rejected)
			}
			s.assertConverged()
		})
	}
}
