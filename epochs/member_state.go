package epochs

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

type treeLeaf = treemath.LeafIndex

// EpochState is what a Member holds in one retained epoch: the group's
// shared state and the private state of each of our devices in it (its
// holders). The holders are part of the graph's metadata; the states are
// loaded on first use when the Member was loaded from storage.
type EpochState struct {
	holders []Device // sorted
	pub     *group.Public
	// The stored private states wait in raw when the epoch is loaded
	// (Member.shared), to be decoded and checked on first use: all of
	// them by Member.state, one device's by Member.Group. privs holds
	// those decoded; raw is nil once none waits.
	privs map[Device]*group.Private
	raw   map[Device][]byte
	// open, if set, opens a raw private state before it is decoded
	// (StoredEpoch.Open).
	open func(Device, []byte) ([]byte, error)
	// commit is the message of the commit that made the epoch (nil for
	// the group's first epoch): devices of ours that enter the parent
	// epoch later follow into this one with it (Member.follow).
	commit []byte
	// commitLent: commit was taken later from a commit event (an epoch
	// entered by Welcome has none) and is not stored yet.
	commitLent bool
	// commitGone: the parent went and commit with it (Member.Flush); a
	// state loaded later finds none stored.
	commitGone bool

	// What the caller has stored (see Member.Flush): whether the epoch's
	// parts were written, the Public's change counts at the last write
	// or load, and the holders added and removed since.
	stored         bool
	initAt, treeAt uint64
	added, removed []Device
}

func newEpochState(pub *group.Public, privs map[Device]*group.Private, commit []byte) *EpochState {
	st := &EpochState{pub: pub, privs: privs, commit: bytes.Clone(commit)}
	for d := range privs {
		st.holders = append(st.holders, d)
	}
	st.holders = sortedDevices(st.holders)
	return st
}

// Holders returns our devices that hold a private state in the epoch, in
// order.
func (st *EpochState) Holders() []Device { return slices.Clone(st.holders) }

// Loaded reports whether the epoch's states are in memory.
func (st *EpochState) Loaded() bool { return st.pub != nil }

// add gives our device d the private state p in the loaded epoch. The
// holders stay sorted by insertion, not by sorting them again: a remote
// commit's Welcome can join thousands of our devices to one epoch.
func (st *EpochState) add(d Device, p *group.Private) {
	st.privs[d] = p
	if i, found := slices.BinarySearchFunc(st.holders, d, Device.Compare); !found {
		st.holders = slices.Insert(st.holders, i, d)
	}
	st.removed = slices.DeleteFunc(st.removed, func(x Device) bool { return x == d })
	st.added = append(st.added, d)
}

// remove forgets our device d's private state, loaded or not.
func (st *EpochState) remove(d Device) {
	delete(st.privs, d)
	if b, ok := st.raw[d]; ok {
		clear(b)
		delete(st.raw, d)
	}
	st.holders = slices.DeleteFunc(st.holders, func(x Device) bool { return x == d })
	if i := slices.Index(st.added, d); i >= 0 {
		st.added = slices.Delete(st.added, i, i+1)
	} else {
		st.removed = append(st.removed, d)
	}
}

// StoredEpoch is what the caller stored of one retained epoch, as Flush
// gave it: the three parts of the group's shared state
// (group.Public.MarshalStatic, MarshalInitState, MarshalSecretTree), the
// commit that made the epoch, and the private state of each of our
// devices in the epoch (group.Private.MarshalBinary). Privates of devices
// the metadata does not name as holders are ignored.
//
// Decoded, if set, stands for Static: the caller decoded it already
// (group.UnmarshalStatic), typically once for many loads of the epoch,
// since the static part never changes and is most of a large group's
// decoding cost.
//
// Open, if set, says that Privates are as the caller stored them (sealed)
// and opens one when the Member first needs that device's private state:
// sending as one of 10,000 devices of ours needs one, and opening all of
// them was a quarter of a send's CPU. A private state that does not open
// fails only what needs it.
type StoredEpoch struct {
	Static, InitState, SecretTree []byte
	Decoded                       *group.Static
	Commit                        []byte
	Privates                      map[Device][]byte
	Open                          func(d Device, stored []byte) ([]byte, error)
}

