package epochs

import (
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
)

// A Member is stored in parts (DESIGN §4, §5): its metadata, small and
// rewritten when the graph changes, and per retained epoch the parts of
// its shared state and the private state of each of our devices in it,
// each written when it changes (Flush) and read on first use (LoadMember).
//
// metadataVersion is the first byte of the metadata. Version 4:
//
//	struct { opaque sha256[32]; opaque base<V>; } SeenCommit;
//	struct {
//	    opaque epoch<V>; opaque base<V>; uint64 number;
//	    opaque resolves<V><V>; Device creator; opaque event_id<V>;
//	    opaque confirmation_tag<V>;
//	} KnownCommit;
//	struct {
//	    uint8 form;
//	    select (form) {
//	    case 0: Device holders<V>;       // ascending, unique
//	    case 1: opaque members_held<V>;  // bitmap over the epoch's members
//	    };
//	} HeldEpoch;                          // held.go
//	struct { opaque epoch<V>; opaque base<V>; } RefusedEpoch;
//	struct {
//	    uint8 version = 4;
//	    uint64 max_epochs; uint64 max_age_nanos;
//	    uint64 linger_nanos;      // absent in versions 1 and 2
//	    opaque graph<V>;          // EpochGraph, each state a HeldEpoch
//	    SeenCommit seen<V>;       // ascending by sha256
//	    KnownCommit known<V>;     // ascending by epoch
//	    RefusedEpoch refused<V>;  // ascending by epoch
//	} DMLSMemberMetadata;
//
// Version 3 is version 4 with each HeldEpoch a bare holders<V> (form 0);
// version 2 is version 3 without linger_nanos, read as a linger of zero;
// version 1 is version 2 without refused, and is read as having refused
// nothing. The metadata holds no secrets. A previous layout of Member
// (one blob with whole group states, format 1) was never stored by the
// service and is not read.
const metadataVersion = 4

// memberVersion is the first byte of MarshalBinary's single-value form:
//
//	struct { Device device; opaque private<V>; } StoredPrivate;
//	struct {
//	    opaque epoch<V>;
//	    opaque static<V>; opaque init_state<V>; opaque secret_tree<V>;
//	    opaque commit<V>;                      // empty for the first epoch
//	    StoredPrivate privates<V>;             // ascending by device
//	} StoredEpochParts;
//	struct {
//	    uint8 version = 2;
//	    opaque metadata<V>;                    // DMLSMemberMetadata
//	    StoredEpochParts epochs<V>;            // ascending by epoch
//	} DMLSMember;
//
// It holds every retained epoch's secrets: store it as such.
const memberVersion = 2

// marshalMetadata encodes the Member's metadata.
func (m *Member) marshalMetadata() ([]byte, error) { return m.marshalMetadataAs(metadataVersion) }

// marshalMetadataAs encodes the Member's metadata in the given version, 3
// or 4 (the older one for tests of reading it).
func (m *Member) marshalMetadataAs(version uint8) ([]byte, error) {
	members := make(map[*EpochState][]Device, len(m.graph.nodes))
	for _, n := range m.graph.nodes {
		if n.State != nil {
			members[n.State] = n.Members
		}
	}
	gb, err := m.graph.MarshalBinary(func(st *EpochState) ([]byte, error) {
		w := codec.NewWriter(len(members[st])/8 + 8)
		if version >= 4 {
			writeHeld(w, st.holders, members[st])
		} else {
			writeDevices(w, st.holders)
		}
		return w.Bytes(), nil
	})
	if err != nil {
		return nil, err
	}
	w := codec.NewWriter(len(gb) + 64*len(m.seen) + 256*len(m.known) + 32)
	w.Uint8(version)
	w.Uint64(uint64(max(m.Policy.MaxEpochs, 0)))
	w.Uint64(uint64(max(m.Policy.MaxAge, 0)))
	w.Uint64(uint64(max(m.Policy.Linger, 0)))
	w.Opaque(gb)
	seen := make([][32]byte, 0, len(m.seen))
	for h := range m.seen {
		seen = append(seen, h)
	}
	slices.SortFunc(seen, func(a, b [32]byte) int { return slices.Compare(a[:], b[:]) })
	w.Vector(func(w *codec.Writer) {
		for _, h := range seen {
			w.Raw(h[:])
			w.Opaque([]byte(m.seen[h]))
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
			w.Opaque([]byte(c.Epoch))
			w.Opaque([]byte(c.Base))
			w.Uint64(c.Number)
			w.Vector(func(w *codec.Writer) {
				for _, r := range c.Resolves {
					w.Opaque([]byte(r))
				}
			})
			writeDevice(w, c.Creator)
			w.Opaque([]byte(c.EventID))
			w.Opaque(c.ConfirmationTag)
		}
	})
	refused := make([]ID, 0, len(m.refused))
	for id := range m.refused {
		refused = append(refused, id)
	}
	sortedIDs(refused)
	w.Vector(func(w *codec.Writer) {
		for _, id := range refused {
			w.Opaque([]byte(id))
			w.Opaque([]byte(m.refused[id]))
		}
	})
	return w.Bytes(), nil
}

