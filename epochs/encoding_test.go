package epochs

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

func encodeString(s string) ([]byte, error) { return []byte(s), nil }
func decodeString(b []byte) (string, error) { return string(b), nil }

func sampleGraph(t *testing.T) *Graph[string] {
	g := build(t,
		spec{id: "R", creator: alice},
		spec{id: "A", parent: "R", tag: 5, creator: alice}, spec{id: "A1", parent: "A", tag: 1, creator: bob},
		spec{id: "B", parent: "R", tag: 3, creator: carol}, spec{id: "B1", parent: "B", tag: 99, creator: carol},
		spec{id: "C", parent: "A1", tag: 7, creator: alice, resolves: []string{"B1", "unseen"}},
	)
	if err := g.Drop(ids("R"), nil); err != nil {
		t.Fatal(err)
	}
	g.RecordMessage("A1", carol)
	g.RecordMessage("A1", alice)
	g.RecordMessage("C", bob)
	g.stampSpoken(t0.Add(time.Minute))
	g.nodes["C"].Echoed = true
	return g
}

func TestGraphEncodingRoundTrip(t *testing.T) {
	g := sampleGraph(t)
	enc, err := g.MarshalBinary(encodeString)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Unmarshal(enc, decodeString)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := h.MarshalBinary(encodeString)
	if !bytes.Equal(enc, again) {
		t.Fatal("re-encoding differs")
	}
	if !slices.Equal(g.Heads(), h.Heads()) || g.Len() != h.Len() {
		t.Fatalf("heads %q vs %q", g.Heads(), h.Heads())
	}
	for _, id := range ids("R", "A", "A1", "B", "B1", "C") {
		a, _ := g.Node(id)
		b, ok := h.Node(id)
		if !ok || a.Identity != b.Identity || a.Parent != b.Parent || !bytes.Equal(a.ConfirmationTag, b.ConfirmationTag) ||
			!slices.Equal(a.Members, b.Members) || !slices.Equal(a.Spoke, b.Spoke) || !slices.Equal(a.Resolves, b.Resolves) ||
			!a.Added.Equal(b.Added) || !a.Superseded.Equal(b.Superseded) || a.Retained != b.Retained || a.State != b.State ||
			a.Echoed != b.Echoed || !a.Spoken.Equal(b.Spoken) {
			t.Fatalf("epoch %s: %+v != %+v", id, a, b)
		}
	}
	if n, _ := h.Node("A1"); !slices.Equal(n.Spoke, []Device{alice, carol}) {
		t.Fatalf("spoke of A1 decoded as %v", n.Spoke)
	}
	if n, _ := h.Node("C"); !n.Echoed {
		t.Fatal("echoed lost")
	}
	if n, _ := h.Node("A1"); !n.Spoken.Equal(t0.Add(time.Minute)) {
		t.Fatalf("spoken of A1 decoded as %v", n.Spoken)
	}
	if by, ok := h.Retired("unseen"); !ok || by != "C" {
		t.Fatal("pending resolution lost")
	}
}

// A retained epoch whose parent is retained stores its members as the
// changes from the parent's, so that many epochs of a large group cost
// about one member list; they decode to the same lists.
func TestGraphEncodingMemberChanges(t *testing.T) {
	var many []Device
	for i := range 200 {
		many = append(many, dev(fmt.Sprintf("@user%03d:example.org", i), "DEVICE"))
	}
	g := New[string]()
	prev := ID("")
	members := slices.Clone(many)
	for i := range 20 {
		id := ID(fmt.Sprintf("E%02d", i))
		members = append(slices.Clone(members[1:]), dev(fmt.Sprintf("@new%02d:example.org", i), "D"))
		err := g.Add(Node[string]{Identity: Identity{ID: id, Number: uint64(i)}, Parent: prev, ConfirmationTag: []byte{byte(i)},
			Members: members, Added: t0, State: "s"})
		if err != nil {
			t.Fatal(err)
		}
		prev = id
	}
	enc, err := g.MarshalBinary(encodeString)
	if err != nil {
		t.Fatal(err)
	}
	list := codec.NewWriter(0)
	writeDevices(list, members)
	if len(enc) > 2*len(list.Bytes()) {
		t.Fatalf("20 epochs of 200 members encode to %d bytes; one member list is %d", len(enc), len(list.Bytes()))
	}
	h, err := Unmarshal(enc, decodeString)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range g.nodes {
		if m, _ := h.Node(id); !slices.Equal(m.Members, n.Members) {
			t.Fatalf("epoch %v: members differ after decoding", id)
		}
	}
	// Dropped epochs keep no members; their children then store theirs in
	// full.
	if err := g.Drop(ids("E00", "E01", "E02"), nil); err != nil {
		t.Fatal(err)
	}
	enc, _ = g.MarshalBinary(encodeString)
	h, err = Unmarshal(enc, decodeString)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := h.Node("E03"); !slices.Equal(n.Members, g.nodes["E03"].Members) {
		t.Fatal("members of the oldest retained epoch lost")
	}
}

