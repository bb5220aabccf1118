package group

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Public is the part of an epoch that every member shares: the
// GroupContext, the ratchet tree, the transcript hashes, the epoch secrets
// and the secret tree. Once built it never changes, except for the secret
// tree's ratchets and, under DMLS, the init state that deriving a child
// punctures (see the package documentation), so one *Public can back the
// Group values of many members.
type Public struct {
	suite           *suite.Suite
	ctx             message.GroupContext
	ctxBytes        []byte
	tree            *tree.Tree
	interim         []byte
	confirmationTag []byte
	epoch           keyschedule.Epoch
	// reinit is the ReInit proposal the commit that made this epoch
	// carried; such an epoch only serves to start the successor group.
	reinit *message.ReInit

	mu sync.Mutex // guards epoch.InitSecret, which DMLS punctures, and initChanges
	// initChanges counts the changes of epoch.InitSecret in place.
	initChanges uint64
	secrets     *ratchets
}

// ratchets is an epoch's secret tree with its lock. The epoch's Public and
// the past-epoch readers of later states share it, so that a generation
// consumed through one is consumed for all (§9.2's deletion after use).
type ratchets struct {
	mu   sync.Mutex
	tree *secrettree.Tree
	// changes counts the uses that may have changed tree.
	changes uint64
}

// marshal encodes the secret tree as it stands.
func (r *ratchets) marshal() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tree.MarshalBinary()
}

// use runs fn on the secret tree under the lock and counts it as a change:
// sending consumes a generation even when it fails, and reading one
// consumes it once decrypted, even if a later check refuses the message.
func (r *ratchets) use(fn func(*secrettree.Tree) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes++
	return fn(r.tree)
}

// Changes reports how many times each mutable part of p may have changed
// in place since p was built or decoded: its init state (a DMLS epoch's
// PRF, punctured when a child is derived; never under RFC 9420) and its
// secret tree (advanced by each PrivateMessage sent or read, here or
// through a later state's past-epoch reader). A caller that stores p in
// parts (MarshalStatic, MarshalInitState, MarshalSecretTree) compares the
// counts with those of its last write to learn which parts to write
// again. A failed read of a PrivateMessage counts too, since it may have
// consumed a generation; writing an unchanged part again is harmless.
func (p *Public) Changes() (initState, secretTree uint64) {
	p.mu.Lock()
	initState = p.initChanges
	p.mu.Unlock()
	p.secrets.mu.Lock()
	defer p.secrets.mu.Unlock()
	return initState, p.secrets.changes
}

func newPublic(s *suite.Suite, ctx message.GroupContext, t *tree.Tree, confirmationTag []byte, epoch keyschedule.Epoch, opts secrettree.Options) (*Public, error) {
	secrets, err := secrettree.New(s, epoch.EncryptionSecret, uint32(t.LeafCount()), opts)
	if err != nil {
		return nil, err
	}
	return &Public{
		suite:           s,
		ctx:             ctx,
		ctxBytes:        codec.Marshal(&ctx),
		tree:            t,
		interim:         framing.InterimTranscriptHash(s, ctx.ConfirmedTranscriptHash, confirmationTag),
		confirmationTag: confirmationTag,
		epoch:           epoch,
		secrets:         &ratchets{tree: secrets},
	}, nil
}

// NewPublic assembles an epoch's Public from its parts: the GroupContext,
// the ratchet tree it names (which must not be modified afterwards), the
// confirmation tag of the commit that made it, and the epoch's secrets,
// with a fresh secret tree. It checks that the parts agree, not that they
// were made by a commit: a caller that builds a group state by hand (a
// benchmark of a large group, say) vouches for them.
func NewPublic(ctx message.GroupContext, t *tree.Tree, confirmationTag []byte, epoch keyschedule.Epoch, opts secrettree.Options) (*Public, error) {
	s, err := suite.Lookup(ctx.CipherSuite)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if err := checkParts(s, &ctx, t, confirmationTag, &epoch); err != nil {
		return nil, err
	}
	return newPublic(s, ctx, t, confirmationTag, epoch, opts)
}

