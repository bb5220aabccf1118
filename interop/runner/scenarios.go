package runner

import (
	"bytes"
	"crypto/rand"
	"fmt"

	pb "github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
)

// Scenario is one message flow. Actors "alice" and "carol" run on the
// first client, "bob" and "dave" on the second, so every multi-party flow
// mixes the implementations; Run repeats each flow with the clients
// swapped.
type Scenario struct {
	Name string
	run  func(s *session) error
}

// Scenarios lists the flows of the harness's test-scenarios.md and
// configs (welcome join, commits with and without path, adds, removes,
// updates, PSKs, external joins, external proposals, ReInit, branching).
var Scenarios = []Scenario{
	{"welcome_join", func(s *session) error {
		return first(s.createGroup("alice"), func() error { return s.add("alice", "bob") })
	}},
	{"welcome_join_external_tree", func(s *session) error {
		if err := s.createGroup("alice"); err != nil {
			return err
		}
		kp, err := s.keyPackage("bob")
		if err != nil {
			return err
		}
		return s.commit("alice", commitOpts{byValue: []*pb.ProposalDescription{addDesc(kp)}, joiners: []string{"bob"}, extTree: true})
	}},
	{"three_party_join", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.add("bob", "carol") })
	}},
	{"multiple_joins_at_once", func(s *session) error {
		return first(s.createGroup("alice"), func() error { return s.add("alice", "bob", "carol") })
	}},
	{"add_by_reference", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				kp, err := s.keyPackage("carol")
				if err != nil {
					return err
				}
				p, err := s.rpc("bob").AddProposal(s.ctx, &pb.AddProposalRequest{StateId: s.state["bob"], KeyPackage: kp})
				if err != nil {
					return s.wrap("bob", "AddProposal", err)
				}
				return s.commit("alice", commitOpts{byRef: [][]byte{p.Proposal}, joiners: []string{"carol"}})
			})
	}},
	{"empty_commits_with_path", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.commit("bob", commitOpts{forcePath: true}) },
			func() error { return s.commit("alice", commitOpts{forcePath: true}) },
			func() error { return s.commit("bob", commitOpts{}) })
	}},
	{"remove_by_value", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob", "carol") },
			func() error {
				return s.commit("alice", commitOpts{byValue: []*pb.ProposalDescription{removeDesc("bob")}, leavers: []string{"bob"}})
			},
			func() error { return s.commit("carol", commitOpts{forcePath: true}) })
	}},
	{"remove_by_reference", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob", "carol", "dave") },
			func() error {
				p, err := s.rpc("bob").RemoveProposal(s.ctx, &pb.RemoveProposalRequest{StateId: s.state["bob"], RemovedId: []byte("carol")})
				if err != nil {
					return s.wrap("bob", "RemoveProposal", err)
				}
				return s.commit("dave", commitOpts{byRef: [][]byte{p.Proposal}, leavers: []string{"carol"}})
			})
	}},
	{"update_proposal", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				p, err := s.rpc("bob").UpdateProposal(s.ctx, &pb.UpdateProposalRequest{StateId: s.state["bob"]})
				if err != nil {
					return s.wrap("bob", "UpdateProposal", err)
				}
				return s.commit("alice", commitOpts{byRef: [][]byte{p.Proposal}})
			})
	}},
	{"application_messages", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				// Several messages in a row from each side move the
				// senders' ratchets past generation 0.
				for range 5 {
					if err := first(s.message("alice"), func() error { return s.message("bob") }, func() error { return s.message("bob") }); err != nil {
						return err
					}
				}
				return nil
			})
	}},
	{"external_join", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.externalJoin("bob", "carol", false) })
	}},
	{"external_join_external_tree", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.externalJoin("alice", "dave", true) })
	}},
	{"external_psk", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				id, err := s.installPSK("alice", "bob")
				if err != nil {
					return err
				}
				return s.commit("bob", commitOpts{byValue: []*pb.ProposalDescription{{ProposalType: []byte("externalPSK"), PskId: id}}})
			})
	}},
	{"resumption_psk", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.commit("alice", commitOpts{forcePath: true}) },
			func() error {
				return s.commit("bob", commitOpts{byValue: []*pb.ProposalDescription{{ProposalType: []byte("resumptionPSK"), EpochId: 1}}})
			})
	}},
	{"group_context_extensions", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				p, err := s.rpc("bob").GroupContextExtensionsProposal(s.ctx, &pb.GroupContextExtensionsProposalRequest{StateId: s.state["bob"]})
				if err != nil {
					return s.wrap("bob", "GroupContextExtensionsProposal", err)
				}
				return s.commit("alice", commitOpts{byRef: [][]byte{p.Proposal}})
			})
	}},
	{"new_member_add_proposal", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.newMemberAdd("bob", "carol", "alice") })
	}},
	{"external_signer_proposal", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.externalSigner("alice", "carol", "bob") })
	}},
	{"reinit", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.reinit("alice", "bob", "alice") })
	}},
	{"branch", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error { return s.branch("bob", "alice") })
	}},
}