func TestGraphEncodingErrors(t *testing.T) {
	g := sampleGraph(t)
	failing := func(string) ([]byte, error) { return nil, errors.New("boom") }
	if _, err := g.MarshalBinary(failing); err == nil {
		t.Fatal("encoder error ignored")
	}
	enc, _ := g.MarshalBinary(encodeString)
	if _, err := Unmarshal(enc, func([]byte) (string, error) { return "", errors.New("bad state") }); err == nil {
		t.Fatal("decoder error ignored")
	}

	type nodeFields struct {
		id, parent string
		number     uint64
		tag        []byte
		members    []Device // all, or added with form changes
		resolves   []string
		form       uint8
		removed    []Device
		dropped    bool
		spoke      []byte    // version 3
		echoed     uint8     // version 4
		spoken     time.Time // version 5
	}
	encode := func(version uint8, nodes ...nodeFields) []byte {
		w := codec.NewWriter(64)
		w.Uint8(version)
		w.Vector(func(w *codec.Writer) {
			for _, n := range nodes {
				w.Opaque([]byte(n.id))
				w.Uint64(n.number)
				writeDevice(w, alice)
				w.Opaque([]byte("$ev"))
				w.Opaque([]byte(n.parent))
				w.Opaque(n.tag)
				switch {
				case version == 1:
					writeDevices(w, n.members)
				case n.form == membersChanges:
					w.Uint8(membersChanges)
					writeDevices(w, n.members)
					writeDevices(w, n.removed)
				default:
					w.Uint8(n.form)
					if n.form == membersAll {
						writeDevices(w, n.members)
					}
				}
				w.Vector(func(w *codec.Writer) {
					for _, r := range n.resolves {
						w.Opaque([]byte(r))
					}
				})
				writeTime(w, t0)
				writeTime(w, time.Time{})
				w.Optional(!n.dropped)
				if !n.dropped {
					w.Opaque([]byte("s"))
					if version >= 3 {
						w.Opaque(n.spoke)
					}
					if version >= 4 {
						w.Uint8(n.echoed)
					}
					if version >= 5 {
						writeTime(w, n.spoken)
					}
				}
			}
		})
		return w.Bytes()
	}
	long := string(bytes.Repeat([]byte{'x'}, 65))
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, codec.ErrTruncated},
		{"version", encode(9), ErrInvalidGraph},
		{"empty id", encode(1, nodeFields{id: ""}), ErrInvalidEpoch},
		{"long id", encode(1, nodeFields{id: long}), ErrInvalidEpoch},
		{"long parent", encode(1, nodeFields{id: "A", number: 1, parent: long}), ErrInvalidEpoch},
		{"own parent", encode(1, nodeFields{id: "A", number: 1, parent: "A"}), ErrInvalidGraph},
		{"parent of epoch 0", encode(1, nodeFields{id: "A", parent: "B"}), ErrInvalidGraph},
		{"long tag", encode(1, nodeFields{id: "A", tag: []byte(long)}), ErrInvalidGraph},
		{"members out of order", encode(1, nodeFields{id: "A", members: []Device{bob, alice}}), ErrInvalidGraph},
		{"duplicate member", encode(1, nodeFields{id: "A", members: []Device{bob, bob}}), ErrInvalidGraph},
		{"empty resolves entry", encode(1, nodeFields{id: "A", resolves: []string{""}}), ErrInvalidEpoch},
		{"resolves itself", encode(1, nodeFields{id: "A", resolves: []string{"A"}}), ErrInvalidGraph},
		{"nodes out of order", encode(1, nodeFields{id: "B"}, nodeFields{id: "A"}), ErrInvalidGraph},
		{"duplicate node", encode(1, nodeFields{id: "A"}, nodeFields{id: "A"}), ErrInvalidGraph},
		{"number does not follow parent", encode(1, nodeFields{id: "A", number: 3}, nodeFields{id: "B", number: 5, parent: "A"}), ErrInvalidGraph},
		{"trailing data", append(encode(1), 0), codec.ErrTrailingData},
		{"v2 unknown members form", encode(2, nodeFields{id: "A", form: 7}), ErrInvalidGraph},
		{"v2 retained without members", encode(2, nodeFields{id: "A", form: membersNone}), ErrInvalidGraph},
		{"v2 dropped with members", encode(2, nodeFields{id: "A", form: membersAll, dropped: true}), ErrInvalidGraph},
		{"v2 changes without parent", encode(2, nodeFields{id: "A", number: 1, parent: "P", form: membersChanges}), ErrInvalidGraph},
		{"v2 changes from a dropped parent", encode(2, nodeFields{id: "A", dropped: true},
			nodeFields{id: "B", number: 1, parent: "A", form: membersChanges}), ErrInvalidGraph},
		{"v2 removes a member the parent lacks", encode(2, nodeFields{id: "A", form: membersAll, members: []Device{alice}},
			nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, removed: []Device{bob}}), ErrInvalidGraph},
		{"v2 adds a member the parent has", encode(2, nodeFields{id: "A", form: membersAll, members: []Device{alice}},
			nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, members: []Device{alice}}), ErrInvalidGraph},
		{"v2 removed out of order", encode(2, nodeFields{id: "A", form: membersAll, members: []Device{alice, bob}},
			nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, removed: []Device{bob, alice}}), ErrInvalidGraph},
		{"v3 spoke too long", encode(3, nodeFields{id: "A", form: membersAll, members: []Device{alice}, spoke: []byte{1, 0}}), ErrInvalidGraph},
		{"v3 spoke past the members", encode(3, nodeFields{id: "A", form: membersAll, members: []Device{alice, bob}, spoke: []byte{4}}), ErrInvalidGraph},
		{"v3 spoke of changes past the members", encode(3, nodeFields{id: "A", form: membersAll, members: []Device{alice}},
			nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, members: []Device{bob}, spoke: []byte{4}}), ErrInvalidGraph},
		{"v4 echoed not 0 or 1", encode(4, nodeFields{id: "A", form: membersAll, members: []Device{alice}, echoed: 2}), ErrInvalidGraph},
		{"v6", encode(6), ErrInvalidGraph},
	}
	for _, tt := range tests {
		if _, err := Unmarshal(tt.data, decodeString); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := Unmarshal(encode(1, nodeFields{id: "A", number: 3}, nodeFields{id: "B", number: 4, parent: "A"}), decodeString); err != nil {
		t.Errorf("valid version 1 graph rejected: %v", err)
	}
	g2, err := Unmarshal(encode(2, nodeFields{id: "A", form: membersAll, members: []Device{alice, bob}},
		nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, members: []Device{carol}, removed: []Device{alice}}), decodeString)
	if err != nil {
		t.Fatalf("valid version 2 graph rejected: %v", err)
	}
	if n, _ := g2.Node("B"); !slices.Equal(n.Members, []Device{bob, carol}) || n.Spoke != nil {
		t.Errorf("members from changes: %v, spoke %v", n.Members, n.Spoke)
	}
	// Version 3: spoke over the members that the changes give.
	g3, err := Unmarshal(encode(3, nodeFields{id: "A", form: membersAll, members: []Device{alice, bob}, spoke: []byte{}},
		nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, members: []Device{carol}, removed: []Device{alice},
			spoke: []byte{2}}), decodeString)
	if err != nil {
		t.Fatalf("valid version 3 graph rejected: %v", err)
	}
	if n, _ := g3.Node("B"); !slices.Equal(n.Spoke, []Device{carol}) || n.Echoed {
		t.Errorf("spoke from bits: %v, echoed %v", n.Spoke, n.Echoed)
	}
	// Version 4: echoed per retained epoch.
	g4, err := Unmarshal(encode(4, nodeFields{id: "A", form: membersAll, members: []Device{alice}, echoed: 1},
		nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, members: []Device{bob}}), decodeString)
	if err != nil {
		t.Fatalf("valid version 4 graph rejected: %v", err)
	}
	if a, _ := g4.Node("A"); !a.Echoed {
		t.Error("echoed 1 read as false")
	}
	if b, _ := g4.Node("B"); b.Echoed || !b.Spoken.IsZero() {
		t.Errorf("version 4: echoed %v, spoken %v", b.Echoed, b.Spoken)
	}
	// Version 5: spoken per retained epoch.
	g5, err := Unmarshal(encode(5, nodeFields{id: "A", form: membersAll, members: []Device{alice}, spoke: []byte{1}, spoken: t0},
		nodeFields{id: "B", number: 1, parent: "A", form: membersChanges, members: []Device{bob}}), decodeString)
	if err != nil {
		t.Fatalf("valid version 5 graph rejected: %v", err)
	}
	if a, _ := g5.Node("A"); !a.Spoken.Equal(t0) || !slices.Equal(a.Spoke, []Device{alice}) {
		t.Errorf("version 5: spoken %v, spoke %v", a.Spoken, a.Spoke)
	}
	if b, _ := g5.Node("B"); !b.Spoken.IsZero() {
		t.Errorf("version 5: absent spoken read as %v", b.Spoken)
	}
}

