package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	pb "github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
)

// Sentinel errors separate the ways a scenario can fail.
var (
	// ErrDisagreement: members derived different values (epoch
	// authenticator, exported secret) or a message did not round-trip.
	ErrDisagreement = errors.New("members disagree")
	// ErrUnsupported: a client answered UNIMPLEMENTED.
	ErrUnsupported = errors.New("operation not supported by client")
)

// session is one run of one scenario: actor names mapped onto clients, the
// cipher suite, the handshake wire format, and the handles each client
// returned for its actor.
type session struct {
	ctx     context.Context
	suite   uint32
	encrypt bool
	clients map[string]*Client
	state   map[string]uint32
	tx      map[string]uint32
	// members of the group as the runner believes it to be.
	members []string
	groupID []byte
	seq     int
}

func newSession(ctx context.Context, suite uint16, encrypt bool, clients map[string]*Client) *session {
	return &session{
		ctx: ctx, suite: uint32(suite), encrypt: encrypt, clients: clients,
		state: map[string]uint32{}, tx: map[string]uint32{},
	}
}

func (s *session) rpc(actor string) pb.MLSClientClient { return s.clients[actor].rpc }

// wrap names the actor, its implementation and the RPC in an error.
func (s *session) wrap(actor, op string, err error) error {
	if err == nil {
		return nil
	}
	if isUnimplemented(err) {
		return fmt.Errorf("%s (%s) %s: %w: %v", actor, s.clients[actor].Name, op, ErrUnsupported, err)
	}
	return fmt.Errorf("%s (%s) %s: %w", actor, s.clients[actor].Name, op, err)
}

func (s *session) createGroup(actor string) error {
	s.groupID = []byte(fmt.Sprintf("interop-group-%d", s.seq))
	s.seq++
	resp, err := s.rpc(actor).CreateGroup(s.ctx, &pb.CreateGroupRequest{
		GroupId: s.groupID, CipherSuite: s.suite, EncryptHandshake: s.encrypt, Identity: []byte(actor),
	})
	if err != nil {
		return s.wrap(actor, "CreateGroup", err)
	}
	s.state[actor] = resp.StateId
	s.members = []string{actor}
	return nil
}

func (s *session) keyPackage(actor string) ([]byte, error) {
	resp, err := s.rpc(actor).CreateKeyPackage(s.ctx, &pb.CreateKeyPackageRequest{CipherSuite: s.suite, Identity: []byte(actor)})
	if err != nil {
		return nil, s.wrap(actor, "CreateKeyPackage", err)
	}
	s.tx[actor] = resp.TransactionId
	return resp.KeyPackage, nil
}

// commitOpts describes one commit: who commits, what, and who must follow.
type commitOpts struct {
	byRef     [][]byte
	byValue   []*pb.ProposalDescription
	forcePath bool
	extTree   bool
	joiners   []string // actors joining from the Welcome
	leavers   []string // actors removed by the commit
}

// commit has committer create a commit, applies it as pending at the
// committer, processes it at every other member and joins the joiners from
// the Welcome; every one of them must report the committer's epoch
// authenticator.
func (s *session) commit(committer string, o commitOpts) error {
	resp, err := s.rpc(committer).Commit(s.ctx, &pb.CommitRequest{
		StateId: s.state[committer], ByReference: o.byRef, ByValue: o.byValue,
		ForcePath: o.forcePath, ExternalTree: o.extTree,
	})
	if err != nil {
		return s.wrap(committer, "Commit", err)
	}
	pending, err := s.rpc(committer).HandlePendingCommit(s.ctx, &pb.HandlePendingCommitRequest{StateId: s.state[committer]})
	if err != nil {
		return s.wrap(committer, "HandlePendingCommit", err)
	}
	s.state[committer] = pending.StateId
	want := pending.EpochAuthenticator
	if len(want) == 0 {
		return fmt.Errorf("%s HandlePendingCommit: empty epoch authenticator: %w", committer, ErrDisagreement)
	}

	leaving := map[string]bool{}
	for _, l := range o.leavers {
		leaving[l] = true
	}
	var next []string
	for _, m := range s.members {
		if m == committer {
			next = append(next, m)
			continue
		}
		hc, err := s.rpc(m).HandleCommit(s.ctx, &pb.HandleCommitRequest{StateId: s.state[m], Proposal: o.byRef, Commit: resp.Commit})
		if err != nil {
			return s.wrap(m, "HandleCommit", err)
		}
		s.state[m] = hc.StateId
		if leaving[m] {
			continue
		}
		if !bytes.Equal(hc.EpochAuthenticator, want) {
			return fmt.Errorf("%s after commit by %s: epoch authenticator %x, committer has %x: %w", m, committer, hc.EpochAuthenticator, want, ErrDisagreement)
		}
		next = append(next, m)
	}
	for _, j := range o.joiners {
		req := &pb.JoinGroupRequest{TransactionId: s.tx[j], Welcome: resp.Welcome, EncryptHandshake: s.encrypt, Identity: []byte(j)}
		if o.extTree {
			req.RatchetTree = resp.RatchetTree
		}
		jr, err := s.rpc(j).JoinGroup(s.ctx, req)
		if err != nil {
			return s.wrap(j, "JoinGroup", err)
		}
		if !bytes.Equal(jr.EpochAuthenticator, want) {
			return fmt.Errorf("%s joined from Welcome of %s: epoch authenticator %x, committer has %x: %w", j, committer, jr.EpochAuthenticator, want, ErrDisagreement)
		}
		s.state[j] = jr.StateId
		next = append(next, j)
	}
	s.members = next
	return s.verify()
}

