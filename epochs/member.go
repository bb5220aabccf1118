package epochs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Member binds the rules of this package to real MLS group states
// (mls/group, with keyschedule.SchemeDMLS): it is one device's graph of
// epochs of one room's group, each retained epoch holding its *group.Group.
// Like Graph it is not safe for concurrent use.
type Member struct {
	Self   Device
	Policy Policy
	cfg    group.Config
	graph  *Graph[*group.Group]
	// seen holds the SHA-256 of every commit message this member made,
	// applied or rejected: a DMLS epoch cannot process a commit twice (its
	// PRF is punctured), and our own echo must not be processed at all.
	seen map[[32]byte]bool
	// known holds what commit events said about the epochs they create,
	// so that a member that joined by Welcome can learn the history of its
	// branch (package doc, "Joining").
	known map[ID]Commit
}

// Commit is a commit as it travels in a Matrix event: the MLSMessage (a
// PublicMessage, so that anyone can read its confirmation tag) and the
// MSC2883 fields with our dmls_ names.
type Commit struct {
	Message []byte
	// Base is the dmls_epoch of the epoch the commit was made on.
	Base ID
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
	EventID  string
}

// Outgoing is what Member.Commit made: the commit to send, the Welcome for
// the added devices (nil if none), and what it changes.
type Outgoing struct {
	Commit  Commit
	Welcome []byte
	Added   []Device
	Removed []Device
}

// Errors of the Member layer, besides the graph's and CheckCommit's.
var (
	// ErrDuplicateCommit: the commit was already made, applied or
	// rejected by this member, or its epoch is known. Not a fault.
	ErrDuplicateCommit = errors.New("epochs: commit already seen")
	// ErrInvalidCommit wraps the group layer's reason for refusing a
	// commit, or a commit whose event contradicts its MLS content.
	ErrInvalidCommit = errors.New("epochs: invalid commit")
	// ErrRemoved: the commit removes this member from the group on that
	// branch. The branch is recorded (it takes part in base selection)
	// but this member holds no state in it.
	ErrRemoved = errors.New("epochs: commit removes this member")
	// ErrNotApplication: Decrypt was given a handshake message.
	ErrNotApplication = errors.New("epochs: not an application message")
	// ErrCannotCommit: the member is not in its base epoch's group, or
	// the plan would remove the member itself.
	ErrCannotCommit = errors.New("epochs: member cannot commit")
)