// Loader returns the stored parts of a retained epoch. A Member loaded by
// LoadMember calls it once per epoch, on the first use of the epoch's
// state (applying a commit on it, decrypting in it, committing, joining
// it); retention and base selection need only the metadata.
type Loader func(ID) (*StoredEpoch, error)

// state returns the state of a retained epoch with our devices' private
// states, loading and checking them if needed.
func (m *Member) state(id ID) (*EpochState, error) {
	st, err := m.shared(id)
	if err != nil {
		return nil, err
	}
	if st.raw != nil {
		if err := st.decode(st.holders); err != nil {
			return nil, fmt.Errorf("load epoch %v: %w: %w", id, ErrLoad, err)
		}
		st.clearRaw()
	}
	return st, nil
}

// decode decodes and checks the private states of ds that still wait in
// raw. Each costs an Ed25519 base multiplication (the signature key's
// public half) and an X25519 one (the leaf key's check): in a room of
// 10,000 of our devices, decoding all of them for a message one device
// sent took 0.7 s of CPU a message, when every key on the path was
// checked too.
func (st *EpochState) decode(ds []Device) error {
	if st.privs == nil {
		st.privs = make(map[Device]*group.Private, len(st.holders))
	}
	for _, d := range ds {
		if st.privs[d] != nil {
			continue
		}
		b, ok := st.raw[d]
		if !ok {
			return fmt.Errorf("%w: no private state of %v", ErrInvalidGraph, d)
		}
		plain := b
		if st.open != nil {
			var err error
			if plain, err = st.open(d, b); err != nil {
				return fmt.Errorf("private state of %v: %w", d, err)
			}
		}
		p, err := decodePrivate(st.pub, d, plain)
		if st.open != nil {
			clear(plain) // the opened copy; raw keeps the sealed one
		}
		if err != nil {
			return err
		}
		st.privs[d] = p
		clear(b)
		delete(st.raw, d)
	}
	return nil
}

// shared returns the state of a retained epoch, loading it if needed, but
// leaves our devices' private states undecoded: decrypting a message
// needs none of them, and decoding one derives every HPKE public key on
// its path and the signature key's (a third of the service's CPU when it
// did so for every message received).
func (m *Member) shared(id ID) (*EpochState, error) {
	n := m.graph.nodes[id]
	switch {
	case n == nil:
		return nil, fmt.Errorf("%w: %v", ErrUnknownEpoch, id)
	case !n.Retained && n.Added.IsZero():
		return nil, fmt.Errorf("%w: %v known only from history", ErrUnknownEpoch, id)
	case !n.Retained:
		return nil, fmt.Errorf("%w: %v", ErrParentNotRetained, id)
	}
	st := n.State
	if st.pub != nil {
		return st, nil
	}
	if m.load == nil {
		return nil, fmt.Errorf("epochs: state of epoch %v not loaded and no loader", id)
	}
	parts, err := m.load(id)
	if err != nil {
		return nil, fmt.Errorf("load epoch %v: %w: %w", id, ErrLoad, err)
	}
	pub, err := decodeShared(id, parts)
	if err != nil {
		return nil, fmt.Errorf("load epoch %v: %w: %w", id, ErrLoad, err)
	}
	st.raw = make(map[Device][]byte, len(st.holders))
	for _, d := range st.holders {
		b, ok := parts.Privates[d]
		if !ok {
			pub.Destroy()
			return nil, fmt.Errorf("load epoch %v: %w: %w: no private state of %v", id, ErrLoad, ErrInvalidGraph, d)
		}
		st.raw[d] = bytes.Clone(b) // ours to zero: the caller may keep b
	}
	st.open = parts.Open
	st.pub = pub
	if !st.commitGone {
		st.commit = bytes.Clone(parts.Commit)
	}
	st.initAt, st.treeAt = pub.Changes()
	return st, nil
}

