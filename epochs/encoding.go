package epochs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// graphVersion is the first byte of an encoded Graph. Bump it whenever the
// layout below changes, and keep decoding the old layouts.
//
// Version 5, in the TLS presentation language:
//
//	struct { opaque user_id<V>; opaque device_id<V>; } Device;
//	struct { uint64 unix_nanos; } Time;        // optional<Time>: absent = zero
//	enum { none(0), all(1), changes(2) } MembersForm;
//	struct {
//	    MembersForm form;
//	    select (form) {
//	        case none:    struct {};         // the epoch is not retained
//	        case all:     Device members<V>;  // ascending, unique
//	        case changes: Device added<V>;    // ascending, unique
//	                      Device removed<V>;  // ascending, unique
//	    };
//	} EpochMembers;
//	struct {
//	    opaque dmls_epoch<V>;                  // 1..64 bytes
//	    uint64 number;
//	    Device creator;
//	    opaque commit_event<V>;                // empty while unknown
//	    opaque parent<V>;                      // empty for a root
//	    opaque confirmation_tag<V>;
//	    EpochMembers members;
//	    opaque resolves<V><V>;                 // dmls_epoch values
//	    optional<Time> added;
//	    optional<Time> superseded;
//	    optional<opaque state<V>> state;       // present iff retained
//	    select (retained) {                    // state present
//	        case true:  opaque spoke<V>;       // empty, or a bit per member
//	                    uint8 echoed;          // 0 or 1
//	                    optional<Time> spoken;
//	        case false: struct {};
//	    };
//	} EpochNode;
//	struct {
//	    uint8 version = 5;
//	    EpochNode nodes<V>;                    // ascending by dmls_epoch
//	} EpochGraph;
//
// A retained epoch whose parent is retained stores its members as the
// changes from the parent's (its commit's adds and removes), the others
// in full, so that a graph of many epochs of a large group stores each
// member list about once. Epochs that are not retained store none: only
// retained epochs' members are used. Version 1 stored every node's
// members in full, as Device members<V> in place of EpochMembers; it is
// still read.
//
// spoke is the retained epoch's Spoke as a bit string over its members in
// ascending order, bit i (the low bit of byte i/8 first) set iff member i
// sent a message in it: ceil(members/8) bytes, unused bits zero, or empty
// when none did. Versions 1 and 2 had no spoke and are read as having
// none. echoed is the retained epoch's Echoed; version 3 had none and is
// read as 0. spoken is the retained epoch's Spoken as last
// stamped (Member.Retain stamps before the Member flushes); version 4 had
// none and is read as absent.
//
// The state is whatever the caller's encoder returns; the whole encoding
// must be stored as securely as the states themselves.
const (
	graphVersion1 = 1
	graphVersion2 = 2
	graphVersion3 = 3
	graphVersion4 = 4
	graphVersion  = 5
)

const (
	membersNone    = 0
	membersAll     = 1
	membersChanges = 2
)

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
			g.writeMembers(w, n)
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
				w.Opaque(spokeBits(n.Members, n.Spoke))
				w.Uint8(boolByte(n.Echoed))
				writeTime(w, n.Spoken)
			}
		}
	})
	return w.Bytes(), nil
}

