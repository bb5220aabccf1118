package client

import (
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// receiveProposals processes the proposal messages a commit refers to,
// skipping our own (already cached when we sent them), and returns their
// ProposalRefs in the order given, each once.
func (st *state) receiveProposals(msgs [][]byte) ([][]byte, error) {
	refs := make([][]byte, 0, len(msgs))
	seen := map[string]bool{}
	for i, m := range msgs {
		ref, own := st.ownRef(m)
		if !own {
			r, err := st.g.Handle(m)
			if err != nil {
				return nil, fmt.Errorf("proposal %d: %w", i, err)
			}
			if r.ContentType != message.ContentProposal {
				return nil, fmt.Errorf("%w: message %d of the proposal list has content type %d", errBadRequest, i, r.ContentType)
			}
			ref = r.ProposalRef
		}
		if !seen[string(ref)] {
			seen[string(ref)] = true
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

func (s *Server) Commit(_ context.Context, req *mlsclientpb.CommitRequest) (*mlsclientpb.CommitResponse, error) {
	return s.commit("Commit", req)
}

func (s *Server) ReInitCommit(_ context.Context, req *mlsclientpb.CommitRequest) (*mlsclientpb.CommitResponse, error) {
	return s.commit("ReInitCommit", req)
}

// commit commits the by-reference proposals (processed first), and only
// those of the proposals cached in the epoch, and the described ones,
// keeping the result as the state's pending commit.
func (s *Server) commit(op string, req *mlsclientpb.CommitRequest) (*mlsclientpb.CommitResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus(op, err)
	}
	refs, err := st.receiveProposals(req.ByReference)
	if err != nil {
		return nil, toStatus(op, err)
	}
	var props []*message.Proposal
	for _, d := range req.ByValue {
		p, err := st.describe(d)
		if err != nil {
			return nil, toStatus(op, err)
		}
		props = append(props, p)
	}
	pc, err := st.g.Commit(group.CommitOptions{ProposalRefs: refs, Proposals: props, ForcePath: req.ForcePath, OmitRatchetTree: req.ExternalTree})
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

// handleCommit processes the proposals and then the commit; next is nil
// when the commit removed us.
func (s *Server) handleCommit(req *mlsclientpb.HandleCommitRequest) (st *state, next *group.Group, err error) {
	st, err = s.store.state(req.StateId)
	if err != nil {
		return nil, nil, err
	}
	if _, err := st.receiveProposals(req.Proposal); err != nil {
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
