package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func readHex(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantStatus checks the gRPC code of err and that its message names the
// RFC reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.Contains(st.Message(), reason) {
		t.Fatalf("error %v, want code %v with %q", err, code, reason)
	}
}

func newGroup(t *testing.T, s *Server, cs suite.ID, id string) uint32 {
	t.Helper()
	g, err := s.CreateGroup(context.Background(), &pb.CreateGroupRequest{GroupId: []byte("g-" + id), CipherSuite: uint32(cs), Identity: []byte(id)})
	if err != nil {
		t.Fatal(err)
	}
	return g.StateId
}

// ts-mls 1.6.4 (with @noble/curves 2) publishes compressed P-256
// signature keys; RFC 9420 §5.1.1 requires the uncompressed point, so its
// KeyPackage must be refused as invalid (§10.1), not crash or pass.
func TestRejectsCompressedSignatureKey(t *testing.T) {
	kpMsg := readHex(t, "tsmls-1.6.4-keypackage-p256-compressed-key.hex")
	kp, err := decodeKeyPackage(kpMsg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(kp.LeafNode.SignatureKey); n != 33 {
		t.Fatalf("captured key package has a %d-byte signature key, want the compressed 33", n)
	}
	s := NewServer()
	id := newGroup(t, s, suite.P256AES128GCMSHA256P256, "alice")
	_, err = s.Commit(context.Background(), &pb.CommitRequest{StateId: id, ByValue: []*pb.ProposalDescription{{ProposalType: []byte("add"), KeyPackage: kpMsg}}})
	wantStatus(t, err, codes.InvalidArgument, "KeyPackage fails validation (RFC 9420 §10.1)")

	st, _ := s.store.state(id)
	if _, err := st.g.Commit(group.CommitOptions{Proposals: []*message.Proposal{group.AddProposal(kp)}}); !errors.Is(err, group.ErrInvalidKeyPackage) {
		t.Fatalf("group commit: %v, want ErrInvalidKeyPackage", err)
	}
}

// ts-mls 1.6.4 writes the external_pub extension as the bare key rather
// than the ExternalPub struct (an HPKEPublicKey<V>, RFC 9420 §12.4.3.2);
// an external join from its GroupInfo must fail as an invalid GroupInfo.
func TestRejectsUnprefixedExternalPub(t *testing.T) {
	giMsg := readHex(t, "tsmls-1.6.4-groupinfo-unprefixed-external-pub.hex")
	s := NewServer()
	_, err := s.ExternalJoin(context.Background(), &pb.ExternalJoinRequest{GroupInfo: giMsg, Identity: []byte("carol")})
	wantStatus(t, err, codes.InvalidArgument, "invalid GroupInfo (RFC 9420 §12.4.3)")

	gi, err := decodeGroupInfo(giMsg)
	if err != nil {
		t.Fatal(err)
	}
	me := &member{identity: []byte("carol"), suite: gi.GroupContext.CipherSuite}
	kp, err := me.keyPackage(me.suite)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := group.JoinExternal(gi, kp, nil); !errors.Is(err, group.ErrInvalidGroupInfo) {
		t.Fatalf("JoinExternal: %v, want ErrInvalidGroupInfo", err)
	}
}

func TestUnknownHandlesAndFree(t *testing.T) {
	s := NewServer()
	ctx := context.Background()
	_, err := s.StateAuth(ctx, &pb.StateAuthRequest{StateId: 99})
	wantStatus(t, err, codes.NotFound, "unknown handle")
	id := newGroup(t, s, suite.X25519AES128GCMSHA256Ed25519, "alice")
	if _, err := s.HandlePendingCommit(ctx, &pb.HandlePendingCommitRequest{StateId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("HandlePendingCommit without commit: %v", err)
	}
	if _, err := s.Free(ctx, &pb.FreeRequest{StateId: id}); err != nil {
		t.Fatal(err)
	}
	if n := s.Store().Len(); n != 0 {
		t.Fatalf("%d handles left after Free", n)
	}
	_, err = s.StateAuth(ctx, &pb.StateAuthRequest{StateId: id})
	wantStatus(t, err, codes.NotFound, "unknown handle")
}

// A commit names which of the epoch's proposals it covers: the others
// stay out of it (RFC 9420 §12.4 lets the committer choose).
func TestCommitSubset(t *testing.T) {
	s := NewServer()
	ctx := context.Background()
	id := newGroup(t, s, suite.X25519AES128GCMSHA256Ed25519, "alice")
	var kps []*pb.CreateKeyPackageResponse
	var props [][]byte
	for _, name := range []string{"bob", "carol"} {
		kp, err := s.CreateKeyPackage(ctx, &pb.CreateKeyPackageRequest{CipherSuite: 1, Identity: []byte(name)})
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.AddProposal(ctx, &pb.AddProposalRequest{StateId: id, KeyPackage: kp.KeyPackage})
		if err != nil {
			t.Fatal(err)
		}
		kps, props = append(kps, kp), append(props, p.Proposal)
	}
	// Bob's proposal, named twice, is committed once; carol's is left out.
	c, err := s.Commit(ctx, &pb.CommitRequest{StateId: id, ByReference: [][]byte{props[0], props[0]}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.store.state(id)
	m, err := message.ParseMLSMessage(c.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.PublicMessage.AuthenticatedContent().Content.Commit.Proposals); n != 1 || st.g.PendingProposals() != 2 {
		t.Fatalf("commit carries %d proposals of %d cached, want 1", n, st.g.PendingProposals())
	}
	next, err := s.HandlePendingCommit(ctx, &pb.HandlePendingCommitRequest{StateId: id})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := s.JoinGroup(ctx, &pb.JoinGroupRequest{TransactionId: kps[0].TransactionId, Welcome: c.Welcome})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bob.EpochAuthenticator, next.EpochAuthenticator) {
		t.Fatal("bob and alice disagree")
	}
	_, err = s.JoinGroup(ctx, &pb.JoinGroupRequest{TransactionId: kps[1].TransactionId, Welcome: c.Welcome})
	wantStatus(t, err, codes.InvalidArgument, "Welcome has no secrets for our KeyPackage")
}

// An external signer proposes only from a GroupInfo a member signed: an
// altered one is refused before any proposal is made.
func TestExternalSignerVerifiesGroupInfo(t *testing.T) {
	s := NewServer()
	ctx := context.Background()
	id := newGroup(t, s, suite.X25519AES128GCMSHA256Ed25519, "alice")
	signer, err := s.CreateExternalSigner(ctx, &pb.CreateExternalSignerRequest{CipherSuite: 1, Identity: []byte("server")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddExternalSigner(ctx, &pb.AddExternalSignerRequest{StateId: id, ExternalSender: signer.ExternalSender}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, &pb.CommitRequest{StateId: id}); err != nil {
		t.Fatal(err)
	}
	next, err := s.HandlePendingCommit(ctx, &pb.HandlePendingCommitRequest{StateId: id})
	if err != nil {
		t.Fatal(err)
	}
	gi, err := s.GroupInfo(ctx, &pb.GroupInfoRequest{StateId: next.StateId, ExternalTree: true})
	if err != nil {
		t.Fatal(err)
	}
	req := func(giMsg []byte) *pb.ExternalSignerProposalRequest {
		return &pb.ExternalSignerProposalRequest{SignerId: signer.SignerId, GroupInfo: giMsg, RatchetTree: gi.RatchetTree,
			Description: &pb.ProposalDescription{ProposalType: []byte("remove"), RemovedId: []byte("alice")}}
	}
	if _, err := s.ExternalSignerProposal(ctx, req(gi.GroupInfo)); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(gi.GroupInfo)
	tampered[len(tampered)-1] ^= 1 // the signature is the last field
	_, err = s.ExternalSignerProposal(ctx, req(tampered))
	wantStatus(t, err, codes.InvalidArgument, "signature does not verify")
	other := bytes.Clone(gi.RatchetTree)
	other[len(other)-1] ^= 1
	_, err = s.ExternalSignerProposal(ctx, &pb.ExternalSignerProposalRequest{SignerId: signer.SignerId, GroupInfo: gi.GroupInfo, RatchetTree: other,
		Description: &pb.ProposalDescription{ProposalType: []byte("remove"), RemovedId: []byte("alice")}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("proposal from a GroupInfo with a swapped tree: %v", err)
	}
}
