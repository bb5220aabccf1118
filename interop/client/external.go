package client

import (
	"bytes"
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Joining and proposing from outside the group (RFC 9420 §12.1.8,
// §12.4.3.2): these RPCs start from a GroupInfo rather than a state.

// groupTree returns the ratchet tree of gi: its ratchet_tree extension,
// or else the one supplied out of band.
func groupTree(gi *message.GroupInfo, supplied []byte) (message.RatchetTree, error) {
	if e, ok := message.FindExtension(gi.Extensions, message.ExtensionRatchetTree); ok {
		var rt message.RatchetTree
		if err := codec.Unmarshal(e.Data, &rt, "ratchet_tree"); err != nil {
			return nil, fmt.Errorf("%w: %w", group.ErrInvalidGroupInfo, err)
		}
		return rt, nil
	}
	rt, err := decodeTree(supplied)
	if err != nil {
		return nil, err
	}
	if rt == nil {
		return nil, group.ErrMissingTree
	}
	return rt, nil
}

// treeLeaf finds the leaf whose basic credential carries identity; leaf
// i is node 2i of the array representation (RFC 9420 §7.8).
func treeLeaf(rt message.RatchetTree, identity []byte) (uint32, error) {
	for i := 0; i < len(rt); i += 2 {
		n := rt[i]
		if n != nil && n.Type == message.NodeTypeLeaf && n.Leaf != nil &&
			n.Leaf.Credential.Type == message.CredentialBasic && bytes.Equal(n.Leaf.Credential.Identity, identity) {
			return uint32(i / 2), nil
		}
	}
	return 0, fmt.Errorf("%w: no member with identity %q", errBadRequest, identity)
}

// memberLeafIn finds the leaf of t whose basic credential carries
// identity.
func memberLeafIn(t *tree.Tree, identity []byte) (uint32, error) {
	var leaf uint32
	found := false
	t.Members(func(l treemath.LeafIndex, n *message.LeafNode) bool {
		if n.Credential.Type == message.CredentialBasic && bytes.Equal(n.Credential.Identity, identity) {
			leaf, found = uint32(l), true
			return false
		}
		return true
	})
	if !found {
		return 0, fmt.Errorf("%w: no member with identity %q", errBadRequest, identity)
	}
	return leaf, nil
}

func (s *Server) ExternalJoin(_ context.Context, req *mlsclientpb.ExternalJoinRequest) (*mlsclientpb.ExternalJoinResponse, error) {
	resp, err := s.externalJoin(req)
	return resp, toStatus("ExternalJoin", err)
}

func (s *Server) externalJoin(req *mlsclientpb.ExternalJoinRequest) (*mlsclientpb.ExternalJoinResponse, error) {
	gi, err := decodeGroupInfo(req.GroupInfo)
	if err != nil {
		return nil, err
	}
	me := &member{identity: req.Identity, suite: gi.GroupContext.CipherSuite, encrypt: req.EncryptHandshake, psks: group.NewPSKStore()}
	su, err := suite.Lookup(me.suite)
	if err != nil {
		return nil, err
	}
	kp, err := me.keyPackage(me.suite)
	if err != nil {
		return nil, err
	}
	me.sigKey = kp.SignatureKey
	rt, err := decodeTree(req.RatchetTree)
	if err != nil {
		return nil, err
	}
	o := &group.ExternalJoinOptions{RatchetTree: rt, Config: me.config()}
	if req.RemovePrior {
		full, err := groupTree(gi, req.RatchetTree)
		if err != nil {
			return nil, err
		}
		if o.ResyncLeaf, err = treeLeaf(full, req.Identity); err != nil {
			return nil, err
		}
		o.Resync = true
	}
	for _, p := range req.Psks {
		me.psks.AddExternal(p.PskId, p.PskSecret)
		id, err := group.ExternalPSKID(su, p.PskId)
		if err != nil {
			return nil, err
		}
		o.PSKs = append(o.PSKs, id)
	}
	pc, err := group.JoinExternal(gi, kp, o)
	if err != nil {
		return nil, err
	}
	g := pc.State()
	return &mlsclientpb.ExternalJoinResponse{StateId: s.store.putState(g, me), Commit: pc.Commit, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *Server) NewMemberAddProposal(_ context.Context, req *mlsclientpb.NewMemberAddProposalRequest) (*mlsclientpb.NewMemberAddProposalResponse, error) {
	resp, err := s.newMemberAddProposal(req)
	return resp, toStatus("NewMemberAddProposal", err)
}

func (s *Server) newMemberAddProposal(req *mlsclientpb.NewMemberAddProposalRequest) (*mlsclientpb.NewMemberAddProposalResponse, error) {
	gi, err := decodeGroupInfo(req.GroupInfo)
	if err != nil {
		return nil, err
	}
	ctx := gi.GroupContext
	me := &member{identity: req.Identity, suite: ctx.CipherSuite, psks: group.NewPSKStore()}
	kp, err := me.keyPackage(me.suite)
	if err != nil {
		return nil, err
	}
	me.sigKey = kp.SignatureKey
	msg, err := group.ExternalProposal(kp.SignatureKey, ctx.GroupID, ctx.Epoch, 0, true, group.AddProposal(&kp.KeyPackage), nil)
	if err != nil {
		return nil, err
	}
	return &mlsclientpb.NewMemberAddProposalResponse{
		TransactionId:  s.store.putTransaction(&transaction{bundle: kp, me: me}),
		Proposal:       msg,
		InitPriv:       kp.InitKey.Bytes(),
		EncryptionPriv: kp.EncryptionKey.Bytes(),
		SignaturePriv:  kp.SignatureKey.Bytes(),
	}, nil
}

func (s *Server) CreateExternalSigner(_ context.Context, req *mlsclientpb.CreateExternalSignerRequest) (*mlsclientpb.CreateExternalSignerResponse, error) {
	if req.CipherSuite > 0xffff {
		return nil, toStatus("CreateExternalSigner", fmt.Errorf("%w: cipher suite %d", suite.ErrUnsupportedSuite, req.CipherSuite))
	}
	id := suite.ID(req.CipherSuite)
	su, err := suite.Lookup(id)
	if err != nil {
		return nil, toStatus("CreateExternalSigner", err)
	}
	priv, err := su.GenerateSignatureKey()
	if err != nil {
		return nil, toStatus("CreateExternalSigner", err)
	}
	es := message.ExternalSender{SignatureKey: priv.Public().Bytes(), Credential: message.BasicCredential(req.Identity)}
	return &mlsclientpb.CreateExternalSignerResponse{
		SignerId:       s.store.putSigner(&signer{suite: id, sigKey: priv}),
		ExternalSender: codec.Marshal(&es),
	}, nil
}

// AddExternalSigner proposes the group's extensions with the signer
// appended to external_senders (one extension holding the vector, RFC
// 9420 §12.1.8.1).
func (s *Server) AddExternalSigner(_ context.Context, req *mlsclientpb.AddExternalSignerRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("AddExternalSigner", req.StateId, func(st *state) (*message.Proposal, error) {
		var es message.ExternalSender
		if err := codec.Unmarshal(req.ExternalSender, &es, "external_sender"); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadRequest, err)
		}
		var exts []message.Extension
		var senders message.ExternalSenders
		for _, e := range st.g.Public().GroupContext().Extensions {
			if e.Type != message.ExtensionExternalSenders {
				exts = append(exts, e)
				continue
			}
			if err := codec.Unmarshal(e.Data, &senders, "external_senders"); err != nil {
				return nil, fmt.Errorf("%w: current external_senders: %w", group.ErrMalformed, err)
			}
		}
		senders = append(senders, es)
		exts = append(exts, message.Extension{Type: message.ExtensionExternalSenders, Data: codec.Marshal(senders)})
		return group.GroupContextExtensionsProposal(exts), nil
	})
}

func (s *Server) ExternalSignerProposal(_ context.Context, req *mlsclientpb.ExternalSignerProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	resp, err := s.externalSignerProposal(req)
	return resp, toStatus("ExternalSignerProposal", err)
}

func (s *Server) externalSignerProposal(req *mlsclientpb.ExternalSignerProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	sg, err := s.store.signer(req.SignerId)
	if err != nil {
		return nil, err
	}
	gi, err := decodeGroupInfo(req.GroupInfo)
	if err != nil {
		return nil, err
	}
	ctx := gi.GroupContext
	if ctx.CipherSuite != sg.suite {
		return nil, fmt.Errorf("%w: signer suite %d, group suite %d", errBadRequest, sg.suite, ctx.CipherSuite)
	}
	su, err := suite.Lookup(ctx.CipherSuite)
	if err != nil {
		return nil, err
	}
	if req.Description == nil {
		return nil, fmt.Errorf("%w: no proposal description", errBadRequest)
	}
	// The proposal names the group, epoch and leaves the GroupInfo
	// describes, so only a GroupInfo signed by a member and a tree that
	// matches it are trusted (RFC 9420 §12.1.8, §12.4.3.2).
	rt, err := decodeTree(req.RatchetTree)
	if err != nil {
		return nil, err
	}
	t, err := group.VerifyGroupInfo(gi, rt, group.Config{})
	if err != nil {
		return nil, err
	}
	find := func(id []byte) (uint32, error) { return memberLeafIn(t, id) }
	p, err := describedProposal(req.Description, su, ctx.GroupID, find)
	if err != nil {
		return nil, err
	}
	msg, err := group.ExternalProposal(sg.sigKey, ctx.GroupID, ctx.Epoch, req.SignerIndex, false, p, nil)
	if err != nil {
		return nil, err
	}
	return &mlsclientpb.ProposalResponse{Proposal: msg}, nil
}