// wipe zeroes the epoch's secrets: the decoded state, if loaded, and the
// undecoded copies. Dropping, withdrawing and destroying share it.
func (st *EpochState) wipe() {
	if st.pub != nil {
		st.pub.Destroy()
	}
	st.clearRaw()
}

// clearRaw zeroes and forgets the undecoded private states.
func (st *EpochState) clearRaw() {
	for _, b := range st.raw {
		clear(b)
	}
	st.raw = nil
}

// decodeShared decodes and checks the stored shared state of epoch id.
func decodeShared(id ID, parts *StoredEpoch) (*group.Public, error) {
	if parts == nil {
		return nil, fmt.Errorf("%w: no stored parts", ErrInvalidGraph)
	}
	static := parts.Decoded
	if static == nil {
		var err error
		if static, err = group.UnmarshalStatic(parts.Static); err != nil {
			return nil, err
		}
		defer static.Destroy()
	}
	pub, err := static.Public(parts.InitState, parts.SecretTree)
	if err != nil {
		return nil, err
	}
	if ID(pub.EpochID()) != id {
		pub.Destroy()
		return nil, fmt.Errorf("%w: stored parts of epoch %v", ErrInvalidGraph, ID(pub.EpochID()))
	}
	return pub, nil
}

// decodePrivate decodes device d's stored private state and checks it
// against pub's tree as a stored one (group.Public.CheckStoredPrivate):
// the caller's Loader gives what it sealed to the epoch and device, and a
// Member checked each private state when it made it.
func decodePrivate(pub *group.Public, d Device, b []byte) (*group.Private, error) {
	p, err := group.UnmarshalPrivate(b)
	if err != nil {
		return nil, fmt.Errorf("private state of %v: %w", d, err)
	}
	if err := pub.CheckStoredPrivate(p); err != nil {
		return nil, fmt.Errorf("private state of %v: %w", d, err)
	}
	if leafDevice(pub, uint32(p.Leaf())) != d {
		return nil, fmt.Errorf("%w: private state of %v is at another device's leaf", ErrInvalidGraph, d)
	}
	return p, nil
}

// Changes is what changed in a Member since the last Flush (or since it
// was loaded): exactly what the caller must write so that LoadMember
// gives the Member back.
type Changes struct {
	// Metadata is the Member's new metadata (graph, holders, policy,
	// commits kept), or nil if unchanged. It is small: it holds no
	// secrets' worth of group state, and a retained epoch whose parent is
	// retained stores its member list as changes from the parent's.
	Metadata []byte
	// Epochs lists, in ID order, the retained epochs with parts to write.
	Epochs []EpochChanges
	// Dropped lists the stored epochs whose states were dropped
	// (retention, or the last of our devices removed from them): delete
	// their parts and private states. Apply it before Epochs: an epoch
	// dropped and then joined again by Welcome is in both.
	Dropped []ID
	// CommitsUnneeded lists stored epochs whose parent was dropped: their
	// stored Commit is needed no more (a device of ours follows with it
	// only from the parent) and may be cleared. Apply it after Epochs.
	CommitsUnneeded []ID
}

// EpochChanges are the parts of one epoch to write; nil means unchanged.
type EpochChanges struct {
	Epoch ID
	// Static, InitState and SecretTree are the shared state's parts.
	// A new epoch has all three; afterwards, processing or making a
	// commit on the epoch changes the InitState (its PRF is punctured),
	// and each message sent or read in it the SecretTree. Static never
	// changes.
	Static, InitState, SecretTree []byte
	// Commit is the message of the commit that made a new epoch (nil for
	// the group's first epoch, and once written), or the one lent later
	// to an epoch entered by Welcome (Member.lend). It never changes.
	Commit []byte
	// Privates are the private states of our devices that entered the
	// epoch (all of them for a new epoch). They never change.
	Privates map[Device][]byte
	// Removed are our devices whose private states must be deleted.
	Removed []Device
}

