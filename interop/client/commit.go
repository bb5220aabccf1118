package client

import (
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// receiveProposals processes the proposal messages a commit refers to,
// skipping our own (already cached when we sent them).
func (st *state) receiveProposals(msgs [][]byte) error {
	for i, m := range msgs {
		if st.isOwn(m) {
			continue
		}
		r, err := st.g.Handle(m)
		if err != nil {
			return fmt.Errorf("proposal %d: %w", i, err)
		}
		if r.ContentType != message.ContentProposal {
			return fmt.Errorf("%w: message %d of the proposal list has content type %d", errBadRequest, i, r.ContentType)
		}
	}
	return nil
}

func (s *Server) Commit(_ context.Context, req *mlsclientpb.CommitRequest) (*mlsclientpb.CommitResponse, error) {
	return s.commit("Commit", req)
}

func (s *Server) ReInitCommit(_ context.Context, req *mlsclientpb.CommitRequest) (*mlsclientpb.CommitResponse, error) {
	return s.commit("ReInitCommit", req)
}

// commit commits the by-reference proposals (processed first) and the
// described ones, keeping the result as the state's pending commit.
func (s *Server) commit(op string, req *mlsclientpb.CommitRequest) (*mlsclientpb.CommitResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus(op, err)
	}
	if err := st.receiveProposals(req.ByReference); err != nil {
		return nil, toStatus(op, err)
	}
	// The group layer commits every proposal cached in the epoch; it
	// cannot leave some out, so the runner must name all of them.
	if n := st.g.PendingProposals(); n != countDistinct(req.ByReference) {
		return nil, unimplemented(fmt.Sprintf("%s: the epoch holds %d proposals but %d are to be committed; mls/group cannot commit a subset of its cached proposals", op, n, countDistinct(req.ByReference)))
	}
	var props []*message.Proposal
	for _, d := range req.ByValue {
		p, err := st.describe(d)
		if err != nil {
			return nil, toStatus(op, err)
		}
		props = append(props, p)
	}
	pc, err := st.g.Commit(group.CommitOptions{Proposals: props, ForcePath: req.ForcePath, OmitRatchetTree: req.ExternalTree})
	if err != nil {
		return nil, toStatus(op, err)
	}
	st.mu.Lock()
	st.pending = pc
	st.mu.Unlock()
	resp := &mlsclientpb.CommitResponse{Commit: pc.Commit, Welcome: pc.Welcome}
	if req.ExternalTree {
		resp.RatchetTree = encodeTree(pc.State())
	}
	return resp, nil
}

func countDistinct(msgs [][]byte) int {
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[string(m)] = true
	}
	return len(seen)
}

// handleCommit processes the proposals and then the commit; next is nil
// when the commit removed us.
func (s *Server) handleCommit(req *mlsclientpb.HandleCommitRequest) (st *state, next *group.Group, err error) {
	st, err = s.store.state(req.StateId)
	if err != nil {
		return nil, nil, err
	}
	if err := st.receiveProposals(req.Proposal); err != nil {
		return nil, nil, err
	}
	r, err := st.g.Handle(req.Commit)
	if err != nil {
		return nil, nil, err
	}
	if r.ContentType != message.ContentCommit {
		return nil, nil, fmt.Errorf("%w: content type %d is not a commit", errBadRequest, r.ContentType)
	}
	return st, r.Next, nil
}

func (s *Server) HandleCommit(_ context.Context, req *mlsclientpb.HandleCommitRequest) (*mlsclientpb.HandleCommitResponse, error) {
	st, next, err := s.handleCommit(req)
	if err != nil {
		return nil, toStatus("HandleCommit", err)
	}
	if next == nil {
		// Removed: there is no next state and no epoch authenticator.
		return &mlsclientpb.HandleCommitResponse{}, nil
	}
	return &mlsclientpb.HandleCommitResponse{StateId: s.store.putState(next, st.me), EpochAuthenticator: next.EpochAuthenticator()}, nil
}

// adoptPending applies the state's pending commit.
func (s *Server) adoptPending(id uint32) (*state, *group.Group, error) {
	st, err := s.store.state(id)
	if err != nil {
		return nil, nil, err
	}
	st.mu.Lock()
	pc := st.pending
	st.mu.Unlock()
	if pc == nil {
		return nil, nil, fmt.Errorf("%w: state %d", errNoPending, id)
	}
	next, err := st.g.HandlePendingCommit(pc)
	if err != nil {
		return nil, nil, err
	}
	return st, next, nil
}

func (s *Server) HandlePendingCommit(_ context.Context, req *mlsclientpb.HandlePendingCommitRequest) (*mlsclientpb.HandleCommitResponse, error) {
	st, next, err := s.adoptPending(req.StateId)
	if err != nil {
		return nil, toStatus("HandlePendingCommit", err)
	}
	return &mlsclientpb.HandleCommitResponse{StateId: s.store.putState(next, st.me), EpochAuthenticator: next.EpochAuthenticator()}, nil
}
