package client

import (
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// memberLeaf finds the leaf of the member whose basic credential carries
// identity.
func memberLeaf(g *group.Group, identity []byte) (uint32, error) {
	return memberLeafIn(g.Public().Tree(), identity)
}

// describedProposal builds the proposal a ProposalDescription names, for
// the group g (nil for an external signer, which passes find instead).
func describedProposal(d *mlsclientpb.ProposalDescription, su *suite.Suite, groupID []byte, find func([]byte) (uint32, error)) (*message.Proposal, error) {
	switch string(d.ProposalType) {
	case "add":
		kp, err := decodeKeyPackage(d.KeyPackage)
		if err != nil {
			return nil, err
		}
		return group.AddProposal(kp), nil
	case "remove":
		leaf, err := find(d.RemovedId)
		if err != nil {
			return nil, err
		}
		return group.RemoveProposal(leaf), nil
	case "externalPSK":
		id, err := group.ExternalPSKID(su, d.PskId)
		if err != nil {
			return nil, err
		}
		return group.PSKProposal(id), nil
	case "resumptionPSK":
		id, err := group.ResumptionPSKID(su, message.ResumptionApplication, groupID, d.EpochId)
		if err != nil {
			return nil, err
		}
		return group.PSKProposal(id), nil
	case "groupContextExtensions":
		exts, err := extensions(d.Extensions)
		if err != nil {
			return nil, err
		}
		return group.GroupContextExtensionsProposal(exts), nil
	case "reinit":
		exts, err := extensions(d.Extensions)
		if err != nil {
			return nil, err
		}
		if d.CipherSuite > 0xffff {
			return nil, fmt.Errorf("%w: cipher suite %d", errBadRequest, d.CipherSuite)
		}
		return group.ReInitProposal(d.GroupId, suite.ID(d.CipherSuite), exts), nil
	}
	return nil, fmt.Errorf("%w: unknown proposal type %q", errBadRequest, d.ProposalType)
}

func (st *state) describe(d *mlsclientpb.ProposalDescription) (*message.Proposal, error) {
	return describedProposal(d, st.g.Public().Suite(), st.g.GroupID(), func(id []byte) (uint32, error) { return memberLeaf(st.g, id) })
}

// propose sends p from the state and remembers the message as ours.
func (s *Server) propose(op string, stateID uint32, build func(*state) (*message.Proposal, error)) (*mlsclientpb.ProposalResponse, error) {
	st, err := s.store.state(stateID)
	if err != nil {
		return nil, toStatus(op, err)
	}
	p, err := build(st)
	if err != nil {
		return nil, toStatus(op, err)
	}
	msg, ref, err := st.g.Propose(p, nil)
	if err != nil {
		return nil, toStatus(op, err)
	}
	st.markOwn(msg, ref)
	return &mlsclientpb.ProposalResponse{Proposal: msg}, nil
}

func (s *Server) AddProposal(_ context.Context, req *mlsclientpb.AddProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("AddProposal", req.StateId, func(st *state) (*message.Proposal, error) {
		return st.describe(&mlsclientpb.ProposalDescription{ProposalType: []byte("add"), KeyPackage: req.KeyPackage})
	})
}

func (s *Server) UpdateProposal(_ context.Context, req *mlsclientpb.UpdateProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	st, err := s.store.state(req.StateId)
	if err != nil {
		return nil, toStatus("UpdateProposal", err)
	}
	msg, ref, err := st.g.ProposeUpdate(nil)
	if err != nil {
		return nil, toStatus("UpdateProposal", err)
	}
	st.markOwn(msg, ref)
	return &mlsclientpb.ProposalResponse{Proposal: msg}, nil
}

func (s *Server) RemoveProposal(_ context.Context, req *mlsclientpb.RemoveProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("RemoveProposal", req.StateId, func(st *state) (*message.Proposal, error) {
		return st.describe(&mlsclientpb.ProposalDescription{ProposalType: []byte("remove"), RemovedId: req.RemovedId})
	})
}

func (s *Server) ExternalPSKProposal(_ context.Context, req *mlsclientpb.ExternalPSKProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("ExternalPSKProposal", req.StateId, func(st *state) (*message.Proposal, error) {
		return st.describe(&mlsclientpb.ProposalDescription{ProposalType: []byte("externalPSK"), PskId: req.PskId})
	})
}

func (s *Server) ResumptionPSKProposal(_ context.Context, req *mlsclientpb.ResumptionPSKProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("ResumptionPSKProposal", req.StateId, func(st *state) (*message.Proposal, error) {
		return st.describe(&mlsclientpb.ProposalDescription{ProposalType: []byte("resumptionPSK"), EpochId: req.EpochId})
	})
}

func (s *Server) GroupContextExtensionsProposal(_ context.Context, req *mlsclientpb.GroupContextExtensionsProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("GroupContextExtensionsProposal", req.StateId, func(st *state) (*message.Proposal, error) {
		return st.describe(&mlsclientpb.ProposalDescription{ProposalType: []byte("groupContextExtensions"), Extensions: req.Extensions})
	})
}

func (s *Server) ReInitProposal(_ context.Context, req *mlsclientpb.ReInitProposalRequest) (*mlsclientpb.ProposalResponse, error) {
	return s.propose("ReInitProposal", req.StateId, func(st *state) (*message.Proposal, error) {
		return st.describe(&mlsclientpb.ProposalDescription{ProposalType: []byte("reinit"), GroupId: req.GroupId, CipherSuite: req.CipherSuite, Extensions: req.Extensions})
	})
}
