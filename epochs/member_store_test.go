package epochs

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// store is what a database holds of one Member: its metadata and the
// parts of each retained epoch, written as Flush says.
type store struct {
	meta   []byte
	epochs map[ID]*StoredEpoch
	loads  []ID
	// written counts the bytes each Flush wrote.
	written int
}

func newStore() *store { return &store{epochs: map[ID]*StoredEpoch{}} }

// write applies ch as a transaction would.
func (s *store) write(t testing.TB, ch *Changes) {
	t.Helper()
	s.written = 0
	for _, id := range ch.Dropped {
		if s.epochs[id] == nil {
			t.Fatalf("dropped epoch %v was never stored", id)
		}
		delete(s.epochs, id)
	}
	for _, ec := range ch.Epochs {
		e := s.epochs[ec.Epoch]
		if e == nil {
			if ec.Static == nil {
				t.Fatalf("epoch %v written without its static part", ec.Epoch)
			}
			e = &StoredEpoch{Privates: map[Device][]byte{}}
			s.epochs[ec.Epoch] = e
		} else if ec.Static != nil {
			t.Fatalf("static part of epoch %v written twice", ec.Epoch)
		}
		for _, part := range []struct {
			dst *[]byte
			src []byte
		}{
			{&e.Static, ec.Static}, {&e.InitState, ec.InitState}, {&e.SecretTree, ec.SecretTree}, {&e.Commit, ec.Commit},
		} {
			if part.src != nil {
				*part.dst = bytes.Clone(part.src)
				s.written += len(part.src)
			}
		}
		for d, b := range ec.Privates {
			e.Privates[d] = bytes.Clone(b)
			s.written += len(b)
		}
		for _, d := range ec.Removed {
			delete(e.Privates, d)
		}
	}
	if ch.Metadata != nil {
		s.meta = bytes.Clone(ch.Metadata)
		s.written += len(ch.Metadata)
	}
}

func (s *store) load(id ID) (*StoredEpoch, error) {
	s.loads = append(s.loads, id)
	e := s.epochs[id]
	if e == nil {
		return nil, fmt.Errorf("no epoch %v stored", id)
	}
	return e, nil
}