// NewMember starts a member at the group's first epoch, which it created
// (g from group.Create with Config.Scheme = keyschedule.SchemeDMLS).
func NewMember(self Device, g *group.Group, createEvent string, p Policy, now time.Time) (*Member, error) {
	m := newMember(self, g.Config(), p)
	g = g.WithConfig(m.cfg)
	err := m.graph.Add(Node[*group.Group]{
		Identity: Identity{ID: ID(g.Public().EpochID()), Number: g.Epoch(), Creator: self, CommitEvent: createEvent},
		Members:  devices(g), Added: now, State: g,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// NewJoinedMember starts a member from a Welcome; see Member.Join.
func NewJoinedMember(self Device, cfg group.Config, p Policy) *Member {
	return newMember(self, cfg, p)
}

// newMember makes a Member whose states keep no past epochs' secret trees
// (group.Config.PastEpochs = 0, whatever cfg says): the graph retains each
// epoch's whole state, and Decrypt reads a late message with the state of
// its own epoch for as long as the Policy keeps it. Secret trees of older
// epochs inside every retained state would multiply the memory (each
// state would hold up to PastEpochs trees that the graph holds anyway)
// and the secrets a compromised state exposes, and their lifetime would
// escape the Policy.
func newMember(self Device, cfg group.Config, p Policy) *Member {
	cfg.PastEpochs = 0
	return &Member{Self: self, Policy: p, cfg: cfg, graph: New[*group.Group](), seen: map[[32]byte]bool{}, known: map[ID]Commit{}}
}

// Graph returns the member's epoch graph, for reading (heads, nodes).
func (m *Member) Graph() *Graph[*group.Group] { return m.graph }

// Base returns the base epoch and its state.
func (m *Member) Base() (ID, *group.Group, error) {
	id, err := m.graph.Base()
	if err != nil {
		return "", nil, err
	}
	g, _ := m.graph.State(id)
	return id, g, nil
}

// Joined returns the devices of the base epoch whose users are joined in
// room, with their leaf indices: the committer rule's input.
func (m *Member) Joined(room Room) []LeafDevice {
	_, g, err := m.Base()
	if err != nil {
		return nil
	}
	var out []LeafDevice
	g.Members(func(leaf uint32, n *message.LeafNode) bool {
		if d, err := ParseDevice(string(n.Credential.Identity)); err == nil && room.Members[d.UserID] == Join {
			out = append(out, LeafDevice{Device: d, Leaf: leaf})
		}
		return true
	})
	return out
}

// Join enters the group from a Welcome for kp, made by the commit c (whose
// Base, Epoch, Creator, EventID and Resolves place the new epoch in the
// graph). A member may join several branches this way. It then learns the
// branch's history from the commits it has observed.
func (m *Member) Join(welcome []byte, kp *group.KeyPackageBundle, c Commit, now time.Time) (ID, error) {
	g, err := group.Join(welcome, kp, &group.JoinOptions{Config: m.cfg})
	if err != nil {
		return "", fmt.Errorf("%w: welcome: %w", ErrInvalidCommit, err)
	}
	id := ID(g.Public().EpochID())
	if id != c.Epoch {
		g.Destroy()
		return "", fmt.Errorf("%w: welcome is for epoch %v, commit event says %v", ErrInvalidCommit, id, c.Epoch)
	}
	if _, ok := m.graph.Node(id); ok {
		g.Destroy()
		return id, ErrDuplicateCommit
	}
	err = m.graph.Join(Node[*group.Group]{
		Identity: Identity{ID: id, Number: g.Epoch(), Creator: c.Creator, CommitEvent: c.EventID},
		Parent:   c.Base, ConfirmationTag: bytes.Clone(g.Public().ConfirmationTag()),
		Members: devices(g), Resolves: c.Resolves, Added: now, State: g,
	})
	if err != nil {
		g.Destroy()
		return "", err
	}
	m.seen[sha256.Sum256(c.Message)] = true
	m.learn(c.Base)
	return id, nil
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
		c.Message = bytes.Clone(c.Message)
		m.known[c.Epoch] = c
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
		tag, _ := confirmationTag(c.Message)
		if m.graph.Learn(Node[*group.Group]{
			Identity: Identity{ID: id, Number: c.Number, Creator: c.Creator, CommitEvent: c.EventID},
			Parent:   c.Base, ConfirmationTag: tag, Resolves: c.Resolves,
		}) != nil {
			return
		}
		id = c.Base
	}
}

// Apply processes a commit made on any retained epoch. atCommit is the
// room at the commit's event, atBase the room at its base epoch's
// commit_event (see CheckCommit). It returns the new epoch, or:
// ErrDuplicateCommit; ErrUnknownEpoch if the base has not arrived yet
// (retry when it has); ErrParentNotRetained if the base was dropped or
// is known only by its metadata; a *Rejection (ErrUnauthorisedAdd,
// ErrStaleMember); ErrRemoved; or ErrInvalidCommit.
func (m *Member) Apply(c Commit, atCommit, atBase Room, now time.Time) (ID, error) {
	h := sha256.Sum256(c.Message)
	if m.seen[h] {
		return "", ErrDuplicateCommit
	}
	if _, ok := m.graph.nodes[c.Epoch]; ok && c.Epoch != "" {
		m.seen[h] = true
		return c.Epoch, ErrDuplicateCommit
	}
	m.Observe(c)
	base, ok := m.graph.State(c.Base)
	if !ok {
		if _, known := m.graph.nodes[c.Base]; known {
			return "", fmt.Errorf("%w: %v", ErrParentNotRetained, c.Base)
		}
		return "", fmt.Errorf("%w: base %v", ErrUnknownEpoch, c.Base)
	}
	// From here on the commit is decided once: processing punctures the
	// base's PRF whatever the outcome.
	m.seen[h] = true
	msg, err := message.ParseMLSMessage(c.Message)
	if err != nil || msg.PublicMessage == nil || msg.PublicMessage.Content.ContentType != message.ContentCommit {
		return "", fmt.Errorf("%w: not a PublicMessage commit", ErrInvalidCommit)
	}
	signed, err := decodeResolves(msg.PublicMessage.Content.AuthenticatedData)
	if err != nil || !slices.Equal(signed, c.Resolves) {
		return "", fmt.Errorf("%w: dmls_resolves differ from the signed list", ErrInvalidCommit)
	}
	sender := msg.PublicMessage.Content.Sender
	if sender.Type != message.SenderMember || leafDevice(base, sender.LeafIndex) != c.Creator {
		return "", fmt.Errorf("%w: epoch_creator %v is not the commit's sender", ErrInvalidCommit, c.Creator)
	}
	r, err := base.HandleMessage(msg)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidCommit, err)
	}
	if r.Removed {
		m.learn(c.Epoch)
		return "", ErrRemoved
	}
	next := r.Next
	id := ID(next.Public().EpochID())
	if id != c.Epoch || next.Epoch() != c.Number {
		next.Destroy()
		return "", fmt.Errorf("%w: commit makes epoch %v (%d), event says %v (%d)", ErrInvalidCommit, id, next.Epoch(), c.Epoch, c.Number)
	}
	before, after := devices(base), devices(next)
	effect := CommitEffect{Added: minus(after, before), Removed: minus(before, after), After: after, Resolving: len(signed) > 0}
	if err := CheckCommit(effect, atCommit, atBase); err != nil {
		next.Destroy()
		return "", err
	}
	// Metadata learned for this epoch before (it cannot be: Apply checks
	// the graph first) would make Add fail; the state is destroyed then.
	if err := m.graph.Add(Node[*group.Group]{
		Identity: Identity{ID: id, Number: next.Epoch(), Creator: c.Creator, CommitEvent: c.EventID},
		Parent:   c.Base, ConfirmationTag: bytes.Clone(next.Public().ConfirmationTag()),
		Members: after, Resolves: signed, Added: now, State: next,
	}); err != nil {
		next.Destroy()
		return "", err
	}
	return id, nil
}

