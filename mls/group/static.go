package group

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
)

// Static is the decoded part of an epoch's Public that never changes
// (MarshalStatic): the GroupContext, the ratchet tree with every hash
// computed, the confirmation tag and the epoch's secrets other than the
// init secret. Decoding it is most of the cost of loading a large group's
// epoch (the tree: parsing and hashing every node), and it is the same for
// every load of the epoch, so a caller that loads one epoch again and
// again (one stored message at a time) decodes it once and builds each
// Public from it with the two mutable parts (Static.Public), at the cost
// of a tree clone: one pointer per 64 nodes.
//
// A Static is safe for concurrent use: nothing changes it after
// UnmarshalStatic, and the Publics it builds share its tree copy-on-write
// and hold their own copies of its secrets. It holds the epoch's secrets:
// Destroy erases them once the caller drops it.
type Static struct {
	suite    *suite.Suite
	ctx      message.GroupContext
	ctxBytes []byte
	tree     *tree.Tree
	interim  []byte
	tag      []byte
	epoch    keyschedule.Epoch // InitSecret unset
	reinit   *message.ReInit
	size     int
}

// UnmarshalStatic decodes a Public's static part (MarshalStatic) and
// checks it as UnmarshalPublicParts does.
func UnmarshalStatic(static []byte) (*Static, error) {
	r := codec.NewReader(static)
	s := stored.ReadHeader(r, "public_static", partsVersion, ErrInvalidState)
	ctxBytes := r.Opaque("public_static.group_context")
	treeBytes := r.Opaque("public_static.tree")
	tag := r.Opaque("public_static.confirmation_tag")
	secrets := r.Opaque("public_static.epoch_secrets")
	reinit := readReInit(r, "public_static.reinit")
	if err := r.Finish("public_static"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	epoch, err := keyschedule.UnmarshalSecrets(secrets)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if epoch.Suite != s.ID() {
		return nil, fmt.Errorf("%w: parts of different cipher suites", ErrInvalidState)
	}
	st, err := decodeStatic(ctxBytes, treeBytes, tag, epoch, reinit)
	if err != nil {
		return nil, err
	}
	st.size = len(static)
	return st, nil
}

// decodeStatic decodes the parts of a Public that never change, as both
// encodings (MarshalBinary, MarshalStatic) hold them, and checks that
// they agree (suite, tree hash).
func decodeStatic(ctxBytes, treeBytes, tag []byte, epoch keyschedule.Epoch, reinit *message.ReInit) (*Static, error) {
	var ctx message.GroupContext
	if err := codec.Unmarshal(ctxBytes, &ctx, "group_context"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	cs, err := suite.Lookup(ctx.CipherSuite)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	t := new(tree.Tree)
	if err := t.UnmarshalBinary(treeBytes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	// checkParts computes every node's hash (the root's): the tree is not
	// written again after this, so sharing it is safe.
	if err := checkParts(cs, &ctx, t, tag, &epoch); err != nil {
		return nil, err
	}
	return &Static{
		suite: cs, ctx: ctx, ctxBytes: ctxBytes, tree: t,
		interim: framing.InterimTranscriptHash(cs, ctx.ConfirmedTranscriptHash, tag),
		tag:     tag, epoch: epoch, reinit: reinit,
	}, nil
}

// EpochID returns the epoch's dmls_epoch (Public.EpochID).
func (st *Static) EpochID() []byte { return st.epoch.ID }

// Size returns the length of the encoding st was decoded from, a measure
// of its memory for a cache's budget (the decoded tree takes a small
// multiple of it).
func (st *Static) Size() int { return st.size }

// Public assembles the epoch's Public from st and its two mutable parts
// (MarshalInitState, MarshalSecretTree), which must be of st's epoch.
func (st *Static) Public(initState, secretTree []byte) (*Public, error) {
	// Public.Destroy erases the secrets in place: each Public has its own.
	epoch := st.epoch.Clone()
	kept, err := readMarkedPart(initState, "init_state", st.suite, epoch.ID)
	if err != nil {
		return nil, err
	}
	if err := epoch.SetInitSecret(bytes.Clone(kept)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	treeState, err := readMarkedPart(secretTree, "secret_tree", st.suite, epoch.ID)
	if err != nil {
		return nil, err
	}
	return st.public(epoch, st.tree.Clone(), treeState)
}

// public assembles a Public of st's static parts with epoch (st's, with
// its init secret), t (st's tree or a clone of it) and the encoded secret
// tree, which must be of st's tree's size.
func (st *Static) public(epoch keyschedule.Epoch, t *tree.Tree, treeState []byte) (*Public, error) {
	secrets := new(secrettree.Tree)
	if err := secrets.UnmarshalBinary(treeState); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if secrets.Suite().ID() != st.suite.ID() || secrets.LeafCount() != uint32(t.LeafCount()) {
		return nil, fmt.Errorf("%w: secret tree of suite %d, %d leaves, for a tree of %d", ErrInvalidState,
			secrets.Suite().ID(), secrets.LeafCount(), t.LeafCount())
	}
	return &Public{
		suite: st.suite, ctx: st.ctx, ctxBytes: st.ctxBytes, tree: t, interim: st.interim,
		confirmationTag: st.tag, epoch: epoch, reinit: st.reinit, secrets: &ratchets{tree: secrets},
	}, nil
}

// Destroy erases st's secrets. The Publics it built keep their own.
func (st *Static) Destroy() { st.epoch.Zero() }