// OwnScenarios are flows of the harness's configs that the peers here
// cannot run, so they run against our own client only, in every suite:
// out_of_order_across_epochs (application.json) needs past epochs'
// secret trees, which neither driver keeps, and the ReInits into a suite
// with another hash length (reinit.json change_ciphersuite,
// external_proposals.json external_reinit) need ReInit, which OpenMLS
// 0.9.2 lacks.
var OwnScenarios = []Scenario{
	{"out_of_order_across_epochs", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob", "carol") },
			func() error { return s.lateMessages("bob", "carol", "alice") })
	}},
	{"reinit_change_ciphersuite", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				p, err := s.rpc("bob").ReInitProposal(s.ctx, &pb.ReInitProposalRequest{StateId: s.state["bob"], CipherSuite: otherHashSuite(s.suite), GroupId: s.reinitGroupID()})
				if err != nil {
					return s.wrap("bob", "ReInitProposal", err)
				}
				return s.reinitWith(p.Proposal, "alice", "bob")
			})
	}},
	{"external_reinit_change_ciphersuite", func(s *session) error {
		return first(s.createGroup("alice"),
			func() error { return s.add("alice", "bob") },
			func() error {
				desc := &pb.ProposalDescription{ProposalType: []byte("reinit"), GroupId: s.reinitGroupID(), CipherSuite: otherHashSuite(s.suite)}
				p, err := s.externalProposal("alice", "carol", desc)
				if err != nil {
					return err
				}
				return s.reinitWith(p, "bob", "alice")
			})
	}},
}

// otherHashSuite is a suite whose hash length differs from suite's, for a
// ReInit that changes KDF.Nh.
func otherHashSuite(suite uint32) uint32 {
	return map[uint32]uint32{1: 5, 2: 7, 3: 4, 4: 2, 5: 7, 6: 3, 7: 1}[suite]
}

// lateMessages has sender protect three messages, committer commit, and
// reader unprotect the three in the new epoch, last first: messages of
// the epoch before a commit, arriving after it and out of order.
func (s *session) lateMessages(sender, committer, reader string) error {
	type sent struct{ ct, text, aad []byte }
	var msgs []sent
	for i := range 3 {
		m := sent{text: fmt.Appendf(nil, "late %d from %s", i, sender), aad: fmt.Appendf(nil, "aad %d", i)}
		r, err := s.rpc(sender).Protect(s.ctx, &pb.ProtectRequest{StateId: s.state[sender], AuthenticatedData: m.aad, Plaintext: m.text})
		if err != nil {
			return s.wrap(sender, "Protect", err)
		}
		m.ct = r.Ciphertext
		msgs = append(msgs, m)
	}
	if err := s.commit(committer, commitOpts{forcePath: true}); err != nil {
		return err
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		pt, err := s.rpc(reader).Unprotect(s.ctx, &pb.UnprotectRequest{StateId: s.state[reader], Ciphertext: msgs[i].ct})
		if err != nil {
			return s.wrap(reader, fmt.Sprintf("Unprotect message %d of the previous epoch", i), err)
		}
		if !bytes.Equal(pt.Plaintext, msgs[i].text) || !bytes.Equal(pt.AuthenticatedData, msgs[i].aad) {
			return fmt.Errorf("%s read late message %d as %q (aad %q): %w", reader, i, pt.Plaintext, pt.AuthenticatedData, ErrDisagreement)
		}
	}
	return nil
}

