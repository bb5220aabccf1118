package epochs

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Member binds the rules of this package to real MLS group states
// (mls/group, with keyschedule.SchemeDMLS) for all of our devices in one
// room (DESIGN §4): one graph of epochs, and in each retained epoch one
// shared *group.Public and the *group.Private of each of our devices in
// that epoch (its holders). A commit is processed once for all of them
// (group.Group.HandleCommitShared); a device that is alone in the room is
// a Member with one device. States can be loaded lazily from storage and
// the changes flushed in parts (see LoadMember and Flush). Like Graph it
// is not safe for concurrent use.
type Member struct {
	Policy Policy
	cfg    group.Config
	graph  *Graph[*EpochState]
	// seen holds the SHA-256 of every commit message this Member made or
	// processed, applied or rejected, with the epoch it was made on: a
	// DMLS epoch cannot process a commit twice (its PRF is punctured),
	// and our own echo must not be processed at all. An entry is kept
	// while that epoch is retained, since a commit on an epoch no longer
	// retained cannot be processed anyway.
	seen map[[32]byte]ID
	// known holds what observed commit events said about the epochs they
	// create, so that a member that joins by Welcome can learn the
	// history of its branch (package doc, "Commit events and joining"). An entry is kept
	// while it can still connect to the graph: its epoch is not in the
	// graph and its chain of bases reaches it.
	known map[ID]knownCommit
	// refused holds the epochs whose commits this Member refused (the
	// membership check failed, on arrival or when a Welcome had brought
	// the epoch first), with the epoch each was made on, kept while that
	// epoch is retained like seen. A Welcome into a refused epoch is
	// refused too (ErrRefusedEpoch): every member that saw the commit
	// refused it, so the epoch leads nowhere.
	refused map[ID]ID

	load Loader
	// flushed is the metadata as last flushed or loaded; dropped lists
	// the stored epochs dropped since.
	flushed []byte
	dropped []ID
	// orphaned lists the epochs whose parent was dropped since the last
	// flush: their commit is no longer needed (Changes.CommitsUnneeded).
	orphaned []ID
	// retainAt is RetainAt.
	retainAt time.Time
}

// knownCommit is what Member keeps of an observed commit event: its
// metadata, with the confirmation tag read from the message (the message
// itself is not kept).
type knownCommit struct {
	Base, Epoch     ID
	Number          uint64
	Resolves        []ID
	Creator         Device
	EventID         string
	ConfirmationTag []byte
}

// Commit is a commit as it travels in a Matrix event: the MLSMessage (a
// PublicMessage, so that anyone can read its confirmation tag) and the
// MSC2883 fields with our dmls_ names.
type Commit struct {
	Message []byte
	// Base is the dmls_epoch of the epoch the commit was made on.
	Base ID
	// BaseEvent is commit_event of the base epoch: the event id of the
	// commit that made it (the m.room.create event for the first epoch),
	// which a member that lacks the base follows back. Member.Commit
	// fills it in; it is empty while the base's own event id is not
	// known yet (our own commit not yet sent), and the caller must then
	// fill it in before sending (DESIGN §3's outbox dependency).
	BaseEvent string
	// Epoch is the dmls_epoch the commit claims to create; members that
	// process the commit check it.
	Epoch ID
	// Number is the new epoch's number.
	Number uint64
	// Resolves is dmls_resolves. The committer also signs it in the
	// commit's authenticated_data; receivers use the signed list and
	// reject a commit whose event says otherwise.
	Resolves []ID
	Creator  Device
	// EventID is the commit's own event id: set by the receiver from the
	// event, empty in what Member.Commit returns (SetCommitEvent records
	// it once the homeserver has answered).
	EventID string
}

// Outgoing is what Member.Commit made: the commit to send, the Welcome for
// the added devices (nil if none), and what it changes.
type Outgoing struct {
	Commit  Commit
	Welcome []byte
	Added   []Device
	Removed []Device
	// Joined are the added devices that are ours in the new epoch
	// already (CommitJoining's joiners): the Welcome leaves them out, and
	// is nil if the commit adds no one else.
	Joined []Device
}

// Errors of the Member layer, besides the graph's and CheckCommit's.
var (
	// ErrDuplicateCommit: the commit was already made, applied or
	// rejected by this member, or its epoch is known. Not a fault.
	ErrDuplicateCommit = errors.New("epochs: commit already seen")
	// ErrInvalidCommit wraps the group layer's reason for refusing a
	// commit, or a commit whose event contradicts its MLS content.
	ErrInvalidCommit = errors.New("epochs: invalid commit")
	// ErrRemoved: the commit removes every device of ours in its base.
	// The branch is recorded (it takes part in base selection) but we
	// hold no state in it.
	ErrRemoved = errors.New("epochs: commit removes our devices")
	// ErrNotApplication: Decrypt was given a handshake message.
	ErrNotApplication = errors.New("epochs: not an application message")
	// ErrCannotCommit: the device holds no state in the base epoch, or
	// the plan would remove the device itself.
	ErrCannotCommit = errors.New("epochs: device cannot commit")
	// ErrNotHeld: none of our devices, or not the one named, holds state
	// in the epoch.
	ErrNotHeld = errors.New("epochs: no device of ours in the epoch")
	// ErrCommitEvent: SetCommitEvent was given another event id than the
	// one already recorded.
	ErrCommitEvent = errors.New("epochs: epoch has another commit event")
	// ErrRefusedEpoch: Join was given a Welcome into an epoch whose
	// commit this member refused.
	ErrRefusedEpoch = errors.New("epochs: welcome into an epoch whose commit was refused")
)