// Flush returns what changed since the last Flush, and counts it as
// written. Decrypting a message changes only its epoch's SecretTree. If
// writing fails, drop this Member and load it again: its states are ahead
// of what was stored (a punctured PRF must never be rolled forward twice,
// see mls/pprf).
func (m *Member) Flush() (*Changes, error) {
	out := &Changes{Dropped: m.dropped}
	// An epoch whose parent went keeps no commit: our devices follow with
	// it only from the parent. Should the parent be joined again by
	// Welcome, its devices are behind (Behind) and the commit's event
	// brings them in, as for an epoch entered by Welcome.
	for _, id := range sortedIDs(slices.Clone(m.orphaned)) {
		n := m.graph.nodes[id]
		if n == nil || !n.Retained || n.State.commitGone {
			continue
		}
		if p := m.graph.nodes[n.Parent]; p != nil && p.Retained {
			continue // joined again meanwhile
		}
		st := n.State
		st.commit, st.commitLent, st.commitGone = nil, false, true
		if st.stored {
			out.CommitsUnneeded = append(out.CommitsUnneeded, id)
		}
	}
	m.orphaned = nil
	ids := make([]ID, 0, len(m.graph.nodes))
	for id, n := range m.graph.nodes {
		if n.Retained {
			ids = append(ids, id)
		}
	}
	for _, id := range sortedIDs(ids) {
		st := m.graph.nodes[id].State
		ec, err := st.changes(id)
		if err != nil {
			return nil, err
		}
		if ec != nil {
			out.Epochs = append(out.Epochs, *ec)
		}
	}
	meta, err := m.marshalMetadata()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(meta, m.flushed) {
		out.Metadata = meta
	}
	// Everything is encoded: count it as written.
	for _, id := range ids {
		m.graph.nodes[id].State.flushed()
	}
	m.flushed, m.dropped = meta, nil
	return out, nil
}

// changes returns the parts of st to write, or nil.
func (st *EpochState) changes(id ID) (*EpochChanges, error) {
	ec := &EpochChanges{Epoch: id, Removed: slices.Clone(st.removed)}
	var err error
	if !st.stored {
		if ec.Static, err = st.pub.MarshalStatic(); err != nil {
			return nil, err
		}
		ec.Commit = st.commit
	} else if st.commitLent {
		ec.Commit = st.commit
	}
	if st.pub != nil {
		init, tree := st.pub.Changes()
		if !st.stored || init != st.initAt {
			if ec.InitState, err = st.pub.MarshalInitState(); err != nil {
				return nil, err
			}
		}
		if !st.stored || tree != st.treeAt {
			if ec.SecretTree, err = st.pub.MarshalSecretTree(); err != nil {
				return nil, err
			}
		}
	}
	added := st.added
	if !st.stored {
		added = st.holders
	}
	for _, d := range added {
		b, err := st.privs[d].MarshalBinary()
		if err != nil {
			return nil, err
		}
		if ec.Privates == nil {
			ec.Privates = map[Device][]byte{}
		}
		ec.Privates[d] = b
	}
	if ec.Static == nil && ec.InitState == nil && ec.SecretTree == nil && ec.Privates == nil && ec.Removed == nil {
		return nil, nil
	}
	return ec, nil
}

// flushed records that st's changes were handed out.
func (st *EpochState) flushed() {
	st.stored = true
	if st.pub != nil {
		st.initAt, st.treeAt = st.pub.Changes()
	}
	st.added, st.removed, st.commitLent = nil, nil, false
}