// Suite returns the group's cipher suite.
func (p *Public) Suite() *suite.Suite { return p.suite }

// GroupContext returns the epoch's GroupContext. Its slices are shared and
// must not be modified.
func (p *Public) GroupContext() message.GroupContext { return p.ctx }

// Tree returns the epoch's ratchet tree, which must not be modified.
func (p *Public) Tree() *tree.Tree { return p.tree }

// GroupID returns the group's identifier.
func (p *Public) GroupID() []byte { return p.ctx.GroupID }

// Epoch returns the epoch number.
func (p *Public) Epoch() uint64 { return p.ctx.Epoch }

// TreeHash returns the tree hash of the epoch's ratchet tree.
func (p *Public) TreeHash() []byte { return p.ctx.TreeHash }

// EpochAuthenticator returns the epoch_authenticator (§8.7).
func (p *Public) EpochAuthenticator() []byte { return p.epoch.EpochAuthenticator }

// EpochID returns DeriveSecret(epoch_secret, "epoch"), which unlike the
// epoch number differs between forks (DESIGN §5).
func (p *Public) EpochID() []byte { return p.epoch.ID }

// ConfirmationTag returns the confirmation tag of the commit that made the
// epoch.
func (p *Public) ConfirmationTag() []byte { return p.confirmationTag }

// Export computes MLS-Exporter(label, context, length) (§8.5).
func (p *Public) Export(label string, context []byte, length int) ([]byte, error) {
	return p.epoch.Exporter(label, context, length)
}

// ReInit returns the ReInit proposal that the commit making this epoch
// carried, or nil.
func (p *Public) ReInit() *message.ReInit { return p.reinit }

// extension returns the GroupContext extension of type t.
func (p *Public) extension(t message.ExtensionType) *message.Extension {
	e, _ := message.FindExtension(p.ctx.Extensions, t)
	return e
}

// Private is what one member holds alone: its leaf index, its signature
// private key and its private tree keys. It never changes after it is
// built.
type Private struct {
	leaf    treemath.LeafIndex
	signKey *suite.SignaturePrivateKey
	path    *treekem.PrivateState
}

// NewPrivate assembles a member's private part from its leaf index, its
// signature key and its private tree keys.
func NewPrivate(leaf treemath.LeafIndex, signatureKey *suite.SignaturePrivateKey, path *treekem.PrivateState) *Private {
	return &Private{leaf: leaf, signKey: signatureKey, path: path}
}

// Leaf returns the member's leaf index.
func (p *Private) Leaf() treemath.LeafIndex { return p.leaf }

// Config holds a member's choices that are not part of the group state.
// The zero value is usable.
type Config struct {
	// HandshakeWireFormat is the wire format of our proposals and commits:
	// message.WireFormatPublicMessage (the default, when zero) or
	// message.WireFormatPrivateMessage.
	HandshakeWireFormat message.WireFormat
	// Padding is the number of zero bytes added to our PrivateMessages.
	Padding int
	// PSKs holds the external and cross-group resumption PSKs we know.
	// It may be shared between states; nil means none.
	PSKs *PSKStore
	// RetainedEpochs is how many past epochs' resumption PSKs a state
	// keeps (default 8).
	RetainedEpochs int
	// PastEpochs is how many past epochs' secret trees a state keeps, so
	// that application messages sent in them and arriving late still
	// decrypt (RFC 9420 §9.2, §12.4.2, §15): 0, the default as OpenMLS's
	// max_past_epochs, keeps none; at most MaxPastEpochs are kept. A kept
	// secret tree deletes each key after use as the current epoch's
	// does, and the whole tree is dropped once the epoch is more than
	// PastEpochs back. Keeping them trades forward secrecy for delivery:
	// a state compromised later exposes the messages those trees can
	// still decrypt. A group whose past epochs are kept as states of
	// their own (package epochs) needs none here.
	PastEpochs int
	// Now returns the time at which KeyPackage lifetimes are checked;
	// nil means time.Now, and a function returning the zero time skips
	// the check.
	Now func() time.Time
	// SecretTree bounds the out-of-order tolerance of the secret tree.
	SecretTree secrettree.Options
	// Scheme is the group's init scheme (DESIGN §5); zero is RFC 9420's.
	Scheme keyschedule.InitScheme
	// ClientIdentity returns the identifier by which the application
	// tells clients apart: the members of a reinitialised or branched
	// group match those of the old group when their credentials'
	// identifiers are equal (§11.3, §12.4.3.1 "according to the
	// application"). nil uses the credential's encoding, so a basic
	// credential's identity (with its type) and an X.509 chain as a
	// whole.
	ClientIdentity func(*message.Credential) []byte
}

