package client

import (
	"context"
	"testing"

	pb "github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// FuzzPeerBytes feeds arbitrary bytes to every RPC that decodes what a
// peer produced: each must answer with a status, never panic.
func FuzzPeerBytes(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1}, []byte{})
	f.Add([]byte{0, 1, 0, 4, 0}, []byte{0x40, 0x10})
	f.Fuzz(func(t *testing.T, msg, tree []byte) {
		s := NewServer()
		ctx := context.Background()
		id := newGroup(t, s, suite.X25519AES128GCMSHA256Ed25519, "alice")
		kp, err := s.CreateKeyPackage(ctx, &pb.CreateKeyPackageRequest{CipherSuite: 1, Identity: []byte("bob")})
		if err != nil {
			t.Fatal(err)
		}
		signer, err := s.CreateExternalSigner(ctx, &pb.CreateExternalSignerRequest{CipherSuite: 1, Identity: []byte("ds")})
		if err != nil {
			t.Fatal(err)
		}
		s.Unprotect(ctx, &pb.UnprotectRequest{StateId: id, Ciphertext: msg})
		s.HandleCommit(ctx, &pb.HandleCommitRequest{StateId: id, Proposal: [][]byte{msg}, Commit: msg})
		s.JoinGroup(ctx, &pb.JoinGroupRequest{TransactionId: kp.TransactionId, Welcome: msg, RatchetTree: tree})
		s.ExternalJoin(ctx, &pb.ExternalJoinRequest{GroupInfo: msg, RatchetTree: tree, Identity: []byte("carol"), RemovePrior: true})
		s.NewMemberAddProposal(ctx, &pb.NewMemberAddProposalRequest{GroupInfo: msg, Identity: []byte("dave")})
		s.AddExternalSigner(ctx, &pb.AddExternalSignerRequest{StateId: id, ExternalSender: msg})
		s.ExternalSignerProposal(ctx, &pb.ExternalSignerProposalRequest{SignerId: signer.SignerId, GroupInfo: msg, RatchetTree: tree,
			Description: &pb.ProposalDescription{ProposalType: []byte("remove"), RemovedId: []byte("alice")}})
		s.Commit(ctx, &pb.CommitRequest{StateId: id, ByValue: []*pb.ProposalDescription{{ProposalType: []byte("add"), KeyPackage: msg}}})
		s.CreateBranch(ctx, &pb.CreateBranchRequest{StateId: id, GroupId: []byte("b"), KeyPackages: [][]byte{msg}})
	})
}
