package group

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Storage formats. Each starts with a version byte so that a later format
// can be told apart; the three parts encode separately because a Public
// may be stored once for many members (DESIGN §4).
//
//	Public:  uint8 1; opaque group_context<V>; opaque tree<V>;
//	         opaque confirmation_tag<V>; opaque epoch<V>;
//	         opaque secret_tree<V>; optional<ReInit> reinit;
//	Private: uint8 1; uint32 leaf; opaque signature_priv<V>;
//	         opaque path_state<V>;
//	Group:   uint8 2; opaque public<V>; optional<opaque private<V>>;
//	         PastEpoch history<V>; CachedProposal proposals<V>;
//	         OwnUpdate own_updates<V>;
//	PastEpoch: uint64 epoch; optional<opaque resumption_psk<V>>;
//	         optional<opaque past_reader<V>>;  // PastReader, pastepochs.go
//
// Group format 1 (still read) had PastEpoch = uint64 epoch;
// opaque resumption_psk<V>.
const (
	formatV1 = 1
	formatV2 = 2
)

// MarshalBinary encodes p, including the current state of its secret
// tree's ratchets.
func (p *Public) MarshalBinary() ([]byte, error) {
	treeBytes, err := p.tree.MarshalBinary()
	if err != nil {
		return nil, err
	}
	// The mutex also guards the epoch's kept init secret, which a DMLS
	// commit punctures in place (dmls.go).
	p.mu.Lock()
	epochBytes, err := p.epoch.MarshalBinary()
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	secretBytes, err := p.secrets.marshal()
	if err != nil {
		return nil, err
	}
	w := codec.NewWriter(len(treeBytes) + len(secretBytes) + 512)
	w.Uint8(formatV1)
	w.Opaque(p.ctxBytes)
	w.Opaque(treeBytes)
	w.Opaque(p.confirmationTag)
	w.Opaque(epochBytes)
	w.Opaque(secretBytes)
	writeReInit(w, p.reinit)
	return w.Bytes(), nil
}