// writeMembers writes n's EpochMembers.
func (g *Graph[S]) writeMembers(w *codec.Writer, n *Node[S]) {
	switch p := g.nodes[n.Parent]; {
	case !n.Retained:
		w.Uint8(membersNone)
	case p != nil && p.Retained:
		w.Uint8(membersChanges)
		writeDevices(w, minus(n.Members, p.Members))
		writeDevices(w, minus(p.Members, n.Members))
	default:
		w.Uint8(membersAll)
		writeDevices(w, n.Members)
	}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// spokeBits encodes spoke, a subset of members (both ascending), as
// EpochNode.spoke: empty if spoke is.
func spokeBits(members, spoke []Device) []byte {
	if len(spoke) == 0 {
		return []byte{}
	}
	bits := make([]byte, (len(members)+7)/8)
	for _, d := range spoke {
		if i, found := slices.BinarySearchFunc(members, d, Device.Compare); found {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	return bits
}

// spokeDevices decodes EpochNode.spoke over members.
func spokeDevices(members []Device, bits []byte) ([]Device, error) {
	if len(bits) == 0 {
		return nil, nil
	}
	if len(bits) != (len(members)+7)/8 {
		return nil, invalid("spoke of %d bytes for %d members", len(bits), len(members))
	}
	var out []Device
	for i := range len(bits) * 8 {
		if bits[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		if i >= len(members) {
			return nil, invalid("spoke names member %d of %d", i, len(members))
		}
		out = append(out, members[i])
	}
	return out, nil
}

func writeDevices(w *codec.Writer, ds []Device) {
	w.Vector(func(w *codec.Writer) {
		for _, d := range ds {
			writeDevice(w, d)
		}
	})
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
// along parent links, member changes against the parent's members) and
// never trusts a declared length.
func Unmarshal[S any](data []byte, decode func([]byte) (S, error)) (*Graph[S], error) {
	r := codec.NewReader(data)
	v := r.Uint8("version")
	if r.Err() == nil && (v < graphVersion1 || v > graphVersion) {
		r.Fail("version", invalid("unknown version %d", v))
	}
	var nodes []*decodedNode[S]
	r.Each("nodes", func(r *codec.Reader) {
		n := readNode(r, v, decode)
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
		g.nodes[n.ID] = &n.Node
	}
	for _, n := range nodes {
		if p := g.nodes[n.Parent]; p != nil && p.Number+1 != n.Number {
			return nil, fmt.Errorf("decode epoch graph: %w", invalid("epoch %v: number %d on parent %d", n.ID, n.Number, p.Number))
		}
	}
	// Member changes apply to the parent's members, which have a lower
	// number and so are complete when they are needed.
	slices.SortFunc(nodes, func(a, b *decodedNode[S]) int { return cmp.Compare(a.Number, b.Number) })
	for _, n := range nodes {
		if n.form != membersChanges {
			continue
		}
		p := g.nodes[n.Parent]
		if p == nil || !p.Retained {
			return nil, fmt.Errorf("decode epoch graph: %w", invalid("epoch %v: member changes from a parent not retained", n.ID))
		}
		if len(minus(n.removed, p.Members)) > 0 || len(minus(n.added, minus(n.added, p.Members))) > 0 {
			return nil, fmt.Errorf("decode epoch graph: %w", invalid("epoch %v: member changes do not fit the parent", n.ID))
		}
		n.Members = unionSorted(minus(p.Members, n.removed), n.added)
	}
	for _, n := range nodes {
		spoke, err := spokeDevices(n.Members, n.spoke)
		if err != nil {
			return nil, fmt.Errorf("decode epoch graph: epoch %v: %w", n.ID, err)
		}
		n.Spoke = spoke
	}
	g.relink()
	return g, nil
}

// decodedNode is a node as read, before its member changes are applied.
type decodedNode[S any] struct {
	Node[S]
	form           uint8
	added, removed []Device
	spoke          []byte // EpochNode.spoke, decoded once Members are known
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidGraph}, args...)...)
}

func readNode[S any](r *codec.Reader, version uint8, decode func([]byte) (S, error)) *decodedNode[S] {
	d := &decodedNode[S]{}
	n := &d.Node
	n.ID = ID(r.Opaque("node.dmls_epoch"))
	n.Number = r.Uint64("node.number")
	n.Creator = readDevice(r, "node.creator")
	n.CommitEvent = string(r.Opaque("node.commit_event"))
	n.Parent = ID(r.Opaque("node.parent"))
	n.ConfirmationTag = r.Opaque("node.confirmation_tag")
	d.form = membersAll
	if version != graphVersion1 {
		d.form = r.Uint8("node.members.form")
	}
	switch d.form {
	case membersNone:
	case membersAll:
		n.Members = readDevices(r, "node.members")
	case membersChanges:
		d.added = readDevices(r, "node.members.added")
		d.removed = readDevices(r, "node.members.removed")
	default:
		r.Fail("node.members.form", invalid("members form %d", d.form))
	}
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
		if version >= graphVersion3 {
			d.spoke = r.Opaque("node.spoke")
		}
		if version >= graphVersion4 {
			switch b := r.Uint8("node.echoed"); b {
			case 0:
			case 1:
				n.Echoed = true
			default:
				r.Fail("node.echoed", invalid("echoed %d", b))
			}
		}
		if version >= graphVersion {
			n.Spoken = readTime(r, "node.spoken")
		}
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
	if (d.form == membersNone) == n.Retained && version != graphVersion1 {
		r.Fail("node.members.form", invalid("epoch %v: members form %d for retained %v", n.ID, d.form, n.Retained))
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
	return d
}

// readDevices reads Device devices<V>, which must be ascending and unique.
func readDevices(r *codec.Reader, field string) []Device {
	out := []Device{}
	// A large room's lists hold thousands of devices (every load of the
	// room decodes each retained epoch's): field names made once, and a
	// user's devices, neighbours in the sorted list, share its user ID.
	userField, deviceField := field+".user_id", field+".device_id"
	var d Device
	r.Each(field, func(r *codec.Reader) {
		d = Device{UserID: r.OpaqueString(userField, d.UserID), DeviceID: r.OpaqueString(deviceField, "")}
		if r.Err() != nil {
			return
		}
		if k := len(out); k > 0 && out[k-1].Compare(d) >= 0 {
			r.Fail(field, invalid("member %v out of order", d))
			return
		}
		out = append(out, d)
	})
	return out
}

func readDevice(r *codec.Reader, field string) Device {
	return Device{UserID: r.OpaqueString(field+".user_id", ""), DeviceID: r.OpaqueString(field+".device_id", "")}
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