// NewMember starts a Member at the group's first epoch, which our device
// creator created (g from group.Create with Config.Scheme =
// keyschedule.SchemeDMLS).
func NewMember(creator Device, g *group.Group, createEvent string, p Policy, now time.Time) (*Member, error) {
	m := NewJoinedMember(g.Config(), p)
	if !g.IsMember() {
		return nil, ErrNotHeld
	}
	st := newEpochState(g.Public(), map[Device]*group.Private{creator: g.Private()}, nil)
	err := m.graph.Add(Node[*EpochState]{
		Identity: Identity{ID: ID(g.Public().EpochID()), Number: g.Epoch(), Creator: creator, CommitEvent: createEvent},
		Members:  devices(g.Public()), Added: now, State: st,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// NewJoinedMember returns a Member that holds no epoch yet, for devices
// of ours that join by Welcome (Join).
//
// Its states keep no past epochs' secret trees (group.Config.PastEpochs =
// 0, whatever cfg says): the graph retains each epoch's whole state, and
// Decrypt reads a late message with the state of its own epoch for as
// long as the Policy keeps it. Secret trees of older epochs inside every
// retained state would multiply the memory and the secrets a compromised
// state exposes, and their lifetime would escape the Policy.
func NewJoinedMember(cfg group.Config, p Policy) *Member {
	cfg.PastEpochs = 0
	return &Member{Policy: p, cfg: cfg, graph: New[*EpochState](), seen: map[[32]byte]ID{}, known: map[ID]knownCommit{},
		refused: map[ID]ID{}}
}

// Graph returns the member's epoch graph, for reading (heads, nodes).
func (m *Member) Graph() *Graph[*EpochState] { return m.graph }

// Base returns the base epoch: where the next commit goes.
func (m *Member) Base() (ID, error) { return m.graph.Base() }

// Ours returns our devices that hold state in some retained epoch, in
// order.
func (m *Member) Ours() []Device {
	// Each epoch's holders are sorted: merged, not sorted again, since
	// every Retain asks (8 epochs of 10,000 devices: 36 ms sorted).
	var out []Device
	for _, n := range m.graph.nodes {
		if n.Retained {
			out = unionSorted(out, n.State.holders)
		}
	}
	return out
}

// unionSorted returns the devices of a and b, both sorted without
// repeats, sorted without repeats.
func unionSorted(a, b []Device) []Device {
	if len(a) == 0 {
		return slices.Clone(b)
	}
	if len(b) == 0 || slices.Equal(a, b) {
		return a
	}
	out := make([]Device, 0, max(len(a), len(b)))
	for len(a) > 0 && len(b) > 0 {
		switch c := a[0].Compare(b[0]); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// Holders returns our devices that hold state in epoch id, in order; nil
// if the epoch is not retained.
func (m *Member) Holders(id ID) []Device {
	st, ok := m.graph.State(id)
	if !ok {
		return nil
	}
	return slices.Clone(st.holders)
}

// Devices returns the group's devices in epoch id, if retained.
func (m *Member) Devices(id ID) []Device {
	if n := m.graph.nodes[id]; n != nil && n.Retained {
		return slices.Clone(n.Members)
	}
	return nil
}

// Public returns the shared state of a retained epoch, loading it if
// needed.
func (m *Member) Public(id ID) (*group.Public, error) {
	st, err := m.shared(id)
	if err != nil {
		return nil, err
	}
	return st.pub, nil
}

// Group returns device d's view of a retained epoch, loading it if
// needed, or ErrNotHeld if d holds no state there. The Group shares the
// epoch's state: what it sends or reads advances the epoch's secret tree.
//
// Only d's private state is decoded: sending as one device of ours needs
// no other's.
func (m *Member) Group(id ID, d Device) (*group.Group, error) {
	st, err := m.shared(id)
	if err != nil {
		return nil, err
	}
	if st.privs[d] == nil {
		if _, waits := st.raw[d]; !waits {
			return nil, fmt.Errorf("%w: %v in %v", ErrNotHeld, d, id)
		}
		if err := st.decode([]Device{d}); err != nil {
			return nil, fmt.Errorf("load epoch %v: %w: %w", id, ErrLoad, err)
		}
	}
	return group.New(st.pub, st.privs[d], m.cfg), nil
}

// Joined returns the devices of the base epoch whose users are joined in
// room, with their leaf indices: the committer rule's input.
func (m *Member) Joined(room Room) ([]LeafDevice, error) {
	id, err := m.graph.Base()
	if err != nil {
		return nil, err
	}
	pub, err := m.Public(id)
	if err != nil {
		return nil, err
	}
	var out []LeafDevice
	for _, ld := range leafDevices(pub) {
		if room.Members[ld.Device.UserID] == Join {
			out = append(out, ld)
		}
	}
	return out, nil
}

// Join enters our device self into the group from a Welcome for kp, made
// by the commit c (whose Base, Epoch, Creator, EventID and Resolves place
// the new epoch in the graph). If we hold that epoch already (another of
// our devices is in it), only self's private state is derived
// (group.JoinPrivate); otherwise the epoch is joined in full and becomes
// a new root of the graph, whose history the member then learns from the
// commits it has observed. ErrDuplicateCommit means self holds the epoch
// already.
func (m *Member) Join(self Device, welcome []byte, kp *group.KeyPackageBundle, c Commit, now time.Time) (ID, error) {
	if m.descendsFromRefused(c.Epoch) || m.descendsFromRefused(c.Base) {
		return "", fmt.Errorf("%w: %v", ErrRefusedEpoch, c.Epoch)
	}
	if n := m.graph.nodes[c.Epoch]; n != nil && n.Retained {
		st, err := m.state(c.Epoch)
		if err != nil {
			return "", err
		}
		if st.privs[self] != nil {
			return c.Epoch, ErrDuplicateCommit
		}
		priv, err := group.JoinPrivate(st.pub, welcome, kp, &group.JoinOptions{Config: m.cfg})
		if err != nil {
			return "", fmt.Errorf("%w: welcome: %w", ErrInvalidCommit, err)
		}
		if d := leafDevice(st.pub, uint32(priv.Leaf())); d != self {
			return "", fmt.Errorf("%w: welcome is for %v, not %v", ErrInvalidCommit, d, self)
		}
		st.add(self, priv)
		return c.Epoch, m.followChildren(c.Epoch)
	}
	g, err := group.Join(welcome, kp, &group.JoinOptions{Config: m.cfg})
	if err != nil {
		return "", fmt.Errorf("%w: welcome: %w", ErrInvalidCommit, err)
	}
	pub := g.Public()
	id := ID(pub.EpochID())
	switch {
	case id != c.Epoch:
		err = fmt.Errorf("%w: welcome is for epoch %v, commit event says %v", ErrInvalidCommit, id, c.Epoch)
	case leafDevice(pub, g.LeafIndex()) != self:
		err = fmt.Errorf("%w: welcome is not for %v", ErrInvalidCommit, self)
	}
	if err != nil {
		pub.Destroy()
		return "", err
	}
	st := newEpochState(pub, map[Device]*group.Private{self: g.Private()}, c.Message)
	if _, known := m.graph.nodes[id]; known {
		// We learned of the epoch (or our devices were removed on the
		// way to it, or we dropped it): its metadata stays.
		err = m.graph.Hold(id, devices(pub), st, now)
	} else {
		err = m.graph.Join(Node[*EpochState]{
			Identity: Identity{ID: id, Number: g.Epoch(), Creator: c.Creator, CommitEvent: c.EventID},
			Parent:   c.Base, ConfirmationTag: bytes.Clone(pub.ConfirmationTag()),
			Members: devices(pub), Resolves: c.Resolves, Added: now, State: st,
		})
	}
	if err != nil {
		pub.Destroy()
		return "", err
	}
	m.learn(c.Base)
	// Our devices in the base, if we hold it, follow into the epoch;
	// those in it follow into the epochs above it we may hold.
	var errs []error
	if b := m.graph.nodes[c.Base]; b != nil && b.Retained {
		_, err := m.follow(c.Base, id)
		errs = append(errs, err)
	}
	errs = append(errs, m.followChildren(id))
	return id, errors.Join(errs...)
}

// Observe records what a commit event says about the epoch it creates,
// without processing it. Apply observes every commit it is given; a
// member calls Observe for commits from before it joined (backfill) so
// that it can compare its branch with others as the older members do.
func (m *Member) Observe(c Commit) {
	if c.Epoch.check() != nil || c.Base.check() != nil {
		return
	}
	if _, ok := m.known[c.Epoch]; !ok {
		if _, inGraph := m.graph.nodes[c.Epoch]; inGraph {
			return
		}
		tag, err := confirmationTag(c.Message)
		if err != nil {
			return
		}
		m.known[c.Epoch] = knownCommit{
			Base: c.Base, Epoch: c.Epoch, Number: c.Number, Resolves: slices.Clone(c.Resolves),
			Creator: c.Creator, EventID: c.EventID, ConfirmationTag: tag,
		}
	}
	for _, n := range m.graph.nodes {
		if n.Parent == c.Epoch {
			m.learn(c.Epoch)
			return
		}
	}
}

// learn adds the metadata of id and its ancestors from observed commits,
// as far as they are missing from the graph.
func (m *Member) learn(id ID) {
	for id != "" {
		if _, ok := m.graph.nodes[id]; ok {
			return
		}
		c, ok := m.known[id]
		if !ok {
			return
		}
		if m.graph.Learn(Node[*EpochState]{
			Identity: Identity{ID: id, Number: c.Number, Creator: c.Creator, CommitEvent: c.EventID},
			Parent:   c.Base, ConfirmationTag: c.ConfirmationTag, Resolves: c.Resolves,
		}) != nil {
			return
		}
		delete(m.known, id)
		id = c.Base
	}
}

// Apply processes a commit made on any retained epoch, once for all our
// devices in that epoch. atCommit is the room at the commit's event,
// atBase the room at its base epoch's commit_event (see CheckCommit). It
// returns the new epoch, or: ErrDuplicateCommit; ErrUnknownEpoch if the
// base has not arrived yet or is known only as learned history (retry
// when it arrives; the caller bounds the wait); ErrParentNotRetained if
// the base was dropped, or is unknown and older than every retained
// epoch (dropped and forgotten: no need to fetch it); a *Rejection
// (ErrUnauthorisedAdd, ErrStaleMember); ErrRemoved; or ErrInvalidCommit.
//
// If a device of ours joined the new epoch by Welcome before the commit
// arrived, the commit is still processed once for our other devices in
// the base, which then enter the epoch beside it.
func (m *Member) Apply(c Commit, atCommit, atBase Room, now time.Time) (ID, error) {
	return m.ApplyChecked(c, func(e CommitEffect) error { return CheckCommit(e, atCommit, atBase) }, now)
}

// ApplyChecked is Apply with the membership check left to the caller:
// once the commit is processed, and before anything of it is kept, check
// gets what it does to the group's devices and returns nil or a
// *Rejection, normally CheckCommit's against the rooms the caller
// chooses. The commit is decided by that one call: processing punctured
// the base's PRF, so it cannot be applied again. A caller whose room
// state is the order events reached it in can, before refusing, ask the
// room's graph (a commit made during a partition arrives after the
// membership changes the other side made meanwhile, which its committer
// could not have seen).
func (m *Member) ApplyChecked(c Commit, check func(CommitEffect) error, now time.Time) (ID, error) {
	h := sha256.Sum256(c.Message)
	if _, ok := m.seen[h]; ok {
		return "", ErrDuplicateCommit
	}
	child := m.graph.nodes[c.Epoch]
	if b := m.graph.nodes[c.Base]; b == nil || !b.Retained {
		m.Observe(c)
		if m.descendsFromRefused(c.Base) {
			// Built on a commit we refused: its base never comes.
			// What we hold above it came by Welcome, and goes.
			if err := m.dropRefusedBranches(); err != nil {
				return "", err
			}
			return "", fmt.Errorf("%w: %v descends from a refused epoch", ErrParentNotRetained, c.Base)
		}
		switch {
		case child != nil && child.Retained:
			// Should the base arrive, our devices in it follow into
			// this epoch with the commit it keeps (follow). An epoch
			// entered by Welcome keeps none: lend it this event's,
			// which follow checks (PrivatesAfter) when it is used.
			m.lend(c.Epoch, c.Message)
			return c.Epoch, ErrDuplicateCommit
		case b == nil && c.Number > 0 && m.olderThanRetained(c.Number-1):
			// Older than every retained epoch: dropped and forgotten,
			// or of a branch that left no trace here. Its own commit
			// could only come from an even older epoch.
		case b == nil || b.Added.IsZero():
			// The base has not arrived, or is known only from history:
			// it may still come (its commit, or a Welcome for a device
			// of ours).
			return "", fmt.Errorf("%w: base %v", ErrUnknownEpoch, c.Base)
		case child != nil:
			return c.Epoch, ErrDuplicateCommit
		}
		if slices.Contains(m.Ours(), c.Creator) {
			// The event of a commit of ours, come back after its base
			// and its epoch were dropped and forgotten (by the count
			// bound, while the service was behind on its own room's
			// events): we made it, so it is no news.
			return c.Epoch, ErrDuplicateCommit
		}
		if m.olderThanRetained(c.Number) {
			return "", fmt.Errorf("%w: %v", ErrBeforeRetained, c.Base)
		}
		return "", fmt.Errorf("%w: %v", ErrParentNotRetained, c.Base)
	}
	if child != nil && child.Retained {
		// Made by us, or entered by Welcome first: our devices of the
		// base that lack it enter it from the commit, with no key
		// schedule.
		m.seen[h] = c.Base
		// Entered by Welcome (our own commits are seen above): the
		// commit is still checked as on arrival. If the room refuses
		// it, the Welcome led into an epoch no member follows, and it
		// goes with everything above it.
		if err := check(m.effect(child, m.graph.nodes[c.Base])); err != nil {
			m.refused[c.Epoch] = c.Base
			if _, rerr := m.remove(c.Epoch); rerr != nil {
				return "", errors.Join(err, rerr)
			}
			return "", err
		}
		// An epoch entered by Welcome has no commit message (a Welcome
		// carries none), and follow needs one: take this event's. follow
		// checks that it leads from the base to this very epoch
		// (PrivatesAfter); if it does not, it is not kept.
		lent := m.lend(c.Epoch, c.Message)
		added, err := m.follow(c.Base, c.Epoch)
		if lent && err != nil {
			child.State.commit, child.State.commitLent = nil, false
		}
		switch {
		case err != nil:
			return "", err
		case added:
			return c.Epoch, nil
		}
		return c.Epoch, ErrDuplicateCommit
	}
	id, err := m.process(c, h, child, check, now)
	if err != nil && !errors.Is(err, ErrDuplicateCommit) {
		// What the event says about its epoch still places branches
		// that build on it.
		m.Observe(c)
		if errors.Is(err, ErrRemoved) {
			m.learn(c.Epoch)
		}
	}
	return id, err
}

// lend gives an epoch entered by Welcome (which carries no commit
// message) the message of the commit event that made it, for follow, and
// marks it to be stored. It reports whether it did.
//
// The epoch's state is loaded first: a Member loaded from storage holds
// only the metadata until first use, and loading afterwards would replace
// the lent message with the stored one, which such an epoch lacks. The
// devices of ours in the base then never followed into the epoch, were
// removed by our next commit as orphans, and were added back by Welcome,
// leaving the other devices behind in turn.
func (m *Member) lend(id ID, message []byte) bool {
	if n := m.graph.nodes[id]; n != nil {
		if p := m.graph.nodes[n.Parent]; p != nil && !p.Retained && !p.Added.IsZero() {
			// The parent was held and dropped: no device of ours will
			// follow from it (Flush clears such a commit).
			return false
		}
	}
	st, err := m.state(id)
	if err != nil || st.commit != nil || len(message) == 0 {
		return false
	}
	st.commit, st.commitLent = bytes.Clone(message), true
	return true
}

// process processes the commit c, whose hash is h, on its retained base
// for all our devices there (Apply). child is the commit's epoch if the
// graph knows it already without a state (learned from history, or
// recorded when our devices were removed on the way to it).
func (m *Member) process(c Commit, h [32]byte, child *Node[*EpochState], check func(CommitEffect) error, now time.Time) (ID, error) {
	base, err := m.state(c.Base)
	if err != nil {
		return "", err
	}
	// From here on the commit is decided once: processing punctures the
	// base's PRF whatever the outcome.
	m.seen[h] = c.Base
	msg, err := message.ParseMLSMessage(c.Message)
	if err != nil || msg.PublicMessage == nil || msg.PublicMessage.Content.ContentType != message.ContentCommit {
		return "", fmt.Errorf("%w: not a PublicMessage commit", ErrInvalidCommit)
	}
	signed, err := decodeResolves(msg.PublicMessage.Content.AuthenticatedData)
	if err != nil || !slices.Equal(signed, c.Resolves) {
		return "", fmt.Errorf("%w: dmls_resolves differ from the signed list", ErrInvalidCommit)
	}
	sender := msg.PublicMessage.Content.Sender
	if sender.Type != message.SenderMember || leafDevice(base.pub, sender.LeafIndex) != c.Creator {
		return "", fmt.Errorf("%w: epoch_creator %v is not the commit's sender", ErrInvalidCommit, c.Creator)
	}
	privs := make([]*group.Private, len(base.holders))
	for i, d := range base.holders {
		privs[i] = base.privs[d]
	}
	tr, err := group.New(base.pub, nil, m.cfg).HandleCommitShared(msg, privs)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidCommit, err)
	}
	if tr.Public == nil {
		return "", ErrRemoved
	}
	next := tr.Public
	id := ID(next.EpochID())
	if id != c.Epoch || next.Epoch() != c.Number {
		next.Destroy()
		return "", fmt.Errorf("%w: commit makes epoch %v (%d), event says %v (%d)", ErrInvalidCommit, id, next.Epoch(), c.Epoch, c.Number)
	}
	before, after := m.graph.nodes[c.Base].Members, devices(next)
	effect := CommitEffect{Added: minus(after, before), Removed: minus(before, after), After: after, Resolving: len(signed) > 0}
	if err := check(effect); err != nil {
		m.refused[c.Epoch] = c.Base
		next.Destroy()
		if derr := m.dropRefusedBranches(); derr != nil {
			return "", errors.Join(err, derr)
		}
		return "", err
	}
	survivors := map[Device]*group.Private{}
	for i, d := range base.holders {
		if p := tr.Privates[i+1]; p != nil {
			survivors[d] = p
		}
	}
	st := newEpochState(next, survivors, c.Message)
	if child == nil {
		err = m.graph.Add(Node[*EpochState]{
			Identity: Identity{ID: id, Number: next.Epoch(), Creator: c.Creator, CommitEvent: c.EventID},
			Parent:   c.Base, ConfirmationTag: bytes.Clone(next.ConfirmationTag()),
			Members: after, Resolves: signed, Added: now, State: st,
		})
	} else {
		err = m.graph.Hold(id, after, st, now)
	}
	if err != nil {
		next.Destroy()
		return "", err
	}
	// Epochs above it that devices of ours joined by Welcome first.
	if err := m.followChildren(id); err != nil {
		return id, err
	}
	return id, nil
}

// follow gives our devices that hold the retained epoch parent, and that
// the commit making its retained child kept in the group, their private
// states in child, from that commit and the child's state
// (group.Group.PrivatesAfter: one HPKE decryption each, no key
// schedule), and follows them on into child's children. It reports
// whether any device entered child. This keeps, whatever order commits
// and Welcomes arrive in, every device of ours in each epoch that its
// parent's commit led it to.
func (m *Member) follow(parent, child ID) (bool, error) {
	p, err := m.state(parent)
	if err != nil {
		return false, err
	}
	ch, err := m.state(child)
	if err != nil {
		return false, err
	}
	var devs []Device
	var privs []*group.Private
	for _, d := range p.holders {
		if ch.privs[d] == nil {
			devs = append(devs, d)
			privs = append(privs, p.privs[d])
		}
	}
	if len(devs) == 0 || ch.commit == nil {
		return false, nil
	}
	msg, err := message.ParseMLSMessage(ch.commit)
	if err != nil {
		return false, fmt.Errorf("%w: commit of epoch %v: %w", ErrInvalidCommit, child, err)
	}
	next, err := group.New(p.pub, nil, m.cfg).PrivatesAfter(msg, ch.pub, privs)
	if err != nil {
		return false, fmt.Errorf("%w: commit of epoch %v: %w", ErrInvalidCommit, child, err)
	}
	added := false
	for i, d := range devs {
		if next[i] != nil {
			ch.add(d, next[i])
			added = true
		}
	}
	if added {
		err = m.followChildren(child)
	}
	return added, err
}

// followChildren follows our devices of the retained epoch id into its
// retained children (follow).
func (m *Member) followChildren(id ID) error {
	var errs []error
	for _, c := range m.graph.children[id] {
		if n := m.graph.nodes[c]; n != nil && n.Retained {
			if _, err := m.follow(id, c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Behind returns, oldest first, the retained epochs that devices of ours
// in the retained parent have not followed into although the epoch's
// group has them: each was entered by Welcome, and the commit that made
// it never reached us, so follow had no message to take them in with.
// Applying the epoch's commit (its CommitEvent) takes them in.
//
// A room's creator adds an invited user's devices before the user has
// joined, and a homeserver shows an invited user none of the room's
// events: our devices then join the epochs of several such commits, one
// by Welcome each, while none of the commits between them reaches us.
// Each device but the last stays behind, and the group holds it without
// its keys (an orphan, which the room would remove and add again).
func (m *Member) Behind() []ID {
	var out []*Node[*EpochState]
	for _, n := range m.graph.nodes {
		p := m.graph.nodes[n.Parent]
		if !n.Retained || n.Parent == "" || p == nil || !p.Retained {
			continue
		}
		if leftOut(p, n) {
			out = append(out, n)
		}
	}
	return byNumber(out)
}

// Unreached returns, oldest first, the retained epochs whose parent we
// never held (a Welcome brought us in; a dropped parent does not count)
// and whose group has devices of ours that hold an older retained epoch
// but not this one: the commits between are missing, because the Welcome
// into an epoch between never came. Once those commits are applied from
// the older epoch (its devices follow them), the epoch's own commit takes
// the devices on into it (Behind).
func (m *Member) Unreached() []ID {
	var out []*Node[*EpochState]
	for _, n := range m.graph.nodes {
		if !n.Retained || n.Parent == "" {
			continue
		}
		if p := m.graph.nodes[n.Parent]; p != nil && (p.Retained || !p.Added.IsZero()) {
			continue
		}
		if m.leftBelow(n) {
			out = append(out, n)
		}
	}
	return byNumber(out)
}

// leftBelow reports whether a device of ours in n's group holds an older
// retained epoch but not n.
func (m *Member) leftBelow(n *Node[*EpochState]) bool {
	for _, x := range m.graph.nodes {
		if x.Retained && x.Number < n.Number && leftOut(x, n) {
			return true
		}
	}
	return false
}

// leftOut reports whether a device of ours that holds the retained epoch
// x is in n's group but holds no state in n.
func leftOut(x, n *Node[*EpochState]) bool {
	if len(x.State.holders) == 0 {
		return false
	}
	// As sets: a room of 10,000 of our devices scanned both lists for
	// each holder, 10^8 comparisons an epoch pair.
	held := DeviceSet(n.State.holders)
	var member map[Device]bool
	for _, d := range x.State.holders {
		if held[d] {
			continue
		}
		if member == nil {
			member = DeviceSet(n.Members)
		}
		if member[d] {
			return true
		}
	}
	return false
}

// byNumber returns the nodes' IDs, oldest first (ties by ID).
func byNumber(nodes []*Node[*EpochState]) []ID {
	slices.SortFunc(nodes, func(a, b *Node[*EpochState]) int {
		if a.Number != b.Number {
			return cmp.Compare(a.Number, b.Number)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	ids := make([]ID, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return ids
}

// olderThanRetained reports whether an epoch of the given number is
// older than every retained epoch.
func (m *Member) olderThanRetained(number uint64) bool {
	found := false
	for _, n := range m.graph.nodes {
		if n.Retained {
			if n.Number <= number {
				return false
			}
			found = true
		}
	}
	return found
}

// KeyPackages supplies a KeyPackage for a device to add, or nil if none
// can be claimed (the device is then left for a later commit).
type KeyPackages func(Device) *message.KeyPackage

// Commit has our device by make the next commit (NextCommit): on the
// base, naming the other heads, removing departed devices and adding the
// devices of joined and invited users from keyPackages, always with an
// update path. The member adopts it at once, for by and for our other
// devices in the base (from the path secrets by generated, without
// processing the commit again). The new epoch's commit_event is unknown
// until the homeserver has accepted the event: record it with
// SetCommitEvent. Nothing of the rules depends on it.
func (m *Member) Commit(by Device, room Room, keyPackages KeyPackages, now time.Time) (*Outgoing, error) {
	return m.CommitJoining(by, room, keyPackages, nil, now)
}

// Joiners supplies, for a device the commit adds that is ours as well,
// the bundle of the KeyPackage it is added with (private keys included),
// or nil.
type Joiners func(Device) *group.KeyPackageBundle

// CommitJoining is Commit, and makes the added devices that joiners gives
// a bundle for ours in the new epoch at once, their private parts derived
// from the path secrets by generated (group.CommitOptions.Joiners), as if
// each had joined by the Welcome: Outgoing.Joined lists them. A bundle
// whose KeyPackage is not the one the device is added with fails the
// commit.
func (m *Member) CommitJoining(by Device, room Room, keyPackages KeyPackages, joiners Joiners, now time.Time) (*Outgoing, error) {
	rc, err := m.graph.NextCommit(room)
	if err != nil {
		return nil, err
	}
	base, err := m.state(rc.Base)
	if err != nil {
		return nil, err
	}
	if base.privs[by] == nil || slices.Contains(rc.Remove, by) {
		return nil, ErrCannotCommit
	}
	leaves := map[Device]uint32{}
	for _, ld := range leafDevices(base.pub) {
		leaves[ld.Device] = ld.Leaf
	}
	var props []*message.Proposal
	out := &Outgoing{}
	for _, d := range rc.Remove {
		props = append(props, group.RemoveProposal(leaves[d]))
		out.Removed = append(out.Removed, d)
	}
	var bundles []*group.KeyPackageBundle
	for _, d := range rc.Add {
		kp := keyPackages(d)
		if kp == nil {
			continue
		}
		props = append(props, group.AddProposal(kp))
		out.Added = append(out.Added, d)
		if joiners == nil {
			continue
		}
		if b := joiners(d); b != nil {
			bundles = append(bundles, b)
			out.Joined = append(out.Joined, d)
		}
	}
	var others []Device
	var otherPrivs []*group.Private
	for _, d := range base.holders {
		if d != by {
			others = append(others, d)
			otherPrivs = append(otherPrivs, base.privs[d])
		}
	}
	pc, err := group.New(base.pub, base.privs[by], m.cfg).Commit(group.CommitOptions{
		Proposals: props, SkipPending: true, AuthenticatedData: encodeResolves(rc.Resolves), Others: otherPrivs,
		Joiners: bundles,
	})
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	next := pc.State()
	privs := map[Device]*group.Private{by: next.Private()}
	for i, d := range others {
		if p := pc.Others[i]; p != nil {
			privs[d] = p
		}
	}
	pub := next.Public()
	for i, d := range out.Joined {
		if got := leafDevice(pub, uint32(pc.Joiners[i].Leaf())); got != d {
			pub.Destroy()
			return nil, fmt.Errorf("commit: the bundle given for joiner %v is %v's", d, got)
		}
		privs[d] = pc.Joiners[i]
	}
	id := ID(pub.EpochID())
	if err := m.graph.Add(Node[*EpochState]{
		Identity: Identity{ID: id, Number: pub.Epoch(), Creator: by},
		Parent:   rc.Base, ConfirmationTag: bytes.Clone(pub.ConfirmationTag()),
		Members: devices(pub), Resolves: rc.Resolves, Added: now, State: newEpochState(pub, privs, pc.Commit),
	}); err != nil {
		pub.Destroy()
		return nil, err
	}
	m.seen[sha256.Sum256(pc.Commit)] = rc.Base
	out.Welcome = pc.Welcome
	out.Commit = Commit{
		Message: pc.Commit, Base: rc.Base, BaseEvent: rc.BaseIdentity.CommitEvent, Epoch: id, Number: pub.Epoch(),
		Resolves: rc.Resolves, Creator: by,
	}
	return out, nil
}

// CommitProposals has our device by make a commit on the base with
// exactly the given proposals, naming the other heads. It exists for
// tests that need a commit the rules forbid (an unauthorised add); such a
// commit is not adopted by its maker.
func (m *Member) CommitProposals(by Device, props []*message.Proposal) (*Outgoing, error) {
	res, err := m.graph.Resolution()
	if err != nil {
		return nil, err
	}
	g, err := m.Group(res.Base, by)
	if err != nil {
		return nil, err
	}
	pc, err := g.Commit(group.CommitOptions{Proposals: props, SkipPending: true, AuthenticatedData: encodeResolves(res.Resolves)})
	if err != nil {
		return nil, err
	}
	m.seen[sha256.Sum256(pc.Commit)] = res.Base
	return &Outgoing{Welcome: pc.Welcome, Commit: Commit{
		Message: pc.Commit, Base: res.Base, BaseEvent: res.BaseIdentity.CommitEvent,
		Epoch: ID(pc.State().Public().EpochID()), Number: pc.State().Epoch(), Resolves: res.Resolves, Creator: by,
	}}, nil
}

// SetCommitEvent records the event id of the commit that made epoch id
// (its commit_event), once the homeserver returned it for our own commit.
// Setting the same id again is a no-op; another one is ErrCommitEvent.
func (m *Member) SetCommitEvent(id ID, eventID string) error {
	n := m.graph.nodes[id]
	switch {
	case n == nil:
		return fmt.Errorf("%w: %v", ErrUnknownEpoch, id)
	case eventID == "":
		return fmt.Errorf("%w: empty event id", ErrCommitEvent)
	case n.CommitEvent != "" && n.CommitEvent != eventID:
		return fmt.Errorf("%w: %v has %q, not %q", ErrCommitEvent, id, n.CommitEvent, eventID)
	}
	n.CommitEvent = eventID
	return nil
}

// Encrypt protects an application message from our device by in the base
// epoch.
func (m *Member) Encrypt(by Device, plaintext []byte) (ID, []byte, error) {
	id, err := m.graph.Base()
	if err != nil {
		return "", nil, err
	}
	g, err := m.Group(id, by)
	if err != nil {
		return "", nil, err
	}
	msg, err := g.Protect(plaintext, nil)
	if err != nil {
		return "", nil, err
	}
	m.graph.RecordMessage(id, by)
	return id, msg, nil
}

// Decrypt opens an application message sent in epoch, which may be any
// retained epoch, once for all our devices in it: it advances only that
// epoch's secret tree. ErrUnknownEpoch means the epoch has not arrived
// (yet: it may be known from history only), or was dropped and its
// metadata pruned; ErrParentNotRetained that it was dropped; ErrNotHeld
// that none of our devices is in it any more.
func (m *Member) Decrypt(epoch ID, msg []byte) ([]byte, Device, error) {
	o, err := m.Open(epoch, msg)
	if err != nil {
		return nil, Device{}, err
	}
	return o.Plaintext, o.Sender, nil
}

// Opened is an application message Open decrypted.
type Opened struct {
	Plaintext []byte
	Sender    Device
	// Skipped counts the sender's earlier messages in the epoch that this
	// one stepped over: not received before it (group.Received.Skipped).
	// Matrix delivers a sender's events in order, so they are missing: a
	// hole in the timeline the caller may look for.
	Skipped int

	// The signature check OpenDeferred left for VerifyOpened; nil after
	// Open, which made it.
	suite *suite.Suite
	check *suite.SignatureCheck
}

// held returns the shared state of an epoch some device of ours holds:
// one whose messages are for us.
func (m *Member) held(epoch ID) (*EpochState, error) {
	st, err := m.shared(epoch)
	if err != nil {
		return nil, err
	}
	if len(st.holders) == 0 {
		return nil, fmt.Errorf("%w: %v", ErrNotHeld, epoch)
	}
	return st, nil
}

// Open is Decrypt, reporting also the messages the sender sent before
// this one that were not received.
func (m *Member) Open(epoch ID, msg []byte) (*Opened, error) {
	st, err := m.held(epoch)
	if err != nil {
		return nil, err
	}
	r, err := group.New(st.pub, nil, m.cfg).Handle(msg)
	if err != nil {
		return nil, err
	}
	if r.ContentType != message.ContentApplication {
		return nil, ErrNotApplication
	}
	sender := leafDevice(st.pub, r.Sender.LeafIndex)
	m.graph.RecordMessage(epoch, sender)
	return &Opened{Plaintext: r.ApplicationData, Sender: sender, Skipped: r.Skipped}, nil
}

// OpenDeferred is Open without the sender's signature check, which the
// result carries for VerifyOpened to make with others at once: for a
// caller that applies a run of messages all or nothing. The epoch's secret
// tree advances as if the signature verified, so unless VerifyOpened
// accepts, m must be discarded (and loaded again from what was stored).
// It takes only application messages of the epoch's own state
// (group.Group.OpenDeferred).
func (m *Member) OpenDeferred(epoch ID, msg []byte) (*Opened, error) {
	st, err := m.held(epoch)
	if err != nil {
		return nil, err
	}
	r, check, err := group.New(st.pub, nil, m.cfg).OpenDeferred(msg)
	if errors.Is(err, group.ErrNotApplication) {
		return nil, ErrNotApplication
	}
	if err != nil {
		return nil, err
	}
	// Recorded before the signature is checked, as the secret tree
	// advances: if VerifyOpened refuses, m is discarded whole.
	sender := leafDevice(st.pub, r.Sender.LeafIndex)
	m.graph.RecordMessage(epoch, sender)
	return &Opened{Plaintext: r.ApplicationData, Sender: sender, Skipped: r.Skipped,
		suite: st.pub.Suite(), check: &check}, nil
}

// VerifyOpened makes the signature checks OpenDeferred left, together
// (suite.VerifyBatch), and returns the index of the first message whose
// signature does not verify, with its error, or -1 and nil.
func VerifyOpened(opened []*Opened) (int, error) {
	// A room has one suite; the grouping is for completeness.
	bySuite := map[*suite.Suite][]int{}
	var suites []*suite.Suite
	for i, o := range opened {
		if o.check == nil {
			continue
		}
		if _, ok := bySuite[o.suite]; !ok {
			suites = append(suites, o.suite)
		}
		bySuite[o.suite] = append(bySuite[o.suite], i)
	}
	bad, badErr := -1, error(nil)
	for _, s := range suites {
		at := bySuite[s]
		checks := make([]suite.SignatureCheck, len(at))
		for j, i := range at {
			checks[j] = *opened[i].check
		}
		if j, err := s.VerifyBatch(checks); err != nil && (bad < 0 || at[j] < bad) {
			bad, badErr = at[j], err
		}
	}
	return bad, badErr
}

// RemoveDevice drops our device d from every epoch, for a device that
// left the room (or that we retire): its private states are forgotten,
// and an epoch left with none of our devices is dropped unless it is a
// head (retention keeps heads, and applying a commit on it only records
// the next epoch's metadata). It returns the epochs dropped.
func (m *Member) RemoveDevice(d Device) ([]ID, error) {
	var empty []ID
	for id, n := range m.graph.nodes {
		if !n.Retained || !slices.Contains(n.State.holders, d) {
			continue
		}
		n.State.remove(d)
		if len(n.State.holders) == 0 {
			empty = append(empty, id)
		}
	}
	heads := m.graph.headSet()
	empty = slices.DeleteFunc(empty, func(id ID) bool { return heads[id] })
	return m.drop(sortedIDs(empty))
}

// Retain drops the epochs that the policy expires (package doc,
// "Retention") and zeroes their secrets, then forgets what it kept about
// commits that concern no retained epoch any more. It returns the dropped
// epochs.
func (m *Member) Retain(now time.Time) ([]ID, error) {
	m.graph.stampSpoken(now)
	// Our devices as a sorted list, not a set: retention asks about
	// every member of each epoch in order (a merge), and about a few
	// creators and senders (a search); a set of 10,000 devices cost more
	// than all of that.
	ours := m.Ours()
	isOurs := func(d Device) bool { _, found := slices.BinarySearchFunc(ours, d, Device.Compare); return found }
	drop, next := m.graph.expired(m.Policy, now, ownView[*EpochState]{footholds: m.footholds(), past: m.pastForGood(isOurs),
		ours: ours, tentative: m.tentative(isOurs)})
	m.retainAt = next
	return m.drop(drop)
}

// RetainAt returns when Retain would next drop an epoch that the last
// Retain kept, by age or at the end of its linger, if nothing else
// happens in the group; zero if none would. A caller whose group falls
// quiet runs Retain again then: nothing else would.
func (m *Member) RetainAt() time.Time { return m.retainAt }

// tentative returns the epochs made by a commit of ours that Withdraw
// may still take back, and every epoch above one: what our devices did
// there shows no move for good, since a withdrawal takes them back to the
// commit's base. A commit is no longer tentative once confirmed (Confirm)
// or once another member committed or sent at or above it: that member
// applied it, so the room accepted it, and withdrawing it would split the
// room (groups keeps it then).
func (m *Member) tentative(ours func(Device) bool) map[ID]bool {
	var out map[ID]bool
	for id, n := range m.graph.nodes {
		if !n.Retained || n.Echoed || !ours(n.Creator) {
			continue
		}
		if p := m.graph.nodes[n.Parent]; p == nil || !p.Retained {
			continue // nothing to withdraw it to
		}
		subtree := m.graph.subtree(id)
		if slices.ContainsFunc(subtree, func(x *Node[*EpochState]) bool { return vouches(x, ours) }) {
			continue
		}
		if out == nil {
			out = map[ID]bool{}
		}
		for _, x := range subtree {
			out[x.ID] = true
		}
	}
	return out
}

// vouches reports whether another member than ours made epoch n or sent
// in it.
func vouches(n *Node[*EpochState], ours func(Device) bool) bool {
	return !ours(n.Creator) || slices.ContainsFunc(n.Spoke, func(d Device) bool { return !ours(d) })
}

// pastForGood returns, for retention's settled rule, a function giving for an
// epoch e a test of whether a device of ours (ours tells them) has
// moved on from it for good, whether or not it commits or sends: it has if it
// holds a retained epoch at or above a child of e that another member's
// commit made, or our own commit once its event came back and was accepted
// (Confirm). Such a child cannot be taken back (Withdraw takes back only our
// own commits not yet confirmed, and a commit applied here was checked on
// arrival), so e is never a head again, and our devices, which commit and
// send only in the base, will do neither in e; and each holds its keys above
// e, so dropping e strands none of them. A group of listening bots otherwise
// kept every epoch until the count or age bound, since they never speak.
func (m *Member) pastForGood(ours func(Device) bool) func(*Node[*EpochState]) func(Device) bool {
	return func(e *Node[*EpochState]) func(Device) bool {
		// The epochs whose holders have moved on, their holders merged
		// as the settled rule asks (members in ascending order): a set
		// of all their holders cost 10,000 insertions an epoch at every
		// Retain in a group of 10,000 of our devices (6 % of the
		// service's CPU there), a search per member half of that.
		var above []*Node[*EpochState]
		var walk func(id ID)
		walk = func(id ID) {
			if n := m.graph.nodes[id]; n != nil && n.Retained && n.State != nil && len(n.State.holders) > 0 {
				above = append(above, n)
			}
			for _, c := range m.graph.children[id] {
				walk(c)
			}
		}
		for _, c := range m.graph.children[e.ID] {
			if cn := m.graph.nodes[c]; cn != nil && cn.Retained && (cn.Echoed || !ours(cn.Creator)) {
				walk(c)
			}
		}
		return newNodeMerge(above, func(n *Node[*EpochState]) []Device { return n.State.holders }).has
	}
}

// footholds returns, for each of our devices, the highest-numbered
// retained epoch it holds. A device that joined by Welcome ahead of the
// commits leading to its epoch's successors (or whose next commit has not
// arrived yet) holds its group state only there: the count bound must not
// take it, or the device is left in the group without its keys.
func (m *Member) footholds() map[ID]bool {
	var held []*Node[*EpochState]
	for _, n := range m.graph.nodes {
		if n.Retained && n.State != nil && len(n.State.holders) > 0 {
			held = append(held, n)
		}
	}
	// Newest first, an epoch is a foothold if it holds a device that no
	// newer one holds: sorted lists merged, not a map of every device
	// (in a group of 10,000 of ours, a quarter of each Retain).
	slices.SortFunc(held, func(a, b *Node[*EpochState]) int {
		if c := cmp.Compare(b.Number, a.Number); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	out := map[ID]bool{}
	var seen []Device
	for _, n := range held {
		if !subsetSorted(n.State.holders, seen) {
			out[n.ID] = true
			seen = unionSorted(seen, n.State.holders)
		}
	}
	return out
}

// subsetSorted reports whether b holds every device of a, both sorted
// without repeats.
func subsetSorted(a, b []Device) bool {
	if len(a) > len(b) {
		return false
	}
	in := newSortedMerge(b)
	for _, d := range a {
		if !in.has(d) {
			return false
		}
	}
	return true
}

// drop drops the given epochs' states (zeroing those loaded), prunes the
// graph's metadata and the commits kept, and records the stored epochs
// dropped for the next Flush.
func (m *Member) drop(ids []ID) ([]ID, error) {
	var stored, orphaned []ID
	for _, id := range ids {
		if n := m.graph.nodes[id]; n != nil && n.Retained && n.State.stored {
			stored = append(stored, id)
		}
		orphaned = append(orphaned, m.graph.children[id]...)
	}
	err := m.graph.Drop(ids, (*EpochState).wipe)
	if err != nil {
		return nil, err
	}
	m.dropped = append(m.dropped, stored...)
	m.orphaned = append(m.orphaned, orphaned...)
	m.pruneCommits()
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, nil
}

// pruneCommits forgets the seen hashes of commits made on epochs that are
// no longer retained, and the observed commits that can no longer connect
// to the graph: those whose epoch the graph holds (it keeps their
// metadata itself) and those whose chain of bases, through other observed
// commits, reaches no epoch of the graph. A commit forgotten here and
// given again to Apply is observed again.
func (m *Member) pruneCommits() {
	for h, base := range m.seen {
		if n := m.graph.nodes[base]; n == nil || !n.Retained {
			delete(m.seen, h)
		}
	}
	for id, base := range m.refused {
		if n := m.graph.nodes[base]; n == nil || !n.Retained {
			delete(m.refused, id)
		}
	}
	reaches := map[ID]bool{}
	for id := range m.known {
		// Walk the chain of bases, then record the answer for every
		// epoch on it.
		var chain []ID
		answer := false
		for x := id; ; {
			if _, ok := m.graph.nodes[x]; ok {
				answer = true
				break
			}
			if v, ok := reaches[x]; ok {
				answer = v
				break
			}
			c, ok := m.known[x]
			if !ok || slices.Contains(chain, x) {
				break
			}
			chain = append(chain, x)
			x = c.Base
		}
		for _, x := range chain {
			reaches[x] = answer
		}
	}
	for id := range m.known {
		if _, inGraph := m.graph.nodes[id]; inGraph || !reaches[id] {
			delete(m.known, id)
		}
	}
}

// Destroy zeroes every loaded epoch's secrets, for a member whose devices
// have all left the room.
func (m *Member) Destroy() {
	for _, n := range m.graph.nodes {
		if n.Retained {
			n.State.wipe()
		}
	}
	m.graph = New[*EpochState]()
	clear(m.seen)
	clear(m.known)
}

// leafDevices lists an epoch's members whose credential names a device,
// in leaf order.
func leafDevices(pub *group.Public) []LeafDevice {
	var out []LeafDevice
	pub.Tree().Members(func(leaf treeLeaf, n *message.LeafNode) bool {
		if d, err := ParseDevice(string(n.Credential.Identity)); err == nil {
			out = append(out, LeafDevice{Device: d, Leaf: uint32(leaf)})
		}
		return true
	})
	return out
}

// devices lists an epoch's members as devices, in order.
func devices(pub *group.Public) []Device {
	var out []Device
	for _, ld := range leafDevices(pub) {
		out = append(out, ld.Device)
	}
	return sortedDevices(out)
}

// leafDevice returns the device at a leaf of pub's tree.
func leafDevice(pub *group.Public, leaf uint32) Device {
	n := pub.Tree().Leaf(treeLeaf(leaf))
	if n == nil {
		return Device{}
	}
	d, _ := ParseDevice(string(n.Credential.Identity))
	return d
}

// minus returns the devices of a not in b; both sorted.
func minus(a, b []Device) []Device {
	// Both sorted: one pass over each. Decoding a stored group of 10,000
	// searched the removed devices for each member and sorted the result
	// again, at every load of the room. At least len(a)-len(b) remain:
	// sized for those, a stored epoch's members (its parent's, less the
	// few a commit removed) are not grown append by append.
	var out []Device
	if n := len(a) - len(b); n > 0 {
		out = make([]Device, 0, n)
	}
	for len(a) > 0 {
		if len(b) == 0 {
			return append(out, a...)
		}
		switch c := a[0].Compare(b[0]); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			b = b[1:]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return out
}

// confirmationTag reads a PublicMessage commit's confirmation tag.
func confirmationTag(data []byte) ([]byte, error) {
	msg, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, err
	}
	if msg.PublicMessage == nil || msg.PublicMessage.Content.ContentType != message.ContentCommit {
		return nil, fmt.Errorf("%w: not a PublicMessage commit", ErrInvalidCommit)
	}
	return msg.PublicMessage.Auth.ConfirmationTag, nil
}

// The commit's authenticated_data carries dmls_resolves, so that the
// committer's signature covers it:
//
//	struct { opaque dmls_epoch<V>; } ResolvedEpoch;
//	struct { uint8 version = 1; ResolvedEpoch resolves<V>; } DMLSCommitData;
const resolvesVersion = 1

func encodeResolves(ids []ID) []byte {
	w := codec.NewWriter(8 + 33*len(ids))
	w.Uint8(resolvesVersion)
	w.Vector(func(w *codec.Writer) {
		for _, id := range ids {
			w.Opaque([]byte(id))
		}
	})
	return w.Bytes()
}

func decodeResolves(data []byte) ([]ID, error) {
	r := codec.NewReader(data)
	if v := r.Uint8("dmls_commit_data.version"); r.Err() == nil && v != resolvesVersion {
		return nil, fmt.Errorf("%w: dmls_commit_data version %d", ErrInvalidCommit, v)
	}
	var out []ID
	r.Each("dmls_commit_data.resolves", func(r *codec.Reader) {
		id := ID(r.Opaque("dmls_epoch"))
		if r.Err() == nil {
			if err := id.check(); err != nil {
				r.Fail("dmls_epoch", err)
				return
			}
			out = append(out, id)
		}
	})
	if err := r.Finish("dmls_commit_data"); err != nil {
		return nil, err
	}
	return out, nil
}