func FuzzUnmarshalGraph(f *testing.F) {
	g := New[string]()
	for _, s := range []spec{{id: "R"}, {id: "A", parent: "R", tag: 1}, {id: "B", parent: "R", tag: 2, resolves: []string{"A"}}} {
		_ = g.Add(node(g, s, t0))
	}
	seed, _ := g.MarshalBinary(encodeString)
	f.Add(seed)
	g.RecordMessage("A", bob)
	g.nodes["A"].Echoed = true
	seed, _ = g.MarshalBinary(encodeString)
	f.Add(seed)
	_ = g.Drop([]ID{"R"}, nil)
	seed, _ = g.MarshalBinary(encodeString)
	f.Add(seed)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Unmarshal(data, decodeString)
		if err != nil {
			return
		}
		enc, err := g.MarshalBinary(encodeString)
		if err != nil {
			t.Fatal(err)
		}
		h, err := Unmarshal(enc, decodeString)
		if err != nil {
			t.Fatalf("re-encoded graph does not decode: %v", err)
		}
		if !slices.Equal(g.Heads(), h.Heads()) {
			t.Fatal("heads changed across a round trip")
		}
		// Every operation must cope with whatever decoded.
		heads := g.Heads()
		_, _ = g.Resolution()
		_ = g.Expired(Policy{MaxEpochs: 1, MaxAge: time.Second}, t0)
		for _, a := range heads {
			for _, b := range heads {
				g.FirstDifference(a, b)
				if g.Compare(a, b) != -g.Compare(b, a) {
					t.Fatal("Compare not antisymmetric")
				}
			}
		}
		if err := g.Drop(g.Expired(Policy{MaxEpochs: 1}, t0), nil); err != nil {
			t.Fatalf("dropping what Expired returned: %v", err)
		}
	})
}

