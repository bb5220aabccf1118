package epochs

import (
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
)

// memberVersion is the first byte of an encoded Member.
//
// Version 1:
//
//	struct { opaque sha256[32]; } SeenCommit;
//	struct {
//	    opaque message<V>; opaque base<V>; opaque epoch<V>; uint64 number;
//	    opaque resolves<V><V>; Device creator; opaque event_id<V>;
//	} KnownCommit;
//	struct {
//	    uint8 version = 1;
//	    Device self;
//	    uint64 max_epochs; uint64 max_age_nanos;
//	    opaque graph<V>;          // EpochGraph, states by group.Group.MarshalBinary
//	    SeenCommit seen<V>;       // ascending
//	    KnownCommit known<V>;     // ascending by epoch
//	} DMLSMember;
//
// It holds every retained epoch's secrets: store it as such.
const memberVersion = 1

// MarshalBinary encodes the member's whole state.
func (m *Member) MarshalBinary() ([]byte, error) {
	gb, err := m.graph.MarshalBinary(func(g *group.Group) ([]byte, error) { return g.MarshalBinary() })
	if err != nil {
		return nil, err
	}
	w := codec.NewWriter(len(gb) + 64*len(m.seen) + 512*len(m.known))
	w.Uint8(memberVersion)
	writeDevice(w, m.Self)
	w.Uint64(uint64(max(m.Policy.MaxEpochs, 0)))
	w.Uint64(uint64(max(m.Policy.MaxAge, 0)))
	w.Opaque(gb)
	seen := make([][32]byte, 0, len(m.seen))
	for h := range m.seen {
		seen = append(seen, h)
	}
	slices.SortFunc(seen, func(a, b [32]byte) int { return slices.Compare(a[:], b[:]) })
	w.Vector(func(w *codec.Writer) {
		for _, h := range seen {
			w.Raw(h[:])
		}
	})
	ids := make([]ID, 0, len(m.known))
	for id := range m.known {
		ids = append(ids, id)
	}
	sortedIDs(ids)
	w.Vector(func(w *codec.Writer) {
		for _, id := range ids {
			c := m.known[id]
			w.Opaque(c.Message)
			w.Opaque([]byte(c.Base))
			w.Opaque([]byte(c.Epoch))
			w.Uint64(c.Number)
			w.Vector(func(w *codec.Writer) {
				for _, r := range c.Resolves {
					w.Opaque([]byte(r))
				}
			})
			writeDevice(w, c.Creator)
			w.Opaque([]byte(c.EventID))
		}
	})
	return w.Bytes(), nil
}

// UnmarshalMember decodes a Member; cfg is the group configuration its
// states use (it is not stored).
func UnmarshalMember(data []byte, cfg group.Config) (*Member, error) {
	r := codec.NewReader(data)
	if v := r.Uint8("member.version"); r.Err() == nil && v != memberVersion {
		return nil, fmt.Errorf("%w: member format %d", ErrInvalidGraph, v)
	}
	self := readDevice(r, "member.self")
	maxEpochs := r.Uint64("member.max_epochs")
	maxAge := r.Uint64("member.max_age")
	gb := r.Opaque("member.graph")
	m := newMember(self, cfg, Policy{})
	if maxEpochs > 1<<31 || maxAge > 1<<62 {
		r.Fail("member.policy", codec.ErrInvalidValue)
	}
	m.Policy = Policy{MaxEpochs: int(maxEpochs), MaxAge: durationOf(maxAge)}
	r.Each("member.seen", func(r *codec.Reader) {
		var h [32]byte
		copy(h[:], r.Fixed("member.seen.sha256", 32))
		m.seen[h] = true
	})
	r.Each("member.known", func(r *codec.Reader) {
		var c Commit
		c.Message = r.Opaque("known.message")
		c.Base = ID(r.Opaque("known.base"))
		c.Epoch = ID(r.Opaque("known.epoch"))
		c.Number = r.Uint64("known.number")
		r.Each("known.resolves", func(r *codec.Reader) { c.Resolves = append(c.Resolves, ID(r.Opaque("known.resolves.epoch"))) })
		c.Creator = readDevice(r, "known.creator")
		c.EventID = string(r.Opaque("known.event_id"))
		if r.Err() == nil {
			if c.Epoch.check() != nil || c.Base.check() != nil {
				r.Fail("known.epoch", ErrInvalidEpoch)
				return
			}
			m.known[c.Epoch] = c
		}
	})
	if err := r.Finish("member"); err != nil {
		return nil, err
	}
	g, err := Unmarshal(gb, func(b []byte) (*group.Group, error) { return group.UnmarshalGroup(b, m.cfg) })
	if err != nil {
		return nil, err
	}
	m.graph = g
	return m, nil
}

func durationOf(nanos uint64) time.Duration { return time.Duration(nanos) }