func (c *Config) clientIdentity(cred *message.Credential) []byte {
	if c.ClientIdentity != nil {
		return c.ClientIdentity(cred)
	}
	return codec.Marshal(cred)
}

func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Config) retained() int {
	if c.RetainedEpochs <= 0 {
		return 8
	}
	return c.RetainedEpochs
}

// MaxPastEpochs bounds Config.PastEpochs.
const MaxPastEpochs = 64

func (c *Config) pastEpochs() int { return min(max(c.PastEpochs, 0), MaxPastEpochs) }

func (c *Config) wireFormat() message.WireFormat {
	if c.HandshakeWireFormat == 0 {
		return message.WireFormatPublicMessage
	}
	return c.HandshakeWireFormat
}

// Group is one member's view of one epoch: the shared *Public, the
// member's *Private, and what the member has seen during the epoch
// (proposals, its own pending Update keys). Creating or processing a
// commit returns a new Group and leaves the receiver usable.
type Group struct {
	pub   *Public
	priv  *Private // nil once the member has been removed
	cfg   Config
	local *epochLocal
	// history holds the resumption PSKs of past epochs, oldest first; the
	// slice is never modified in place.
	history []pastEpoch
	// welcomePSKs are the PSKs the Welcome named, for a state made by
	// Join; later epochs and decoded states do not have them.
	welcomePSKs []message.PreSharedKeyID
}

type pastEpoch struct {
	epoch      uint64
	resumption []byte // nil once beyond Config.RetainedEpochs
	// reader reads the epoch's late application messages; nil once
	// beyond Config.PastEpochs.
	reader *pastReader
}

// cachedProposal is a proposal received (or sent) in the current epoch.
type cachedProposal struct {
	ref      []byte
	proposal *message.Proposal
	sender   message.Sender
}

// epochLocal is the mutable part of a member's view of an epoch: the
// proposals seen so far and the private leaf keys of our own Update
// proposals. A new epoch starts a new one.
type epochLocal struct {
	mu         sync.Mutex
	proposals  []cachedProposal
	ownUpdates map[string]*suite.HPKEPrivateKey // proposal ref -> leaf private key
	// valid caches whether a proposal (by ref) is valid on its own, for
	// the rule on application messages (holdsValidProposal).
	valid map[string]bool
}

// New assembles a Group from a public and a private part, for instance
// after decoding them separately. priv may be nil for a non-member view.
func New(pub *Public, priv *Private, cfg Config) *Group {
	return &Group{pub: pub, priv: priv, cfg: cfg, local: &epochLocal{}}
}

// Public returns the shared part of the epoch.
func (g *Group) Public() *Public { return g.pub }

// Private returns the member's private part, or nil once it was removed.
func (g *Group) Private() *Private { return g.priv }

// Config returns the member's configuration.
func (g *Group) Config() Config { return g.cfg }

// WithConfig returns a Group that shares g's state but uses cfg.
func (g *Group) WithConfig(cfg Config) *Group {
	c := *g
	c.cfg = cfg
	return &c
}

// GroupID returns the group's identifier.
func (g *Group) GroupID() []byte { return g.pub.ctx.GroupID }