// LoadMember decodes a Member's metadata (Changes.Metadata); load gives
// each retained epoch's stored parts on first use. cfg is the group
// configuration of its states (it is not stored).
func LoadMember(metadata []byte, cfg group.Config, load Loader) (*Member, error) {
	m := NewJoinedMember(cfg, Policy{})
	r := codec.NewReader(metadata)
	version := r.Uint8("member.version")
	if r.Err() == nil && (version < 1 || version > metadataVersion) {
		r.Fail("member.version", invalid("member metadata format %d", version))
	}
	maxEpochs := r.Uint64("member.max_epochs")
	maxAge := r.Uint64("member.max_age")
	var linger uint64
	if version >= 3 {
		linger = r.Uint64("member.linger")
	}
	if r.Err() == nil && (maxEpochs > 1<<31 || maxAge > 1<<62 || linger > 1<<62) {
		r.Fail("member.policy", codec.ErrInvalidValue)
	}
	m.Policy = Policy{MaxEpochs: int(maxEpochs), MaxAge: time.Duration(maxAge), Linger: time.Duration(linger)}
	gb := r.Opaque("member.graph")
	var last []byte
	r.Each("member.seen", func(r *codec.Reader) {
		h := r.Fixed("member.seen.sha256", 32)
		base := ID(r.Opaque("member.seen.base"))
		if r.Err() != nil {
			return
		}
		if base.check() != nil || (last != nil && slices.Compare(last, h) >= 0) {
			r.Fail("member.seen", invalid("seen commit out of order or without base"))
			return
		}
		last = h
		m.seen[[32]byte(h)] = base
	})
	var lastKnown ID
	r.Each("member.known", func(r *codec.Reader) {
		var c knownCommit
		c.Epoch = ID(r.Opaque("known.epoch"))
		c.Base = ID(r.Opaque("known.base"))
		c.Number = r.Uint64("known.number")
		r.Each("known.resolves", func(r *codec.Reader) { c.Resolves = append(c.Resolves, ID(r.Opaque("known.resolves.epoch"))) })
		c.Creator = readDevice(r, "known.creator")
		c.EventID = string(r.Opaque("known.event_id"))
		c.ConfirmationTag = r.Opaque("known.confirmation_tag")
		if r.Err() != nil {
			return
		}
		if c.Epoch.check() != nil || c.Base.check() != nil || c.Epoch <= lastKnown || len(c.ConfirmationTag) > maxIDLen {
			r.Fail("known.epoch", invalid("known commit %v", c.Epoch))
			return
		}
		lastKnown = c.Epoch
		m.known[c.Epoch] = c
	})
	if version >= 2 {
		var lastRefused ID
		r.Each("member.refused", func(r *codec.Reader) {
			id := ID(r.Opaque("refused.epoch"))
			base := ID(r.Opaque("refused.base"))
			if r.Err() != nil {
				return
			}
			if id.check() != nil || base.check() != nil || id <= lastRefused {
				r.Fail("member.refused", invalid("refused epoch %v", id))
				return
			}
			lastRefused = id
			m.refused[id] = base
		})
	}
	if err := r.Finish("member"); err != nil {
		return nil, fmt.Errorf("decode member: %w", err)
	}
	// Resolved once the members are known: a bitmap of members, or a list
	// that must not be all members (the bitmap is then the encoding).
	bitmaps, listed := map[*EpochState][]byte{}, map[*EpochState]bool{}
	g, err := Unmarshal(gb, func(b []byte) (*EpochState, error) {
		r := codec.NewReader(b)
		var holders []Device
		var bits []byte
		if version >= 4 {
			holders, bits = readHeld(r)
		} else {
			holders = readDevices(r, "held.holders")
		}
		if err := r.Finish("held"); err != nil {
			return nil, err
		}
		st := &EpochState{holders: holders, stored: true}
		switch {
		case bits != nil:
			bitmaps[st] = bits
		case version >= 4:
			listed[st] = true
		}
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	for _, n := range g.nodes {
		if bits, ok := bitmaps[n.State]; ok {
			if n.State.holders, err = membersHeld(bits, n.Members); err != nil {
				return nil, fmt.Errorf("decode member: epoch %v: %w", n.ID, err)
			}
		}
		if listed[n.State] {
			if _, members := heldBits(n.State.holders, n.Members); members {
				return nil, fmt.Errorf("decode member: epoch %v: %w", n.ID, invalid("holders listed, though members"))
			}
		}
	}
	m.graph = g
	m.load = load
	m.flushed = slices.Clone(metadata)
	return m, nil
}

// MarshalBinary encodes the whole Member, loading every retained epoch:
// its metadata and every epoch's parts, as Flush would give them for a
// Member never stored. It is the single-value form for tests and small
// deployments; the service stores the parts apart (Flush).
func (m *Member) MarshalBinary() ([]byte, error) {
	meta, err := m.marshalMetadata()
	if err != nil {
		return nil, err
	}
	ids := make([]ID, 0, len(m.graph.nodes))
	for id, n := range m.graph.nodes {
		if n.Retained {
			ids = append(ids, id)
		}
	}
	w := codec.NewWriter(len(meta) + 1024)
	w.Uint8(memberVersion)
	w.Opaque(meta)
	var werr error
	w.Vector(func(w *codec.Writer) {
		for _, id := range sortedIDs(ids) {
			st, err := m.state(id)
			if err != nil {
				werr = err
				return
			}
			all := *st
			all.stored, all.added = false, nil
			ec, err := all.changes(id)
			if err != nil {
				werr = err
				return
			}
			w.Opaque([]byte(id))
			w.Opaque(ec.Static)
			w.Opaque(ec.InitState)
			w.Opaque(ec.SecretTree)
			w.Opaque(ec.Commit)
			w.Vector(func(w *codec.Writer) {
				for _, d := range st.holders {
					writeDevice(w, d)
					w.Opaque(ec.Privates[d])
				}
			})
		}
	})
	if werr != nil {
		return nil, werr
	}
	return w.Bytes(), nil
}

// UnmarshalMember decodes a Member encoded by MarshalBinary, loading and
// checking every retained epoch's state; cfg is the group configuration
// its states use (it is not stored).
func UnmarshalMember(data []byte, cfg group.Config) (*Member, error) {
	r := codec.NewReader(data)
	if v := r.Uint8("member.version"); r.Err() == nil && v != memberVersion {
		r.Fail("member.version", invalid("member format %d", v))
	}
	meta := r.Opaque("member.metadata")
	parts := map[ID]*StoredEpoch{}
	r.Each("member.epochs", func(r *codec.Reader) {
		id := ID(r.Opaque("epoch.id"))
		se := &StoredEpoch{
			Static:     r.Opaque("epoch.static"),
			InitState:  r.Opaque("epoch.init_state"),
			SecretTree: r.Opaque("epoch.secret_tree"),
			Commit:     r.Opaque("epoch.commit"),
			Privates:   map[Device][]byte{},
		}
		if len(se.Commit) == 0 {
			se.Commit = nil
		}
		r.Each("epoch.privates", func(r *codec.Reader) {
			d := readDevice(r, "epoch.privates.device")
			se.Privates[d] = r.Opaque("epoch.privates.private")
		})
		if r.Err() == nil {
			parts[id] = se
		}
	})
	if err := r.Finish("member"); err != nil {
		return nil, fmt.Errorf("decode member: %w", err)
	}
	m, err := LoadMember(meta, cfg, func(id ID) (*StoredEpoch, error) {
		if p, ok := parts[id]; ok {
			return p, nil
		}
		return nil, fmt.Errorf("%w: no parts for epoch %v", ErrInvalidGraph, id)
	})
	if err != nil {
		return nil, err
	}
	for id, n := range m.graph.nodes {
		if n.Retained {
			if _, err := m.state(id); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