// UnmarshalPublic decodes a Public encoded by MarshalBinary and checks
// that its parts agree (suite, tree hash, leaf count).
func UnmarshalPublic(data []byte) (*Public, error) {
	r := codec.NewReader(data)
	if v := r.Uint8("public.version"); r.Err() == nil && v != formatV1 {
		return nil, fmt.Errorf("%w: public format %d", ErrInvalidState, v)
	}
	ctxBytes := r.Opaque("public.group_context")
	treeBytes := r.Opaque("public.tree")
	tag := r.Opaque("public.confirmation_tag")
	epochBytes := r.Opaque("public.epoch")
	secretBytes := r.Opaque("public.secret_tree")
	reinit := readReInit(r, "public.reinit")
	if err := r.Finish("public"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	var epoch keyschedule.Epoch
	if err := epoch.UnmarshalBinary(epochBytes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	st, err := decodeStatic(ctxBytes, treeBytes, tag, epoch, reinit)
	if err != nil {
		return nil, err
	}
	// st is this Public's alone: its tree and secrets need no copies.
	return st.public(st.epoch, st.tree, secretBytes)
}

// A Public can also be stored in three parts, so that a caller writes
// each only when it changes (DESIGN §4): what never changes after the
// epoch is made, the init state that a DMLS epoch punctures once per child
// it derives, and the secret tree that every PrivateMessage sent or read
// advances. Public.Changes tells which mutable part changed.
//
//	PublicStatic: uint8 version = 1; CipherSuite cipher_suite;
//	              opaque group_context<V>; opaque tree<V>;
//	              opaque confirmation_tag<V>;
//	              opaque epoch_secrets<V>;   // keyschedule EpochSecrets
//	              optional<ReInit> reinit;
//	InitState:    uint8 version = 1; CipherSuite cipher_suite;
//	              opaque epoch_id<V>;        // dmls_epoch (Public.EpochID)
//	              opaque init_secret<V>;     // a DMLS PRF state, or RFC 9420's init_secret
//	SecretTree:   uint8 version = 1; CipherSuite cipher_suite;
//	              opaque epoch_id<V>;
//	              opaque secret_tree<V>;     // secrettree's SecretTreeState
//
// The mutable parts name their epoch, so that parts of different epochs
// mixed up by the caller are refused rather than silently combined. The
// interim transcript hash is not stored: it follows from the
// GroupContext's confirmed transcript hash and the confirmation tag.
const partsVersion = 1

// MarshalStatic encodes the part of p that never changes. It holds the
// epoch's secrets.
func (p *Public) MarshalStatic() ([]byte, error) {
	treeBytes, err := p.tree.MarshalBinary()
	if err != nil {
		return nil, err
	}
	// The secrets other than the init secret never change; the copy
	// under the lock only guards the init secret's slice header.
	p.mu.Lock()
	epoch := p.epoch
	p.mu.Unlock()
	secrets := epoch.MarshalSecrets()
	w := codec.NewWriter(len(treeBytes) + len(secrets) + len(p.ctxBytes) + 64)
	stored.WriteHeader(w, partsVersion, p.suite.ID())
	w.Opaque(p.ctxBytes)
	w.Opaque(treeBytes)
	w.Opaque(p.confirmationTag)
	w.Opaque(secrets)
	writeReInit(w, p.reinit)
	return w.Bytes(), nil
}

// MarshalInitState encodes p's init state as it stands: the secret its
// children's init secrets come from (under DMLS, the punctured PRF).
func (p *Public) MarshalInitState() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.markedPart(p.epoch.InitSecret), nil
}

// MarshalSecretTree encodes p's secret tree as it stands.
func (p *Public) MarshalSecretTree() ([]byte, error) {
	tree, err := p.secrets.marshal()
	if err != nil {
		return nil, err
	}
	return p.markedPart(tree), nil
}

// markedPart wraps a mutable part with the header and the epoch's id.
func (p *Public) markedPart(data []byte) []byte {
	w := codec.NewWriter(len(data) + len(p.epoch.ID) + 16)
	stored.WriteHeader(w, partsVersion, p.suite.ID())
	w.Opaque(p.epoch.ID)
	w.Opaque(data)
	return w.Bytes()
}

// readMarkedPart unwraps a mutable part of epoch, of suite s.
func readMarkedPart(data []byte, name string, s *suite.Suite, epoch []byte) ([]byte, error) {
	r := codec.NewReader(data)
	ps := stored.ReadHeader(r, name, partsVersion, ErrInvalidState)
	id := r.Opaque(name + ".epoch_id")
	part := r.Opaque(name + ".data")
	if err := r.Finish(name); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if ps.ID() != s.ID() {
		return nil, fmt.Errorf("%w: %s of another cipher suite", ErrInvalidState, name)
	}
	if !bytes.Equal(id, epoch) {
		return nil, fmt.Errorf("%w: %s of another epoch", ErrInvalidState, name)
	}
	return part, nil
}

// UnmarshalPublicParts decodes a Public stored in parts by MarshalStatic,
// MarshalInitState and MarshalSecretTree, and checks that they agree. A
// caller that loads the same epoch often keeps its UnmarshalStatic.
func UnmarshalPublicParts(static, initState, secretTree []byte) (*Public, error) {
	st, err := UnmarshalStatic(static)
	if err != nil {
		return nil, err
	}
	defer st.Destroy()
	return st.Public(initState, secretTree)
}

// writeReInit writes optional<ReInit>.
func writeReInit(w *codec.Writer, reinit *message.ReInit) {
	w.Optional(reinit != nil)
	if reinit != nil {
		reinit.MarshalMLS(w)
	}
}

// readReInit reads optional<ReInit>.
func readReInit(r *codec.Reader, field string) *message.ReInit {
	if !r.Optional(field) {
		return nil
	}
	reinit := new(message.ReInit)
	reinit.UnmarshalMLS(r)
	return reinit
}

// checkParts checks that the parts of a Public agree: one suite, a
// confirmation tag of its hash's size, and the tree the context names.
func checkParts(s *suite.Suite, ctx *message.GroupContext, t *tree.Tree, tag []byte, epoch *keyschedule.Epoch) error {
	switch {
	case t.Suite().ID() != s.ID() || epoch.Suite != s.ID():
		return fmt.Errorf("%w: parts of different cipher suites", ErrInvalidState)
	case len(tag) != s.HashSize():
		return fmt.Errorf("%w: confirmation tag of %d bytes", ErrInvalidState, len(tag))
	case !bytes.Equal(t.RootHash(), ctx.TreeHash):
		return fmt.Errorf("%w: tree hash does not match the group context", ErrInvalidState)
	}
	return nil
}

// MarshalBinary encodes p.
func (p *Private) MarshalBinary() ([]byte, error) {
	pathBytes, err := p.path.MarshalBinary()
	if err != nil {
		return nil, err
	}
	signPriv := p.signKey.Bytes()
	w := codec.NewWriter(len(pathBytes) + len(signPriv) + 16)
	w.Uint8(formatV1)
	w.Uint32(uint32(p.leaf))
	w.Opaque(signPriv)
	w.Opaque(pathBytes)
	return w.Bytes(), nil
}

// UnmarshalPrivate decodes a Private encoded by MarshalBinary.
func UnmarshalPrivate(data []byte) (*Private, error) {
	r := codec.NewReader(data)
	if v := r.Uint8("private.version"); r.Err() == nil && v != formatV1 {
		return nil, fmt.Errorf("%w: private format %d", ErrInvalidState, v)
	}
	leaf := r.Uint32("private.leaf")
	signPriv := r.Opaque("private.signature_priv")
	pathBytes := r.Opaque("private.path")
	if err := r.Finish("private"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	path := new(treekem.PrivateState)
	if err := path.UnmarshalBinary(pathBytes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if path.Leaf() != treemath.LeafIndex(leaf) {
		return nil, fmt.Errorf("%w: path state of leaf %d for leaf %d", ErrInvalidState, path.Leaf(), leaf)
	}
	signKey, err := path.Suite().NewSignaturePrivateKey(signPriv)
	if err != nil {
		return nil, fmt.Errorf("%w: signature key: %w", ErrInvalidState, err)
	}
	return &Private{leaf: treemath.LeafIndex(leaf), signKey: signKey, path: path}, nil
}

// MarshalBinary encodes the whole state of g: its public and private
// parts, the retained resumption PSKs and the epoch's cached proposals.
// The Config is not encoded.
func (g *Group) MarshalBinary() ([]byte, error) {
	pub, err := g.pub.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var priv []byte
	if g.priv != nil {
		if priv, err = g.priv.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	proposals, own := g.local.snapshot()
	history := make([][]byte, len(g.history))
	for i, h := range g.history {
		if h.reader == nil {
			continue
		}
		var rw codec.Writer
		if err := h.reader.marshal(&rw, g.pub.tree); err != nil {
			return nil, err
		}
		history[i] = rw.Bytes()
	}
	w := codec.NewWriter(len(pub) + len(priv) + 256)
	w.Uint8(formatV2)
	w.Opaque(pub)
	w.Optional(g.priv != nil)
	if g.priv != nil {
		w.Opaque(priv)
	}
	w.Vector(func(w *codec.Writer) {
		for i, h := range g.history {
			w.Uint64(h.epoch)
			w.Optional(h.resumption != nil)
			if h.resumption != nil {
				w.Opaque(h.resumption)
			}
			w.Optional(history[i] != nil)
			if history[i] != nil {
				w.Opaque(history[i])
			}
		}
	})
	w.Vector(func(w *codec.Writer) {
		for _, c := range proposals {
			w.Opaque(c.ref)
			c.sender.MarshalMLS(w)
			c.proposal.MarshalMLS(w)
		}
	})
	w.Vector(func(w *codec.Writer) {
		for ref, key := range own {
			w.Opaque([]byte(ref))
			w.Opaque(key.Bytes())
		}
	})
	return w.Bytes(), nil
}

// UnmarshalGroup decodes a state encoded by Group.MarshalBinary and
// checks that the private keys match the public tree. Past epochs beyond
// what cfg keeps are dropped.
func UnmarshalGroup(data []byte, cfg Config) (*Group, error) {
	r := codec.NewReader(data)
	v := r.Uint8("group.version")
	if r.Err() == nil && v != formatV1 && v != formatV2 {
		return nil, fmt.Errorf("%w: group format %d", ErrInvalidState, v)
	}
	pubBytes := r.Opaque("group.public")
	var privBytes []byte
	if r.Optional("group.private") {
		privBytes = r.Opaque("group.private")
	}
	var history []pastEpoch
	var readers [][]byte
	r.Each("group.history", func(r *codec.Reader) {
		h := pastEpoch{epoch: r.Uint64("group.history.epoch")}
		var reader []byte
		if v == formatV1 {
			h.resumption = r.Opaque("group.history.psk")
		} else {
			if r.Optional("group.history.psk") {
				h.resumption = r.Opaque("group.history.psk")
			}
			if r.Optional("group.history.reader") {
				reader = r.Opaque("group.history.reader")
			}
		}
		history = append(history, h)
		readers = append(readers, reader)
	})
	local := &epochLocal{}
	ownUpdates := map[string][]byte{}
	r.Each("group.proposals", func(r *codec.Reader) {
		var c cachedProposal
		c.ref = r.Opaque("group.proposals.ref")
		c.proposal = new(message.Proposal)
		c.sender.UnmarshalMLS(r)
		c.proposal.UnmarshalMLS(r)
		local.proposals = append(local.proposals, c)
	})
	r.Each("group.own_updates", func(r *codec.Reader) {
		ref, key := r.Opaque("group.own_updates.ref"), r.Opaque("group.own_updates.key")
		ownUpdates[string(ref)] = key
	})
	if err := r.Finish("group"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	pub, err := UnmarshalPublic(pubBytes)
	if err != nil {
		return nil, err
	}
	for ref, enc := range ownUpdates {
		key, err := pub.suite.NewHPKEPrivateKey(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: update key: %w", ErrInvalidState, err)
		}
		if local.ownUpdates == nil {
			local.ownUpdates = map[string]*suite.HPKEPrivateKey{}
		}
		local.ownUpdates[ref] = key
	}
	for i := range history {
		h := &history[i]
		if h.epoch >= pub.ctx.Epoch || (i > 0 && h.epoch <= history[i-1].epoch) {
			return nil, fmt.Errorf("%w: past epoch %d out of order", ErrInvalidState, h.epoch)
		}
		if h.resumption != nil && len(h.resumption) != pub.suite.HashSize() {
			return nil, fmt.Errorf("%w: resumption psk of %d bytes", ErrInvalidState, len(h.resumption))
		}
		if readers[i] == nil {
			continue
		}
		rr := codec.NewReader(readers[i])
		reader, err := unmarshalReader(rr, pub, h.epoch)
		if err == nil {
			err = rr.Finish("past_reader")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
		}
		h.reader = reader
	}
	g := &Group{pub: pub, cfg: cfg, local: local, history: cfg.trimHistory(history)}
	if privBytes != nil {
		if g.priv, err = UnmarshalPrivate(privBytes); err != nil {
			return nil, err
		}
		if g.priv.path.Suite().ID() != pub.suite.ID() {
			return nil, fmt.Errorf("%w: private state of another suite", ErrInvalidState)
		}
		if err := g.priv.path.Check(pub.tree); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
		}
	}
	return g, nil
}