// first runs steps in order, stopping at the first error; err is the
// result of a step already taken.
func first(err error, steps ...func() error) error {
	if err != nil {
		return err
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func addDesc(kp []byte) *pb.ProposalDescription {
	return &pb.ProposalDescription{ProposalType: []byte("add"), KeyPackage: kp}
}

func removeDesc(actor string) *pb.ProposalDescription {
	return &pb.ProposalDescription{ProposalType: []byte("remove"), RemovedId: []byte(actor)}
}

// externalJoin has joiner join through a GroupInfo published by member;
// every member processes the external commit.
func (s *session) externalJoin(member, joiner string, extTree bool) error {
	gi, err := s.rpc(member).GroupInfo(s.ctx, &pb.GroupInfoRequest{StateId: s.state[member], ExternalTree: extTree})
	if err != nil {
		return s.wrap(member, "GroupInfo", err)
	}
	ej, err := s.rpc(joiner).ExternalJoin(s.ctx, &pb.ExternalJoinRequest{
		GroupInfo: gi.GroupInfo, RatchetTree: gi.RatchetTree, EncryptHandshake: s.encrypt, Identity: []byte(joiner),
	})
	if err != nil {
		return s.wrap(joiner, "ExternalJoin", err)
	}
	for _, m := range s.members {
		hc, err := s.rpc(m).HandleCommit(s.ctx, &pb.HandleCommitRequest{StateId: s.state[m], Commit: ej.Commit})
		if err != nil {
			return s.wrap(m, "HandleCommit (external commit)", err)
		}
		if !bytes.Equal(hc.EpochAuthenticator, ej.EpochAuthenticator) {
			return fmt.Errorf("%s after external join of %s: epoch authenticator differs: %w", m, joiner, ErrDisagreement)
		}
		s.state[m] = hc.StateId
	}
	s.state[joiner] = ej.StateId
	s.members = append(s.members, joiner)
	return s.verify()
}

// installPSK stores a fresh external PSK at the given actors.
func (s *session) installPSK(actors ...string) ([]byte, error) {
	id, secret := make([]byte, 32), make([]byte, 32)
	rand.Read(id)
	rand.Read(secret)
	for _, a := range actors {
		handle, ok := s.state[a]
		if !ok {
			handle = s.tx[a]
		}
		if _, err := s.rpc(a).StorePSK(s.ctx, &pb.StorePSKRequest{StateOrTransactionId: handle, PskId: id, PskSecret: secret}); err != nil {
			return nil, s.wrap(a, "StorePSK", err)
		}
	}
	return id, nil
}

// newMemberAdd has joiner propose its own Add from member's GroupInfo and
// committer commit it by reference.
func (s *session) newMemberAdd(member, joiner, committer string) error {
	gi, err := s.rpc(member).GroupInfo(s.ctx, &pb.GroupInfoRequest{StateId: s.state[member]})
	if err != nil {
		return s.wrap(member, "GroupInfo", err)
	}
	p, err := s.rpc(joiner).NewMemberAddProposal(s.ctx, &pb.NewMemberAddProposalRequest{GroupInfo: gi.GroupInfo, Identity: []byte(joiner)})
	if err != nil {
		return s.wrap(joiner, "NewMemberAddProposal", err)
	}
	s.tx[joiner] = p.TransactionId
	return s.commit(committer, commitOpts{byRef: [][]byte{p.Proposal}, joiners: []string{joiner}})
}

// externalSigner registers signer as an external sender through a
// GroupContextExtensions proposal by adder, then has it propose removing
// the last member, committed by adder.
func (s *session) externalSigner(adder, signer, victim string) error {
	p, err := s.externalProposal(adder, signer, removeDesc(victim))
	if err != nil {
		return err
	}
	return s.commit(adder, commitOpts{byRef: [][]byte{p}, leavers: []string{victim}})
}

// externalProposal registers signer as an external sender through a
// GroupContextExtensions proposal committed by adder, and returns the
// proposal desc that signer then makes from adder's GroupInfo.
func (s *session) externalProposal(adder, signer string, desc *pb.ProposalDescription) ([]byte, error) {
	cs, err := s.rpc(signer).CreateExternalSigner(s.ctx, &pb.CreateExternalSignerRequest{CipherSuite: s.suite, Identity: []byte(signer)})
	if err != nil {
		return nil, s.wrap(signer, "CreateExternalSigner", err)
	}
	p, err := s.rpc(adder).AddExternalSigner(s.ctx, &pb.AddExternalSignerRequest{StateId: s.state[adder], ExternalSender: cs.ExternalSender})
	if err != nil {
		return nil, s.wrap(adder, "AddExternalSigner", err)
	}
	if err := s.commit(adder, commitOpts{byRef: [][]byte{p.Proposal}}); err != nil {
		return nil, err
	}
	gi, err := s.rpc(adder).GroupInfo(s.ctx, &pb.GroupInfoRequest{StateId: s.state[adder], ExternalTree: true})
	if err != nil {
		return nil, s.wrap(adder, "GroupInfo", err)
	}
	ep, err := s.rpc(signer).ExternalSignerProposal(s.ctx, &pb.ExternalSignerProposalRequest{
		SignerId: cs.SignerId, GroupInfo: gi.GroupInfo, RatchetTree: gi.RatchetTree, Description: desc,
	})
	if err != nil {
		return nil, s.wrap(signer, "ExternalSignerProposal", err)
	}
	return ep.Proposal, nil
}

// reinit runs the ReInit flow of the harness: proposer proposes reinit
// into a new group id (same suite), committer commits it, every member
// produces a KeyPackage for the new group and welcomer creates it.
func (s *session) reinit(proposer, committer, welcomer string) error {
	p, err := s.rpc(proposer).ReInitProposal(s.ctx, &pb.ReInitProposalRequest{StateId: s.state[proposer], CipherSuite: s.suite, GroupId: s.reinitGroupID()})
	if err != nil {
		return s.wrap(proposer, "ReInitProposal", err)
	}
	return s.reinitWith(p.Proposal, committer, welcomer)
}

// reinitGroupID is the group id of the group a ReInit starts.
func (s *session) reinitGroupID() []byte { return append(append([]byte{}, s.groupID...), "++"...) }

// reinitWith has committer commit the ReInit proposal p (every member has
// it), every member produce a KeyPackage for the new group, welcomer
// create it and the others join.
func (s *session) reinitWith(p []byte, committer, welcomer string) error {
	c, err := s.rpc(committer).ReInitCommit(s.ctx, &pb.CommitRequest{StateId: s.state[committer], ByReference: [][]byte{p}})
	if err != nil {
		return s.wrap(committer, "ReInitCommit", err)
	}
	pending, err := s.rpc(committer).HandlePendingReInitCommit(s.ctx, &pb.HandlePendingCommitRequest{StateId: s.state[committer]})
	if err != nil {
		return s.wrap(committer, "HandlePendingReInitCommit", err)
	}
	reinitID := map[string]uint32{committer: pending.ReinitId}
	keyPackages := map[string][]byte{committer: pending.KeyPackage}
	for _, m := range s.members {
		if m == committer {
			continue
		}
		r, err := s.rpc(m).HandleReInitCommit(s.ctx, &pb.HandleCommitRequest{StateId: s.state[m], Proposal: [][]byte{p}, Commit: c.Commit})
		if err != nil {
			return s.wrap(m, "HandleReInitCommit", err)
		}
		if !bytes.Equal(r.EpochAuthenticator, pending.EpochAuthenticator) {
			return fmt.Errorf("%s after ReInit commit: epoch authenticator differs: %w", m, ErrDisagreement)
		}
		reinitID[m], keyPackages[m] = r.ReinitId, r.KeyPackage
	}
	var kps [][]byte
	for _, m := range s.members {
		if m != welcomer {
			kps = append(kps, keyPackages[m])
		}
	}
	w, err := s.rpc(welcomer).ReInitWelcome(s.ctx, &pb.ReInitWelcomeRequest{ReinitId: reinitID[welcomer], KeyPackage: kps, ExternalTree: true})
	if err != nil {
		return s.wrap(welcomer, "ReInitWelcome", err)
	}
	s.state[welcomer] = w.StateId
	for _, m := range s.members {
		if m == welcomer {
			continue
		}
		j, err := s.rpc(m).HandleReInitWelcome(s.ctx, &pb.HandleReInitWelcomeRequest{ReinitId: reinitID[m], Welcome: w.Welcome, RatchetTree: w.RatchetTree})
		if err != nil {
			return s.wrap(m, "HandleReInitWelcome", err)
		}
		if !bytes.Equal(j.EpochAuthenticator, w.EpochAuthenticator) {
			return fmt.Errorf("%s joining the reinitialized group: epoch authenticator differs: %w", m, ErrDisagreement)
		}
		s.state[m] = j.StateId
	}
	return s.verify()
}

// branch has brancher start a subgroup with the other members.
func (s *session) branch(brancher string, others ...string) error {
	var kps [][]byte
	for _, m := range others {
		kp, err := s.keyPackage(m)
		if err != nil {
			return err
		}
		kps = append(kps, kp)
	}
	s.seq++
	b, err := s.rpc(brancher).CreateBranch(s.ctx, &pb.CreateBranchRequest{
		StateId: s.state[brancher], GroupId: []byte(fmt.Sprintf("branch-%d", s.seq)), KeyPackages: kps, ExternalTree: true,
	})
	if err != nil {
		return s.wrap(brancher, "CreateBranch", err)
	}
	for _, m := range others {
		h, err := s.rpc(m).HandleBranch(s.ctx, &pb.HandleBranchRequest{StateId: s.state[m], TransactionId: s.tx[m], Welcome: b.Welcome, RatchetTree: b.RatchetTree})
		if err != nil {
			return s.wrap(m, "HandleBranch", err)
		}
		if !bytes.Equal(h.EpochAuthenticator, b.EpochAuthenticator) {
			return fmt.Errorf("%s joining the branch: epoch authenticator differs: %w", m, ErrDisagreement)
		}
		s.state[m] = h.StateId
	}
	s.state[brancher] = b.StateId
	s.members = append([]string{brancher}, others...)
	return s.verify()
}
