package epochs

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// graphVersion is the first byte of an encoded Graph. Bump it whenever the
// layout below changes, and keep decoding the old layouts.
//
// Version 1, in the TLS presentation language:
//
//	struct { opaque user_id<V>; opaque device_id<V>; } Device;
//	struct { uint64 unix_nanos; } Time;        // optional<Time>: absent = zero
//	struct {
//	    opaque dmls_epoch<V>;                  // 1..64 bytes
//	    uint64 number;
//	    Device creator;
//	    opaque commit_event<V>;
//	    opaque parent<V>;                      // empty for a root
//	    opaque confirmation_tag<V>;
//	    Device members<V>;                     // ascending, unique
//	    opaque resolves<V><V>;                 // dmls_epoch values
//	    optional<Time> added;
//	    optional<Time> superseded;
//	    optional<opaque state<V>> state;       // present iff retained
//	} EpochNode;
//	struct {
//	    uint8 version = 1;
//	    EpochNode nodes<V>;                    // ascending by dmls_epoch
//	} EpochGraph;
//
// The state is whatever the caller's encoder returns; it holds secrets, so
// the whole encoding must be stored as securely as the states themselves.
const graphVersion = 1

// MarshalBinary encodes the graph with encode for each retained state.
func (g *Graph[S]) MarshalBinary(encode func(S) ([]byte, error)) ([]byte, error) {
	ids := make([]ID, 0, len(g.nodes))
	for id := range g.nodes {
		ids = append(ids, id)
	}
	sortedIDs(ids)
	states := make(map[ID][]byte, len(ids))
	for _, id := range ids {
		if n := g.nodes[id]; n.Retained {
			b, err := encode(n.State)
			if err != nil {
				return nil, fmt.Errorf("encode state of epoch %v: %w", id, err)
			}
			states[id] = b
		}
	}
	w := codec.NewWriter(256 * len(ids))
	w.Uint8(graphVersion)
	w.Vector(func(w *codec.Writer) {
		for _, id := range ids {
			n := g.nodes[id]
			w.Opaque([]byte(n.ID))
			w.Uint64(n.Number)
			writeDevice(w, n.Creator)
			w.Opaque([]byte(n.CommitEvent))
			w.Opaque([]byte(n.Parent))
			w.Opaque(n.ConfirmationTag)
			w.Vector(func(w *codec.Writer) {
				for _, m := range n.Members {
					writeDevice(w, m)
				}
			})
			w.Vector(func(w *codec.Writer) {
				for _, r := range n.Resolves {
					w.Opaque([]byte(r))
				}
			})
			writeTime(w, n.Added)
			writeTime(w, n.Superseded)
			w.Optional(n.Retained)
			if n.Retained {
				w.Opaque(states[id])
			}
		}
	})
	return w.Bytes(), nil
}

func writeDevice(w *codec.Writer, d Device) {
	w.Opaque([]byte(d.UserID))
	w.Opaque([]byte(d.DeviceID))
}

func writeTime(w *codec.Writer, t time.Time) {
	w.Optional(!t.IsZero())
	if !t.IsZero() {
		w.Uint64(uint64(t.UnixNano()))
	}
}

// Unmarshal decodes a graph, calling decode for each retained state. It
// checks the graph's invariants (identifier sizes, ordering, epoch numbers
// along parent links) and never trusts a declared length.
func Unmarshal[S any](data []byte, decode func([]byte) (S, error)) (*Graph[S], error) {
	r := codec.NewReader(data)
	if v := r.Uint8("version"); r.Err() == nil && v != graphVersion {
		r.Fail("version", invalid("unknown version %d", v))
	}
	var nodes []*Node[S]
	r.Each("nodes", func(r *codec.Reader) {
		n := readNode(r, decode)
		if r.Err() != nil {
			return
		}
		if k := len(nodes); k > 0 && strings.Compare(string(nodes[k-1].ID), string(n.ID)) >= 0 {
			r.Fail("nodes", invalid("epoch %v out of order", n.ID))
			return
		}
		nodes = append(nodes, n)
	})
	if err := r.Finish("epoch_graph"); err != nil {
		return nil, fmt.Errorf("decode epoch graph: %w", err)
	}
	g := New[S]()
	for _, n := range nodes {
		g.nodes[n.ID] = n
	}
	for _, n := range nodes {
		if p := g.nodes[n.Parent]; p != nil && p.Number+1 != n.Number {
			return nil, fmt.Errorf("decode epoch graph: %w", invalid("epoch %v: number %d on parent %d", n.ID, n.Number, p.Number))
		}
	}
	g.relink()
	return g, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidGraph}, args...)...)
}

func readNode[S any](r *codec.Reader, decode func([]byte) (S, error)) *Node[S] {
	n := &Node[S]{}
	n.ID = ID(r.Opaque("node.dmls_epoch"))
	n.Number = r.Uint64("node.number")
	n.Creator = readDevice(r, "node.creator")
	n.CommitEvent = string(r.Opaque("node.commit_event"))
	n.Parent = ID(r.Opaque("node.parent"))
	n.ConfirmationTag = r.Opaque("node.confirmation_tag")
	n.Members = []Device{}
	r.Each("node.members", func(r *codec.Reader) {
		d := readDevice(r, "node.members")
		if r.Err() != nil {
			return
		}
		if k := len(n.Members); k > 0 && compareDevices(n.Members[k-1], d) >= 0 {
			r.Fail("node.members", invalid("member %v out of order", d))
			return
		}
		n.Members = append(n.Members, d)
	})
	n.Resolves = []ID{}
	r.Each("node.resolves", func(r *codec.Reader) {
		id := ID(r.Opaque("node.resolves"))
		if r.Err() == nil {
			if err := id.check(); err != nil {
				r.Fail("node.resolves", err)
				return
			}
		}
		n.Resolves = append(n.Resolves, id)
	})
	n.Added = readTime(r, "node.added")
	n.Superseded = readTime(r, "node.superseded")
	n.Retained = r.Optional("node.state")
	var state []byte
	if n.Retained {
		state = r.Opaque("node.state")
	}
	if r.Err() != nil {
		return nil
	}
	if err := n.ID.check(); err != nil {
		r.Fail("node.dmls_epoch", err)
		return nil
	}
	if n.Parent != "" {
		if err := n.Parent.check(); err != nil {
			r.Fail("node.parent", err)
			return nil
		}
		if n.Parent == n.ID || n.Number == 0 {
			r.Fail("node.parent", invalid("epoch %v cannot have parent %v", n.ID, n.Parent))
			return nil
		}
	}
	if len(n.ConfirmationTag) > maxIDLen {
		r.Fail("node.confirmation_tag", invalid("%d bytes", len(n.ConfirmationTag)))
		return nil
	}
	if slices.Contains(n.Resolves, n.ID) {
		r.Fail("node.resolves", invalid("epoch %v resolves itself", n.ID))
		return nil
	}
	if n.Retained {
		s, err := decode(state)
		if err != nil {
			r.Fail("node.state", err)
			return nil
		}
		n.State = s
	}
	return n
}

func readDevice(r *codec.Reader, field string) Device {
	return Device{UserID: string(r.Opaque(field + ".user_id")), DeviceID: string(r.Opaque(field + ".device_id"))}
}

func readTime(r *codec.Reader, field string) time.Time {
	if !r.Optional(field) {
		return time.Time{}
	}
	ns := r.Uint64(field)
	if r.Err() != nil {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).UTC()
}
