package epochs

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func dev(user, device string) Device { return Device{UserID: user, DeviceID: device} }

var (
	alice = dev("@alice:x", "A1")
	bob   = dev("@bob:x", "B1")
	carol = dev("@carol:x", "C1")
)

// spec describes one epoch for the test graphs: id, parent, confirmation
// tag (one byte), creator.
type spec struct {
	id, parent string
	tag        byte
	creator    Device
	resolves   []string
}

// build adds the specs in order; the root has number 0, every child its
// parent's plus one. Added times are t0 plus one second per epoch.
func build(t *testing.T, specs ...spec) *Graph[string] {
	t.Helper()
	g := New[string]()
	for i, s := range specs {
		if err := g.Add(node(g, s, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatalf("add %s: %v", s.id, err)
		}
	}
	return g
}

func node(g *Graph[string], s spec, added time.Time) Node[string] {
	n := Node[string]{
		Identity:        Identity{ID: ID(s.id), Creator: s.creator, CommitEvent: "$" + s.id},
		Parent:          ID(s.parent),
		ConfirmationTag: []byte{s.tag},
		Members:         []Device{alice, bob, carol},
		Added:           added,
		State:           "state of " + s.id,
	}
	if p, ok := g.Node(ID(s.parent)); ok {
		n.Number = p.Number + 1
	}
	for _, r := range s.resolves {
		n.Resolves = append(n.Resolves, ID(r))
	}
	return n
}

func ids(xs ...string) []ID {
	out := make([]ID, len(xs))
	for i, x := range xs {
		out[i] = ID(x)
	}
	return out
}