// KeyPackages supplies a KeyPackage for a device to add, or nil if none
// can be claimed (the device is then left for a later commit).
type KeyPackages func(Device) *message.KeyPackage

// Commit makes the next commit (NextCommit): on the base, naming the other
// heads, removing departed devices and adding joined users' devices from
// keyPackages, always with an update path. The member adopts it at once;
// eventID is the commit_event it will have.
func (m *Member) Commit(room Room, keyPackages KeyPackages, eventID string, now time.Time) (*Outgoing, error) {
	rc, err := m.graph.NextCommit(room)
	if err != nil {
		return nil, err
	}
	base, _ := m.graph.State(rc.Base)
	if base == nil || !base.IsMember() || slices.Contains(rc.Remove, m.Self) {
		return nil, ErrCannotCommit
	}
	var props []*message.Proposal
	out := &Outgoing{}
	leaves := map[Device]uint32{}
	base.Members(func(leaf uint32, n *message.LeafNode) bool {
		if d, err := ParseDevice(string(n.Credential.Identity)); err == nil {
			leaves[d] = leaf
		}
		return true
	})
	for _, d := range rc.Remove {
		props = append(props, group.RemoveProposal(leaves[d]))
		out.Removed = append(out.Removed, d)
	}
	for _, d := range rc.Add {
		if kp := keyPackages(d); kp != nil {
			props = append(props, group.AddProposal(kp))
			out.Added = append(out.Added, d)
		}
	}
	return m.commit(base, rc.Resolution, props, out, eventID, now)
}

// CommitProposals makes a commit on the base with exactly the given
// proposals, naming the other heads. It exists for tests that need a
// commit the rules forbid (an unauthorised add); such a commit is not
// adopted by its maker.
func (m *Member) CommitProposals(props []*message.Proposal, eventID string) (*Outgoing, error) {
	res, err := m.graph.Resolution()
	if err != nil {
		return nil, err
	}
	base, _ := m.graph.State(res.Base)
	pc, err := base.Commit(group.CommitOptions{Proposals: props, SkipPending: true, AuthenticatedData: encodeResolves(res.Resolves)})
	if err != nil {
		return nil, err
	}
	m.seen[sha256.Sum256(pc.Commit)] = true
	return &Outgoing{Welcome: pc.Welcome, Commit: Commit{
		Message: pc.Commit, Base: res.Base, Epoch: ID(pc.State().Public().EpochID()), Number: pc.State().Epoch(),
		Resolves: res.Resolves, Creator: m.Self, EventID: eventID,
	}}, nil
}