// add has adder add each joiner by value and commit.
func (s *session) add(adder string, joiners ...string) error {
	var descs []*pb.ProposalDescription
	for _, j := range joiners {
		kp, err := s.keyPackage(j)
		if err != nil {
			return err
		}
		descs = append(descs, &pb.ProposalDescription{ProposalType: []byte("add"), KeyPackage: kp})
	}
	return s.commit(adder, commitOpts{byValue: descs, joiners: joiners})
}

// verify checks the common state of the group: every member reports the
// same epoch authenticator and exported secret, and every member's
// application message is read by every other member.
func (s *session) verify() error {
	var auth, export []byte
	for i, m := range s.members {
		a, err := s.rpc(m).StateAuth(s.ctx, &pb.StateAuthRequest{StateId: s.state[m]})
		if err != nil {
			return s.wrap(m, "StateAuth", err)
		}
		e, err := s.rpc(m).Export(s.ctx, &pb.ExportRequest{StateId: s.state[m], Label: "interop", Context: []byte("ctx"), KeyLength: 32})
		if err != nil {
			return s.wrap(m, "Export", err)
		}
		if i == 0 {
			auth, export = a.StateAuthSecret, e.ExportedSecret
			continue
		}
		if !bytes.Equal(a.StateAuthSecret, auth) {
			return fmt.Errorf("%s epoch authenticator %x, %s has %x: %w", m, a.StateAuthSecret, s.members[0], auth, ErrDisagreement)
		}
		if !bytes.Equal(e.ExportedSecret, export) {
			return fmt.Errorf("%s exported secret differs from %s's: %w", m, s.members[0], ErrDisagreement)
		}
	}
	for _, sender := range s.members {
		if err := s.message(sender); err != nil {
			return err
		}
	}
	return nil
}

// message has sender protect one application message and every other
// member unprotect it.
func (s *session) message(sender string) error {
	s.seq++
	aad := []byte(fmt.Sprintf("aad %d", s.seq))
	text := []byte(fmt.Sprintf("hello from %s, message %d", sender, s.seq))
	ct, err := s.rpc(sender).Protect(s.ctx, &pb.ProtectRequest{StateId: s.state[sender], AuthenticatedData: aad, Plaintext: text})
	if err != nil {
		return s.wrap(sender, "Protect", err)
	}
	for _, m := range s.members {
		if m == sender {
			continue
		}
		pt, err := s.rpc(m).Unprotect(s.ctx, &pb.UnprotectRequest{StateId: s.state[m], Ciphertext: ct.Ciphertext})
		if err != nil {
			return s.wrap(m, "Unprotect message from "+sender, err)
		}
		if !bytes.Equal(pt.Plaintext, text) || !bytes.Equal(pt.AuthenticatedData, aad) {
			return fmt.Errorf("%s read message from %s as %q (aad %q): %w", m, sender, pt.Plaintext, pt.AuthenticatedData, ErrDisagreement)
		}
	}
	return nil
}

// free releases every state handle; errors are ignored because the
// clients may legitimately not implement Free.
func (s *session) free() {
	ids := make([]string, 0, len(s.state))
	for a := range s.state {
		ids = append(ids, a)
	}
	sort.Strings(ids)
	for _, a := range ids {
		s.rpc(a).Free(s.ctx, &pb.FreeRequest{StateId: s.state[a]})
	}
}
