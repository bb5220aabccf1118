package group

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Late application messages (RFC 9420 §9.2, §12.4.2, §15): a message
// encrypted in epoch n may arrive after the member moved on to n+1. A state
// keeps, for Config.PastEpochs epochs, what reading such a message takes,
// and only that: the epoch's GroupContext (a member's signature covers
// it), its sender_data_secret, its secret tree and its senders' signature
// keys. Not its exporter, init or other secrets, which stay with the
// epoch's own state. Only application messages are read: a proposal or
// commit of an epoch that is over can no longer take effect.

// pastReader reads the late PrivateMessages of one past epoch.
type pastReader struct {
	ctx              message.GroupContext
	senderDataSecret []byte
	// secrets is shared with the epoch's Public: a generation read
	// through either is consumed for both.
	secrets *ratchets
	// leaves is the epoch's leaf count. A sender's signature key is
	// changed[leaf] if present (nil for a blank leaf), else that of
	// the leaf in tree: the epoch's own tree, or, for a reader decoded
	// from storage, the tree of the state that holds it.
	leaves  uint32
	tree    *tree.Tree
	changed map[uint32][]byte
}

// pastReader returns a reader of p's late messages.
func (p *Public) pastReader() *pastReader {
	return &pastReader{
		ctx:              p.ctx,
		senderDataSecret: bytes.Clone(p.epoch.SenderDataSecret),
		secrets:          p.secrets,
		leaves:           uint32(p.tree.LeafCount()),
		tree:             p.tree,
	}
}

// senderKey is the signature key of the member at leaf in the past epoch.
func (r *pastReader) senderKey(leaf uint32) []byte {
	if k, ok := r.changed[leaf]; ok {
		return k
	}
	if leaf >= r.leaves {
		return nil
	}
	if l := r.tree.Leaf(treemath.LeafIndex(leaf)); l != nil {
		return l.SignatureKey
	}
	return nil
}

// reader returns the reader of past epoch e, or nil.
func (g *Group) reader(e uint64) *pastReader {
	for _, h := range g.history {
		if h.epoch == e && h.reader != nil {
			return h.reader
		}
	}
	return nil
}

// PastEpochs returns the past epochs whose late application messages g can
// still read, oldest first.
func (g *Group) PastEpochs() []uint64 {
	var out []uint64
	for _, h := range g.history {
		if h.reader != nil {
			out = append(out, h.epoch)
		}
	}
	return out
}

// handleLate reads pm, an application message of a past epoch that r
// keeps. The sender's ratchet generation is consumed in that epoch's
// secret tree, as for a current message.
func (g *Group) handleLate(r *pastReader, pm *message.PrivateMessage) (*Received, error) {
	s := g.pub.suite
	var ac *message.AuthenticatedContent
	err := r.secrets.use(func(t *secrettree.Tree) (err error) {
		ac, err = framing.UnprotectPrivate(s, pm, &r.ctx, t, r.senderDataSecret, r.senderKey)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("epoch %d: %w", pm.Epoch, classifyFramingError(err))
	}
	c := &ac.Content
	if c.ContentType != message.ContentApplication {
		return nil, fmt.Errorf("%w: content type %d in a late message", ErrMalformed, c.ContentType)
	}
	return &Received{
		ContentType: c.ContentType, Sender: c.Sender, AuthenticatedData: c.AuthenticatedData,
		ApplicationData: c.ApplicationData, Epoch: pm.Epoch,
	}, nil
}

// Storage of a reader, in a PastEpoch of the Group format (encoding.go):
//
//	struct { uint32 leaf; optional<opaque signature_key<V>> key; } SenderKey;
//	struct {
//	    opaque group_context<V>;
//	    opaque sender_data_secret<V>;
//	    opaque secret_tree<V>;
//	    SenderKey changed<V>;     // ascending by leaf
//	} PastReader;
//
// changed lists the leaves below the past epoch's leaf count whose
// signature key differs from the state's current tree (absent: blank in
// the past epoch), so that a reader costs a few keys, not a tree.

func (r *pastReader) marshal(w *codec.Writer, current *tree.Tree) error {
	secretBytes, err := r.secrets.marshal()
	if err != nil {
		return err
	}
	w.Opaque(codec.Marshal(&r.ctx))
	w.Opaque(r.senderDataSecret)
	w.Opaque(secretBytes)
	w.Vector(func(w *codec.Writer) {
		for l := range r.leaves {
			var now []byte
			if n := current.Leaf(treemath.LeafIndex(l)); n != nil {
				now = n.SignatureKey
			}
			then := r.senderKey(l)
			if (then == nil) == (now == nil) && bytes.Equal(then, now) {
				continue
			}
			w.Uint32(l)
			w.Optional(then != nil)
			if then != nil {
				w.Opaque(then)
			}
		}
	})
	return nil
}

// unmarshalReader decodes a reader of past epoch e for a state whose
// Public is p, checking that it belongs to the group and fits its suite.
func unmarshalReader(r *codec.Reader, p *Public, e uint64) (*pastReader, error) {
	ctxBytes := r.Opaque("past.group_context")
	sds := r.Opaque("past.sender_data_secret")
	secretBytes := r.Opaque("past.secret_tree")
	changed := map[uint32][]byte{}
	var order []uint32
	r.Each("past.changed", func(r *codec.Reader) {
		l := r.Uint32("past.changed.leaf")
		var key []byte
		if r.Optional("past.changed.key") {
			key = r.Opaque("past.changed.key")
		}
		changed[l] = key
		order = append(order, l)
	})
	if err := r.Err(); err != nil {
		return nil, err
	}
	var ctx message.GroupContext
	if err := codec.Unmarshal(ctxBytes, &ctx, "past.group_context"); err != nil {
		return nil, err
	}
	secrets := new(secrettree.Tree)
	if err := secrets.UnmarshalBinary(secretBytes); err != nil {
		return nil, err
	}
	s := p.suite
	switch {
	case ctx.Epoch != e || ctx.Epoch >= p.ctx.Epoch || ctx.CipherSuite != s.ID() || !bytes.Equal(ctx.GroupID, p.ctx.GroupID):
		return nil, fmt.Errorf("past epoch %d: group context of epoch %d, suite %d, another group or not past", e, ctx.Epoch, ctx.CipherSuite)
	case len(sds) != s.HashSize() || secrets.Suite() != s:
		return nil, fmt.Errorf("past epoch %d: secrets of another suite", e)
	case !slices.IsSorted(order) || len(order) != len(changed) || (len(order) > 0 && order[len(order)-1] >= secrets.LeafCount()):
		return nil, fmt.Errorf("past epoch %d: changed leaves out of order or range", e)
	}
	for l, then := range changed {
		var now []byte
		if n := p.tree.Leaf(treemath.LeafIndex(l)); n != nil {
			now = n.SignatureKey
		}
		if (then == nil) == (now == nil) && bytes.Equal(then, now) {
			// Only differences are stored, so that a state has one
			// encoding.
			return nil, fmt.Errorf("past epoch %d: leaf %d listed unchanged", e, l)
		}
	}
	return &pastReader{ctx: ctx, senderDataSecret: sds, secrets: &ratchets{tree: secrets}, leaves: secrets.LeafCount(), tree: p.tree, changed: changed}, nil
}