// BenchmarkUnmarshalLargeGraph decodes the graph of a room of 10,000
// members holding 8 epochs, each of which removed 100 devices and added
// 100 others (as a load room's churn does): what every load of such a
// room costs before anything else.
func BenchmarkUnmarshalLargeGraph(b *testing.B) {
	members := make([]Device, 10100)
	for i := range members {
		members[i] = dev(fmt.Sprintf("@puppet%03d:example.org", i/100), fmt.Sprintf("DEVICE%02d", i%100))
	}
	members = sortedDevices(members)
	g := New[string]()
	prev := ID("")
	for i := range 8 {
		id := ID(fmt.Sprintf("E%d", i))
		// Epoch i lacks the i-th hundred of the first 900 and holds the rest.
		in := slices.Concat(members[:i*100], members[(i+1)*100:])
		n := Node[string]{Identity: Identity{ID: id, Number: uint64(i), Creator: in[0]}, Parent: prev,
			ConfirmationTag: []byte{1}, Members: in, Added: t0.Add(time.Duration(i) * time.Second)}
		if err := g.Add(n); err != nil {
			b.Fatal(err)
		}
		prev = id
	}
	data, err := g.MarshalBinary(encodeString)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Unmarshal(data, decodeString); err != nil {
			b.Fatal(err)
		}
	}
}