func (m *Member) commit(base *group.Group, res Resolution, props []*message.Proposal, out *Outgoing, eventID string, now time.Time) (*Outgoing, error) {
	pc, err := base.Commit(group.CommitOptions{Proposals: props, SkipPending: true, AuthenticatedData: encodeResolves(res.Resolves)})
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	next, err := base.HandlePendingCommit(pc)
	if err != nil {
		return nil, err
	}
	id := ID(next.Public().EpochID())
	if err := m.graph.Add(Node[*group.Group]{
		Identity: Identity{ID: id, Number: next.Epoch(), Creator: m.Self, CommitEvent: eventID},
		Parent:   res.Base, ConfirmationTag: bytes.Clone(next.Public().ConfirmationTag()),
		Members: devices(next), Resolves: res.Resolves, Added: now, State: next,
	}); err != nil {
		return nil, err
	}
	m.seen[sha256.Sum256(pc.Commit)] = true
	out.Welcome = pc.Welcome
	out.Commit = Commit{Message: pc.Commit, Base: res.Base, Epoch: id, Number: next.Epoch(), Resolves: res.Resolves, Creator: m.Self, EventID: eventID}
	return out, nil
}

// Encrypt protects an application message in the base epoch.
func (m *Member) Encrypt(plaintext []byte) (ID, []byte, error) {
	id, g, err := m.Base()
	if err != nil {
		return "", nil, err
	}
	msg, err := g.Protect(plaintext, nil)
	if err != nil {
		return "", nil, err
	}
	return id, msg, nil
}

// Decrypt opens an application message sent in epoch, which may be any
// retained epoch. ErrUnknownEpoch means the epoch has not arrived (yet),
// or was dropped and its metadata pruned; ErrParentNotRetained that it was
// dropped or is known only by its metadata.
func (m *Member) Decrypt(epoch ID, msg []byte) ([]byte, Device, error) {
	g, ok := m.graph.State(epoch)
	if !ok {
		if _, known := m.graph.nodes[epoch]; known {
			return nil, Device{}, fmt.Errorf("%w: %v", ErrParentNotRetained, epoch)
		}
		return nil, Device{}, fmt.Errorf("%w: %v", ErrUnknownEpoch, epoch)
	}
	r, err := g.Handle(msg)
	if err != nil {
		return nil, Device{}, err
	}
	if r.ContentType != message.ContentApplication {
		return nil, Device{}, ErrNotApplication
	}
	return r.ApplicationData, leafDevice(g, r.Sender.LeafIndex), nil
}

// Retain drops the epochs that the policy expires (package doc,
// "Retention") and zeroes their secrets. It returns the dropped epochs.
func (m *Member) Retain(now time.Time) ([]ID, error) {
	ids := m.graph.Expired(m.Policy, now)
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, m.graph.Drop(ids, func(g *group.Group) {
		if g != nil {
			g.Destroy()
		}
	})
}

// Destroy zeroes every retained epoch's secrets, for a member that leaves
// the room.
func (m *Member) Destroy() {
	for _, n := range m.graph.nodes {
		if n.Retained && n.State != nil {
			n.State.Destroy()
		}
	}
	m.graph = New[*group.Group]()
}

// devices lists a group state's members as devices, in order.
func devices(g *group.Group) []Device {
	var out []Device
	g.Members(func(_ uint32, n *message.LeafNode) bool {
		if d, err := ParseDevice(string(n.Credential.Identity)); err == nil {
			out = append(out, d)
		}
		return true
	})
	slices.SortFunc(out, compareDevices)
	return out
}

// Devices returns the group's devices in epoch id, if retained.
func (m *Member) Devices(id ID) []Device {
	g, ok := m.graph.State(id)
	if !ok {
		return nil
	}
	return devices(g)
}

func leafDevice(g *group.Group, leaf uint32) Device {
	var d Device
	g.Members(func(l uint32, n *message.LeafNode) bool {
		if l == leaf {
			d, _ = ParseDevice(string(n.Credential.Identity))
			return false
		}
		return true
	})
	return d
}

// minus returns the devices of a not in b; both sorted.
func minus(a, b []Device) []Device {
	var out []Device
	for _, d := range a {
		if _, found := slices.BinarySearchFunc(b, d, compareDevices); !found {
			out = append(out, d)
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
