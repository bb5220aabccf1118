package client

import (
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Reinitialisation (RFC 9420 §11.2) and branching (§11.3): both start a
// new group bound to the old one by a resumption PSK.

// suspend keeps a group whose last commit carried a ReInit and makes our
// KeyPackage for its successor.
func (s *Server) suspend(me *member, g *group.Group) (*mlsclientpb.HandleReInitCommitResponse, error) {
	ri := g.Public().ReInit()
	if ri == nil {
		return nil, fmt.Errorf("%w: the commit carried no ReInit proposal", errBadRequest)
	}
	kp, err := me.keyPackage(ri.CipherSuite)
	if err != nil {
		return nil, err
	}
	next := &member{identity: me.identity, suite: ri.CipherSuite, sigKey: kp.SignatureKey, encrypt: me.encrypt, psks: me.psks}
	id := s.store.putSuspended(&suspended{g: g, bundle: kp, me: next})
	return &mlsclientpb.HandleReInitCommitResponse{ReinitId: id, KeyPackage: encodeKeyPackage(&kp.KeyPackage), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *Server) HandlePendingReInitCommit(_ context.Context, req *mlsclientpb.HandlePendingCommitRequest) (*mlsclientpb.HandleReInitCommitResponse, error) {
	st, next, err := s.adoptPending(req.StateId)
	if err != nil {
		return nil, toStatus("HandlePendingReInitCommit", err)
	}
	resp, err := s.suspend(st.me, next)
	return resp, toStatus("HandlePendingReInitCommit", err)
}

func (s *Server) HandleReInitCommit(_ context.Context, req *mlsclientpb.HandleCommitRequest) (*mlsclientpb.HandleReInitCommitResponse, error) {
	st, next, err := s.handleCommit(req)
	if err != nil {
		return nil, toStatus("HandleReInitCommit", err)
	}
	if next == nil {
		return nil, toStatus("HandleReInitCommit", fmt.Errorf("%w: the ReInit commit removed us", group.ErrNotMember))
	}
	resp, err := s.suspend(st.me, next)
	return resp, toStatus("HandleReInitCommit", err)
}

func decodeKeyPackages(data [][]byte) ([]*message.KeyPackage, error) {
	kps := make([]*message.KeyPackage, 0, len(data))
	for _, d := range data {
		kp, err := decodeKeyPackage(d)
		if err != nil {
			return nil, err
		}
		kps = append(kps, kp)
	}
	return kps, nil
}

// subgroupResponse stores our state in a new group made by pc.
func (s *Server) subgroupResponse(pc *group.PendingCommit, me *member, externalTree bool) *mlsclientpb.CreateSubgroupResponse {
	g := pc.State()
	resp := &mlsclientpb.CreateSubgroupResponse{StateId: s.store.putState(g, me), Welcome: pc.Welcome, EpochAuthenticator: g.EpochAuthenticator()}
	if externalTree {
		resp.RatchetTree = encodeTree(g)
	}
	return resp
}

func (s *Server) ReInitWelcome(_ context.Context, req *mlsclientpb.ReInitWelcomeRequest) (*mlsclientpb.CreateSubgroupResponse, error) {
	sus, err := s.store.suspendedGroup(req.ReinitId)
	if err != nil {
		return nil, toStatus("ReInitWelcome", err)
	}
	kps, err := decodeKeyPackages(req.KeyPackage)
	if err != nil {
		return nil, toStatus("ReInitWelcome", err)
	}
	// The successor's first commit always has a path (group.ReInit), so
	// force_path holds whatever the runner asks.
	pc, err := sus.g.ReInit(sus.bundle, kps)
	if err != nil {
		return nil, toStatus("ReInitWelcome", err)
	}
	return s.subgroupResponse(pc, sus.me, req.ExternalTree), nil
}

func (s *Server) HandleReInitWelcome(_ context.Context, req *mlsclientpb.HandleReInitWelcomeRequest) (*mlsclientpb.JoinGroupResponse, error) {
	sus, err := s.store.suspendedGroup(req.ReinitId)
	if err != nil {
		return nil, toStatus("HandleReInitWelcome", err)
	}
	rt, err := decodeTree(req.RatchetTree)
	if err != nil {
		return nil, toStatus("HandleReInitWelcome", err)
	}
	sus.me.psks.AddResumptionFrom(sus.g)
	g, err := group.Join(req.Welcome, sus.bundle, &group.JoinOptions{RatchetTree: rt, Config: sus.me.config()})
	if err != nil {
		return nil, toStatus("HandleReInitWelcome", err)
	}
	// Members are matched by their basic credentials' identities: the
	// harness's members join with fresh KeyPackages.
	if err := g.CheckReInit(sus.g); err != nil {
		return nil, toStatus("HandleReInitWelcome", err)
	}
	return &mlsclientpb.JoinGroupResponse{StateId: s.store.putState(g, sus.me), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *Server) CreateBranch(_ context.Context, req *mlsclientpb.CreateBranchRequest) (*mlsclientpb.CreateSubgroupResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("CreateBranch", err)
	}
	exts, err := extensions(req.Extensions)
	if err != nil {
		return nil, toStatus("CreateBranch", err)
	}
	kps, err := decodeKeyPackages(req.KeyPackages)
	if err != nil {
		return nil, toStatus("CreateBranch", err)
	}
	kp, err := st.me.keyPackage(st.me.suite)
	if err != nil {
		return nil, toStatus("CreateBranch", err)
	}
	pc, err := st.g.Branch(req.GroupId, exts, kp, kps)
	if err != nil {
		return nil, toStatus("CreateBranch", err)
	}
	return s.subgroupResponse(pc, st.me, req.ExternalTree), nil
}

func (s *Server) HandleBranch(_ context.Context, req *mlsclientpb.HandleBranchRequest) (*mlsclientpb.HandleBranchResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("HandleBranch", err)
	}
	t, err := s.store.transaction(req.TransactionId)
	if err != nil {
		return nil, toStatus("HandleBranch", err)
	}
	rt, err := decodeTree(req.RatchetTree)
	if err != nil {
		return nil, toStatus("HandleBranch", err)
	}
	me := *t.me
	me.encrypt = st.me.encrypt
	me.psks.AddResumptionFrom(st.g)
	g, err := group.Join(req.Welcome, t.bundle, &group.JoinOptions{RatchetTree: rt, Config: me.config()})
	if err != nil {
		return nil, toStatus("HandleBranch", err)
	}
	if err := g.CheckBranch(st.g); err != nil {
		return nil, toStatus("HandleBranch", err)
	}
	return &mlsclientpb.HandleBranchResponse{StateId: s.store.putState(g, &me), EpochAuthenticator: g.EpochAuthenticator()}, nil
}