func (s *store) member(t testing.TB) *Member {
	t.Helper()
	s.loads = nil
	m, err := LoadMember(s.meta, dmlsConfig, s.load)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func flush(t testing.TB, m *Member) *Changes {
	t.Helper()
	ch, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// changed summarises what a flush writes, for comparisons.
func changed(ch *Changes) string {
	var parts []string
	if ch.Metadata != nil {
		parts = append(parts, "metadata")
	}
	for _, ec := range ch.Epochs {
		var what []string
		for name, b := range map[string][]byte{"static": ec.Static, "init": ec.InitState, "tree": ec.SecretTree, "commit": ec.Commit} {
			if b != nil {
				what = append(what, name)
			}
		}
		slices.Sort(what)
		if len(ec.Privates) > 0 {
			what = append(what, fmt.Sprintf("privates %v", slices.SortedFunc(maps.Keys(ec.Privates), Device.Compare)))
		}
		if len(ec.Removed) > 0 {
			what = append(what, fmt.Sprintf("removed %v", ec.Removed))
		}
		parts = append(parts, fmt.Sprintf("%.4s: %v", ec.Epoch.String(), what))
	}
	if len(ch.Dropped) > 0 {
		parts = append(parts, fmt.Sprintf("dropped %d", len(ch.Dropped)))
	}
	return fmt.Sprint(parts)
}

// A Member stored in parts and loaded lazily: each operation writes
// exactly what it changed (a message read, only that epoch's secret tree;
// a commit processed, the new epoch, the base's init state and the
// metadata), and the Member loaded again goes on where it was.
func TestMemberStoredInParts(t *testing.T) {
	ms, room := memberRoom(t, 3)
	m := ms[0]
	db := newStore()
	db.write(t, flush(t, m.Member))
	if len(db.epochs) != 2 || db.meta == nil {
		t.Fatalf("first flush: %d epochs", len(db.epochs))
	}
	if got := changed(flush(t, m.Member)); got != "[]" {
		t.Fatalf("nothing changed, yet: %s", got)
	}

	// Loading reads only the metadata.
	m.Member = db.member(t)
	if len(db.loads) != 0 {
		t.Fatalf("loading read epochs %v", db.loads)
	}
	base, _ := m.Base()

	// A message read: that epoch's secret tree, loaded once.
	for i := range 2 {
		_, ct, err := ms[1].Encrypt(ms[1].Self, []byte(fmt.Sprint("m", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Decrypt(base, ct); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(db.loads, []ID{base}) {
		t.Fatalf("loads %v", db.loads)
	}
	// The sender's first message in the epoch also changes the metadata
	// (retention's settled rule counts it), once.
	ch := flush(t, m.Member)
	if len(ch.Epochs) != 1 || ch.Epochs[0].Epoch != base || ch.Epochs[0].SecretTree == nil || ch.Metadata == nil ||
		ch.Epochs[0].Static != nil || ch.Epochs[0].InitState != nil || ch.Epochs[0].Privates != nil {
		t.Fatalf("a sender's first messages read wrote %s", changed(ch))
	}
	db.write(t, ch)
	_, m2, err := ms[1].Encrypt(ms[1].Self, []byte("m2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Decrypt(base, m2); err != nil {
		t.Fatal(err)
	}
	ch = flush(t, m.Member)
	if got := changed(ch); got != fmt.Sprintf("[%.4s: [tree]]", base.String()) {
		t.Fatalf("a sender's next message read wrote %s", got)
	}
	db.write(t, ch)

	// A commit processed: the new epoch in full, the base's init state,
	// the metadata.
	out := ms[1].commit(t, room, nil, "$a", t0.Add(time.Second))
	if _, err := m.Apply(out.Commit, room, room, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ch = flush(t, m.Member)
	want := fmt.Sprintf("[metadata %.4s: [init] %.4s: [commit init static tree privates [%v]]]", base.String(), out.Commit.Epoch.String(), m.Self)
	if out.Commit.Epoch < base {
		want = fmt.Sprintf("[metadata %.4s: [commit init static tree privates [%v]] %.4s: [init]]", out.Commit.Epoch.String(), m.Self, base.String())
	}
	if got := changed(ch); got != want {
		t.Fatalf("a commit wrote %s, want %s", got, want)
	}
	db.write(t, ch)

	// Our own messages: the new base's secret tree, and with the first
	// the metadata (the sender noted).
	for i, want := range []string{"[metadata %.4s: [tree]]", "[%.4s: [tree]]"} {
		if _, _, err := m.Encrypt(m.Self, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		ch := flush(t, m.Member)
		if got := changed(ch); got != fmt.Sprintf(want, out.Commit.Epoch.String()) {
			t.Fatalf("message %d sent wrote %s", i, got)
		}
		db.write(t, ch)
	}

	// Retention: the dropped epochs are deleted.
	m.Policy = Policy{MaxEpochs: 1}
	if _, err := m.Retain(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ch = flush(t, m.Member)
	if ch.Metadata == nil || len(ch.Dropped) != 2 || len(ch.Epochs) != 0 {
		t.Fatalf("retention wrote %s", changed(ch))
	}
	db.write(t, ch)

	// Loaded again, it goes on: the next commit, and the one it already
	// processed is a duplicate.
	again := one{db.member(t), m.Self}
	if _, err := again.Apply(out.Commit, room, room, t0); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("processed commit after loading: %v", err)
	}
	if _, err := ms[2].Apply(out.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
	next := ms[2].commit(t, room, nil, "$b", t0.Add(2*time.Minute))
	if _, err := ms[1].Apply(next.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Apply(next.Commit, room, room, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, ct, _ := ms[1].Encrypt(ms[1].Self, []byte("after"))
	if pt, _, err := again.Decrypt(next.Commit.Epoch, ct); err != nil || string(pt) != "after" {
		t.Fatalf("decrypt after loading: %q %v", pt, err)
	}
	db.write(t, flush(t, again.Member))

	// A device of ours that joins later, and leaves: its private states
	// come and go alone.
	svc := db.member(t)
	extra := dev("@u9:x", "D")
	room.Members[extra.UserID] = Join
	room.Devices[extra.UserID] = []string{"D"}
	var kp *group.KeyPackageBundle
	add := ms[1].commit(t, room, func(d Device) *message.KeyPackage { kp = newKP(t, d); return &kp.KeyPackage }, "$c", t0.Add(3*time.Minute))
	if _, err := svc.Apply(add.Commit, room, room, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	db.write(t, flush(t, svc))
	if _, err := svc.Join(extra, add.Welcome, kp, add.Commit, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	ch = flush(t, svc)
	if got, want := changed(ch), fmt.Sprintf("[metadata %.4s: [privates [%v]]]", add.Commit.Epoch.String(), extra); got != want {
		t.Fatalf("a device joining wrote %s, want %s", got, want)
	}
	db.write(t, ch)
	if _, err := svc.RemoveDevice(extra); err != nil {
		t.Fatal(err)
	}
	ch = flush(t, svc)
	if got, want := changed(ch), fmt.Sprintf("[metadata %.4s: [removed [%v]]]", add.Commit.Epoch.String(), extra); got != want {
		t.Fatalf("a device leaving wrote %s, want %s", got, want)
	}
	db.write(t, ch)
	final := db.member(t)
	if !slices.Equal(final.Holders(add.Commit.Epoch), []Device{m.Self}) {
		t.Fatalf("holders after loading: %v", final.Holders(add.Commit.Epoch))
	}
	if _, err := final.Public(add.Commit.Epoch); err != nil {
		t.Fatal(err)
	}

	// What the store gives is checked when it is loaded.
	id := add.Commit.Epoch
	for name, corrupt := range map[string]func(e *StoredEpoch){
		"missing private":      func(e *StoredEpoch) { delete(e.Privates, m.Self) },
		"another epoch's part": func(e *StoredEpoch) { e.SecretTree = db.epochs[next.Commit.Epoch].SecretTree },
		"truncated static":     func(e *StoredEpoch) { e.Static = e.Static[:len(e.Static)/2] },
	} {
		saved := *db.epochs[id]
		saved.Privates = maps.Clone(saved.Privates)
		corrupt(db.epochs[id])
		if _, err := db.member(t).Public(id); err == nil {
			t.Errorf("%s: loaded", name)
		}
		*db.epochs[id] = saved
	}
	failing, err := LoadMember(db.meta, dmlsConfig, func(ID) (*StoredEpoch, error) { return nil, errors.New("database down") })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := failing.Decrypt(id, nil); err == nil {
		t.Fatal("a failing loader went unnoticed")
	}
}

// Everything a Member keeps about commits is pruned with the epochs it
// concerns: over 200 commits in a 100-device group its encoded size stays
// bounded, and what each commit writes does not grow.
func TestMemberBoundedState(t *testing.T) {
	ms, room := memberRoomHeld(t, 100, 2)
	for _, m := range ms {
		m.Policy = Policy{MaxEpochs: 16, MaxAge: time.Minute}
	}
	db := newStore()
	db.write(t, flush(t, ms[0].Member))
	var sizes, metas, writes []int
	now := t0
	for i := range 200 {
		now = now.Add(time.Second)
		from, to := ms[i%2], ms[1-i%2]
		out := from.commit(t, room, nil, fmt.Sprintf("$c%d", i), now)
		if _, err := to.Apply(out.Commit, room, room, now); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if _, err := m.Retain(now); err != nil {
				t.Fatal(err)
			}
		}
		db.write(t, flush(t, ms[0].Member))
		if i == 0 || (i+1)%50 == 0 {
			enc, err := ms[0].MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			sizes, metas, writes = append(sizes, len(enc)), append(metas, len(db.meta)), append(writes, db.written)
			t.Logf("after %d commits: encoded %d bytes (metadata %d), %d epochs known (%d retained), %d commits seen, %d observed; last flush wrote %d bytes",
				i+1, len(enc), len(db.meta), ms[0].Graph().Len(), len(db.epochs), len(ms[0].seen), len(ms[0].known), db.written)
		}
	}
	last := len(sizes) - 1
	if sizes[last] > sizes[1]*11/10 || metas[last] > metas[1]*11/10 || writes[last] > writes[1]*11/10 {
		t.Fatalf("state grows: encoded %v, metadata %v, writes %v", sizes, metas, writes)
	}
	if n := len(ms[0].seen); n > 2*ms[0].Policy.MaxEpochs {
		t.Fatalf("%d commits seen kept", n)
	}
	if n := len(ms[0].known); n > 0 {
		t.Fatalf("%d observed commits kept", n)
	}
}

// Reading a message decodes no private state (it needs none), so a
// corrupt stored private state does not stop it; the first operation that
// needs our device's keys decodes and checks them, and refuses.
func TestMemberPrivatesDecodedOnUse(t *testing.T) {
	ms, _ := memberRoom(t, 2)
	m := ms[0]
	db := newStore()
	db.write(t, flush(t, m.Member))
	base, _ := m.Base()
	stored := db.epochs[base].Privates[m.Self]
	if stored == nil {
		t.Fatalf("no private state of %v stored", m.Self)
	}
	db.epochs[base].Privates[m.Self] = []byte("not a private state")

	m.Member = db.member(t)
	_, ct, err := ms[1].Encrypt(ms[1].Self, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, _, err := m.Decrypt(base, ct); err != nil || string(pt) != "hello" {
		t.Fatalf("a message read with a corrupt private state stored: %q, %v", pt, err)
	}
	if _, _, err := m.Encrypt(m.Self, []byte("hi")); err == nil || !strings.Contains(err.Error(), "private state") {
		t.Fatalf("sending with a corrupt private state: %v", err)
	}

	// With the stored state intact, the same Member sends.
	db.epochs[base].Privates[m.Self] = stored
	m.Member = db.member(t)
	if _, _, err := m.Encrypt(m.Self, []byte("hi")); err != nil {
		t.Fatalf("sending: %v", err)
	}
}

// Sending as one device of ours decodes that device's stored private
// state only: with another device's state corrupt in the store, a
// loaded Member still sends as the first, and fails with ErrLoad only
// where the corrupt one is needed (sending as it, or a commit, which
// carries every device of ours on).
func TestSendDecodesOnlyTheSendersPrivateState(t *testing.T) {
	a, b := dev("@a:x", "A"), dev("@b:x", "B")
	r := newServiceRoom(t, 3, a, b)
	db := newStore()
	db.write(t, flush(t, r.svc))
	base, err := r.svc.Base()
	if err != nil {
		t.Fatal(err)
	}
	db.epochs[base].Privates[b] = []byte("not a private state")

	m := db.member(t)
	epoch, ct, err := m.Encrypt(a, []byte("from a"))
	if err != nil {
		t.Fatalf("a sends with b's stored state corrupt: %v", err)
	}
	if pt, from, err := r.indep[1].Decrypt(epoch, ct); err != nil || from != a || string(pt) != "from a" {
		t.Fatalf("a's message read as %q from %v: %v", pt, from, err)
	}
	if _, _, err := m.Encrypt(b, []byte("from b")); !errors.Is(err, ErrLoad) {
		t.Fatalf("b sends from a corrupt state: %v", err)
	}
	if _, err := m.Commit(a, r.room, r.kps, t0); !errors.Is(err, ErrLoad) {
		t.Fatalf("a commits with b's state corrupt: %v", err)
	}
}

// An epoch's holders stay sorted and free of repeats as devices are added
// in any order (by insertion, as Welcomes join them one at a time).
func TestEpochStateAddKeepsHoldersSorted(t *testing.T) {
	st := newEpochState(nil, map[Device]*group.Private{{UserID: "@m:x", DeviceID: "D"}: nil}, nil)
	for _, i := range []int{5, 1, 9, 1, 0, 7, 5, 3} {
		st.add(Device{UserID: fmt.Sprintf("@u%d:x", i), DeviceID: "D"}, nil)
	}
	want := sortedDevices(append(slices.Clone(st.holders), Device{UserID: "@m:x", DeviceID: "D"}))
	if !slices.Equal(st.holders, want) || len(st.holders) != 7 {
		t.Fatalf("holders %v, want %v", st.holders, want)
	}
}

func TestUnionSorted(t *testing.T) {
	d := func(names ...string) []Device {
		var out []Device
		for _, n := range names {
			out = append(out, Device{UserID: "@" + n + ":x", DeviceID: "D"})
		}
		return out
	}
	for _, tt := range []struct{ a, b, want []Device }{
		{nil, nil, nil},
		{d("a"), nil, d("a")},
		{nil, d("a", "b"), d("a", "b")},
		{d("a", "c", "e"), d("b", "c", "d", "f"), d("a", "b", "c", "d", "e", "f")},
		{d("a", "b"), d("a", "b"), d("a", "b")},
		{d("b"), d("a"), d("a", "b")},
	} {
		if got := unionSorted(tt.a, tt.b); !slices.Equal(got, tt.want) {
			t.Errorf("unionSorted(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestStoredPrivatesOpenedWhenNeeded: with StoredEpoch.Open, a private
// state is opened when it is first decoded: a send opens its sender's
// only, and one that does not open fails what needs it and nothing else.
func TestStoredPrivatesOpenedWhenNeeded(t *testing.T) {
	a, b, c, eve := dev("@a:x", "A"), dev("@b:x", "B"), dev("@c:x", "C"), dev("@e:x", "E")
	r := newServiceRoom(t, 3, a, b, c, eve)
	db := newStore()
	db.write(t, flush(t, r.svc))
	base, err := r.svc.Base()
	if err != nil {
		t.Fatal(err)
	}
	opened := map[Device]int{}
	sealed := func(id ID) (*StoredEpoch, error) {
		e, err := db.load(id)
		if err != nil {
			return nil, err
		}
		cp := *e
		cp.Privates = map[Device][]byte{}
		for d, p := range e.Privates {
			cp.Privates[d] = append([]byte("sealed:"), p...)
		}
		cp.Privates[b] = []byte("tampered")                     // does not open
		cp.Privates[eve] = []byte("sealed:not a private state") // opens, does not decode
		cp.Open = func(d Device, stored []byte) ([]byte, error) {
			opened[d]++
			if want := map[Device]string{b: "tampered", eve: "sealed:not a private state"}[d]; want != "" && string(stored) != want {
				t.Errorf("%v's stored part given to Open as %q, want %q", d, stored, want)
			}
			plain, ok := bytes.CutPrefix(stored, []byte("sealed:"))
			if !ok {
				return nil, errors.New("does not open")
			}
			return bytes.Clone(plain), nil
		}
		return &cp, nil
	}
	m, err := LoadMember(db.meta, dmlsConfig, sealed)
	if err != nil {
		t.Fatal(err)
	}
	epoch, ct, err := m.Encrypt(a, []byte("from a"))
	if err != nil || epoch != base {
		t.Fatalf("a sends in %v, want %v: %v", epoch, base, err)
	}
	if pt, from, err := r.indep[1].Decrypt(epoch, ct); err != nil || from != a || string(pt) != "from a" {
		t.Fatalf("a's message read as %q from %v: %v", pt, from, err)
	}
	if want := map[Device]int{a: 1}; !maps.Equal(opened, want) {
		t.Fatalf("opened %v to send as a, want %v", opened, want)
	}
	if _, _, err := m.Encrypt(c, []byte("from c")); err != nil {
		t.Fatalf("c sends: %v", err)
	}
	for range 2 { // the stored parts are kept as they were for another try
		if _, _, err := m.Encrypt(b, []byte("from b")); !errors.Is(err, ErrLoad) {
			t.Fatalf("b sends from a state that does not open: %v", err)
		}
		if _, _, err := m.Encrypt(eve, []byte("from e")); !errors.Is(err, ErrLoad) {
			t.Fatalf("e sends from a state that does not decode: %v", err)
		}
	}
	if opened[b] != 2 || opened[eve] != 2 {
		t.Fatalf("opened b %d and e %d times, want twice each", opened[b], opened[eve])
	}
	if _, _, err := m.Encrypt(a, []byte("again")); err != nil || opened[a] != 1 {
		t.Fatalf("a sends again: %v, a opened %d times, want once", err, opened[a])
	}
	if _, err := m.Commit(a, r.room, r.kps, t0); !errors.Is(err, ErrLoad) {
		t.Fatalf("a commits with b's state not opening: %v", err)
	}
}

// TestFootholds: for random graphs, the footholds are the epochs that are
// the newest (by number, then ID) to hold some device of ours, and a
// sorted list's subset test agrees with a set's.
func TestFootholds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all []Device
	for i := range 12 {
		all = append(all, dev(fmt.Sprintf("@u%02d:x", i), "D"))
	}
	pick := func() []Device {
		var out []Device
		for _, d := range all {
			if rng.IntN(3) == 0 {
				out = append(out, d)
			}
		}
		return out
	}
	for round := range 500 {
		// Roots only: footholds looks at numbers and IDs, not at links.
		m := &Member{graph: New[*EpochState]()}
		for range 1 + rng.IntN(6) {
			id := ID(fmt.Sprintf("E%d", rng.IntN(1000)))
			if m.graph.nodes[id] != nil {
				continue
			}
			n := Node[*EpochState]{Identity: Identity{ID: id, Number: uint64(rng.IntN(3))},
				ConfirmationTag: []byte{1}, State: &EpochState{holders: pick()}}
			if err := m.graph.Add(n); err != nil {
				t.Fatal(err)
			}
		}
		want := map[ID]bool{}
		newest := map[Device]*Node[*EpochState]{}
		for _, n := range m.graph.nodes {
			for _, d := range n.State.holders {
				if cur := newest[d]; cur == nil || n.Number > cur.Number || n.Number == cur.Number && n.ID > cur.ID {
					newest[d] = n
				}
			}
		}
		for _, n := range newest {
			want[n.ID] = true
		}
		if got := m.footholds(); !maps.Equal(got, want) {
			t.Fatalf("round %d: footholds %v, want %v", round, got, want)
		}
		a, b := pick(), pick()
		set := DeviceSet(b)
		if got, want := subsetSorted(a, b), !slices.ContainsFunc(a, func(d Device) bool { return !set[d] }); got != want {
			t.Fatalf("round %d: subsetSorted(%v, %v) = %v", round, a, b, got)
		}
	}
}