// Epoch returns the epoch number.
func (g *Group) Epoch() uint64 { return g.pub.ctx.Epoch }

// EpochAuthenticator returns the epoch_authenticator (§8.7).
func (g *Group) EpochAuthenticator() []byte { return g.pub.EpochAuthenticator() }

// TreeHash returns the tree hash of the ratchet tree.
func (g *Group) TreeHash() []byte { return g.pub.ctx.TreeHash }

// Export computes MLS-Exporter(label, context, length) (§8.5).
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return g.pub.Export(label, context, length)
}

// IsMember reports whether the state still belongs to a member.
func (g *Group) IsMember() bool { return g.priv != nil }

// LeafIndex returns our leaf index (meaningless once removed).
func (g *Group) LeafIndex() uint32 {
	if g.priv == nil {
		return 0
	}
	return uint32(g.priv.leaf)
}

// WelcomePSKs returns the PreSharedKeyIDs that the GroupSecrets of the
// Welcome this state was joined from named (§12.4.3.1): the PSKs the
// epoch's key schedule injected, such as the resumption PSK that ties a
// reinitialised or branched group to the old one. It is nil for a state
// not returned by Join, including every later epoch and a decoded state.
func (g *Group) WelcomePSKs() []message.PreSharedKeyID {
	if g.welcomePSKs == nil {
		return nil
	}
	out := make([]message.PreSharedKeyID, len(g.welcomePSKs))
	for i, id := range g.welcomePSKs {
		out[i] = id
		out[i].ID, out[i].GroupID, out[i].Nonce = bytes.Clone(id.ID), bytes.Clone(id.GroupID), bytes.Clone(id.Nonce)
	}
	return out
}

// Members calls fn for each member's leaf, in leaf order.
func (g *Group) Members(fn func(leaf uint32, node *message.LeafNode) bool) {
	g.pub.tree.Members(func(l treemath.LeafIndex, n *message.LeafNode) bool { return fn(uint32(l), n) })
}

// ResumptionPSK returns the resumption_psk of the given epoch if this state
// is that epoch or retains it.
func (g *Group) ResumptionPSK(epoch uint64) ([]byte, bool) {
	if epoch == g.pub.ctx.Epoch {
		return g.pub.epoch.ResumptionPSK, true
	}
	for _, h := range g.history {
		if h.epoch == epoch && h.resumption != nil {
			return h.resumption, true
		}
	}
	return nil, false
}

func (g *Group) requireMember() error {
	if g.priv == nil {
		return ErrNotMember
	}
	if g.pub.reinit != nil {
		return ErrReInitPending
	}
	return nil
}

// next returns the Group of the epoch after g, remembering g's resumption
// PSK and, if the configuration asks for past epochs, g's secret tree.
func (g *Group) next(pub *Public, priv *Private) *Group {
	last := pastEpoch{epoch: g.pub.ctx.Epoch, resumption: g.pub.epoch.ResumptionPSK}
	if g.cfg.pastEpochs() > 0 {
		last.reader = g.pub.pastReader()
	}
	h := append(append([]pastEpoch(nil), g.history...), last)
	return &Group{pub: pub, priv: priv, cfg: g.cfg, local: &epochLocal{}, history: g.cfg.trimHistory(h)}
}

// trimHistory drops from h, oldest first and in place (h is new), the
// resumption PSKs beyond RetainedEpochs and the readers beyond PastEpochs,
// and the entries left with neither.
func (c *Config) trimHistory(h []pastEpoch) []pastEpoch {
	retained, past := c.retained(), c.pastEpochs()
	if n := max(retained, past); len(h) > n {
		h = h[len(h)-n:]
	}
	for i := range h {
		age := len(h) - i // 1 for the epoch just before the state's
		if age > retained {
			h[i].resumption = nil
		}
		if age > past {
			h[i].reader = nil
		}
	}
	for len(h) > 0 && h[0].resumption == nil && h[0].reader == nil {
		h = h[1:]
	}
	return h
}
