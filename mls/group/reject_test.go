package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
)

// craft signs commit as g's member without any validation, with the
// given confirmation tag, as a PublicMessage with a valid membership tag.
func craft(t *testing.T, g *Group, commit *message.Commit, tag []byte) []byte {
	t.Helper()
	c := g.content(message.ContentCommit, nil)
	c.Commit = commit
	ac, err := framing.Sign(g.priv.signKey, message.WireFormatPublicMessage, &c, &g.pub.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tag == nil {
		tag = make([]byte, g.pub.suite.HashSize())
	}
	ac.Auth.ConfirmationTag = tag
	return retag(t, g, ac)
}

// retag protects ac as a PublicMessage with a fresh membership tag.
func retag(t *testing.T, g *Group, ac *message.AuthenticatedContent) []byte {
	t.Helper()
	pm, err := framing.ProtectPublic(g.pub.suite, ac, &g.pub.ctx, g.pub.epoch.MembershipKey)
	if err != nil {
		t.Fatal(err)
	}
	return codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatPublicMessage, PublicMessage: pm})
}

func parseAC(t *testing.T, msg []byte) *message.AuthenticatedContent {
	t.Helper()
	m, err := message.ParseMLSMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	return m.PublicMessage.AuthenticatedContent()
}

// resignPath re-signs the path's LeafNode for g's leaf after a change.
func resignPath(t *testing.T, g *Group, path *message.UpdatePath) {
	t.Helper()
	sig, err := g.priv.signKey.SignWithLabel("LeafNodeTBS", path.LeafNode.TBS(g.GroupID(), g.LeafIndex()))
	if err != nil {
		t.Fatal(err)
	}
	path.LeafNode.Signature = sig
}

func TestRejections(t *testing.T) {
	gs := threeMembers(t, Config{})
	alice, bob, carol := gs[0], gs[1], gs[2]
	s := alice.pub.suite

	honest, err := bob.Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	honestAC := parseAC(t, honest.Commit)

	mutate := func(f func(ac *message.AuthenticatedContent)) []byte {
		m, _ := message.ParseMLSMessage(honest.Commit)
		ac := m.PublicMessage.AuthenticatedContent()
		f(ac)
		return retag(t, bob, ac)
	}
	resign := func(ac *message.AuthenticatedContent) {
		signed, err := framing.Sign(bob.priv.signKey, ac.WireFormat, &ac.Content, &bob.pub.ctx)
		if err != nil {
			t.Fatal(err)
		}
		ac.Auth.Signature = signed.Auth.Signature
	}

	dave := newBundle(t, s1, "dave")
	badSig := *newBundle(t, s1, "erin")
	badSig.KeyPackage.Signature = bytes.Clone(badSig.KeyPackage.Signature)
	badSig.KeyPackage.Signature[0] ^= 1
	otherSuite := newBundle(t, suite.P256AES128GCMSHA256P256, "frank")

	// An Update proposal from carol carrying a LeafNode signed for
	// alice's leaf.
	stolen := *carol.pub.tree.Leaf(carol.priv.leaf)
	stolenKey, _ := s.GenerateHPKEKey()
	stolen.EncryptionKey = stolenKey.Public().Bytes()
	stolen.Source = message.LeafNodeSourceUpdate
	stolen.Lifetime = message.Lifetime{}
	stolen.Signature, _ = carol.priv.signKey.SignWithLabel("LeafNodeTBS", stolen.TBS(carol.GroupID(), 0))
	upd := &message.Proposal{Type: message.ProposalUpdate, Update: &message.Update{LeafNode: stolen}}
	c := carol.content(message.ContentProposal, nil)
	c.Proposal = upd
	updMsg, updAC, err := carol.frame(&c, message.WireFormatPublicMessage)
	if err != nil {
		t.Fatal(err)
	}
	updRef := carol.pub.proposalRef(updAC)

	// A path whose root key is not the one its path secrets derive, with
	// parent hashes recomputed so that only the key check can catch it.
	keyMismatch := func() []byte {
		me := message.MemberSender(bob.LeafIndex())
		st, err := bob.pub.stage(nil, me, &bob.cfg, stageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pctx := bob.pub.provisionalContext(st)
		gen, err := bob.priv.path.Generate(st.tree, *bob.pub.tree.Leaf(bob.priv.leaf), bob.priv.signKey, treekem.PathOptions{GroupContext: pctx})
		if err != nil {
			t.Fatal(err)
		}
		path := gen.Path
		other, _ := s.GenerateHPKEKey()
		path.Nodes[len(path.Nodes)-1].EncryptionKey = other.Public().Bytes()
		t2 := bob.pub.tree.Clone()
		keys := make([][]byte, len(path.Nodes))
		for i := range path.Nodes {
			keys[i] = path.Nodes[i].EncryptionKey
		}
		ph, err := t2.SetPathKeys(bob.priv.leaf, keys)
		if err != nil {
			t.Fatal(err)
		}
		path.LeafNode.ParentHash = ph
		resignPath(t, bob, path)
		if err := t2.SetLeaf(bob.priv.leaf, &path.LeafNode); err != nil {
			t.Fatal(err)
		}
		// Re-encrypt alice's path secret under the context of the tampered
		// tree, so that decryption succeeds and only the key check fails.
		pctx.TreeHash = t2.RootHash()
		alicePub, err := s.NewHPKEPublicKey(alice.pub.tree.Leaf(0).EncryptionKey)
		if err != nil {
			t.Fatal(err)
		}
		kem, ct, err := alicePub.EncryptWithLabel("UpdatePathNode", codec.Marshal(&pctx), gen.PathSecretFor(0))
		if err != nil {
			t.Fatal(err)
		}
		path.Nodes[0].EncryptedPathSecret[0] = message.HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
		return craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{}, Path: path}, nil)
	}()

	cases := []struct {
		name string
		msg  []byte
		want []error
		prep func(g *Group)
	}{
		{"bad signature", mutate(func(ac *message.AuthenticatedContent) { ac.Auth.Signature[3] ^= 1 }), []error{suite.ErrBadSignature}, nil},
		{"bad membership tag", func() []byte {
			m, _ := message.ParseMLSMessage(honest.Commit)
			m.PublicMessage.MembershipTag[0] ^= 1
			return codec.Marshal(m)
		}(), []error{ErrBadMembershipTag}, nil},
		{"wrong confirmation tag", mutate(func(ac *message.AuthenticatedContent) { ac.Auth.ConfirmationTag[0] ^= 1 }), []error{ErrBadConfirmationTag}, nil},
		{"parent hash mismatch", mutate(func(ac *message.AuthenticatedContent) {
			ac.Content.Commit.Path.LeafNode.ParentHash[0] ^= 1
			resignPath(t, bob, ac.Content.Commit.Path)
			resign(ac)
		}), []error{ErrInvalidPath, tree.ErrParentHashMismatch}, nil},
		// The UpdatePath leaf's signature alone, and both signatures.
		{"bad path leaf signature", mutate(func(ac *message.AuthenticatedContent) {
			ac.Content.Commit.Path.LeafNode.Signature = bytes.Clone(ac.Content.Commit.Path.LeafNode.Signature)
			ac.Content.Commit.Path.LeafNode.Signature[5] ^= 1
			resign(ac)
		}), []error{ErrInvalidPath, tree.ErrBadLeafSignature}, nil},
		{"bad signatures of framing and path leaf", mutate(func(ac *message.AuthenticatedContent) {
			ac.Content.Commit.Path.LeafNode.Signature = bytes.Clone(ac.Content.Commit.Path.LeafNode.Signature)
			ac.Content.Commit.Path.LeafNode.Signature[5] ^= 1
			ac.Auth.Signature[3] ^= 1
		}), nil, nil},
		{"path key mismatch", keyMismatch, []error{ErrInvalidPath, treekem.ErrPublicKeyMismatch}, nil},
		{"duplicate add", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefProposal, Proposal: AddProposal(&dave.KeyPackage)},
			{Type: message.ProposalOrRefProposal, Proposal: AddProposal(&dave.KeyPackage)},
		}}, nil), []error{ErrInvalidProposalList, ErrDuplicateAdd}, nil},
		{"add of a member", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefProposal, Proposal: AddProposal(&newBundleWithKey(t, "carol", carol.priv.signKey).KeyPackage)},
		}}, nil), []error{ErrInvalidProposalList, ErrDuplicateAdd}, nil},
		{"remove blank leaf", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefProposal, Proposal: RemoveProposal(7)},
		}, Path: honestAC.Content.Commit.Path}, nil), []error{ErrInvalidProposalList, ErrRemoveBlankLeaf}, nil},
		{"update by committer", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefProposal, Proposal: upd},
		}, Path: honestAC.Content.Commit.Path}, nil), []error{ErrInvalidProposalList, ErrCommitterUpdate}, nil},
		{"update for another leaf", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefReference, Reference: updRef},
		}, Path: honestAC.Content.Commit.Path}, nil), []error{ErrInvalidUpdate, tree.ErrBadLeafSignature}, func(g *Group) { mustHandle(t, g, codec.Marshal(updMsg)) }},
		{"key package bad signature", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefProposal, Proposal: AddProposal(&badSig.KeyPackage)},
		}}, nil), []error{ErrInvalidKeyPackage, tree.ErrKeyPackageInvalid}, nil},
		{"key package of another suite", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefProposal, Proposal: AddProposal(&otherSuite.KeyPackage)},
		}}, nil), []error{ErrInvalidKeyPackage}, nil},
		{"unknown proposal ref", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{
			{Type: message.ProposalOrRefReference, Reference: make([]byte, 32)},
		}}, nil), []error{ErrUnknownProposalRef}, nil},
		{"missing path", craft(t, bob, &message.Commit{Proposals: []message.ProposalOrRef{}}, nil), []error{ErrPathRequired}, nil},
		{"own commit", honest.Commit, []error{ErrOwnCommit}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := alice
			if tc.name == "own commit" {
				g = bob
			}
			// A fresh copy of the receiver, so cached proposals do not leak
			// between cases.
			data, _ := g.MarshalBinary()
			g, _ = UnmarshalGroup(data, g.Config())
			if tc.prep != nil {
				tc.prep(g)
			}
			before, _ := g.MarshalBinary()
			_, err := g.Handle(tc.msg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
			after, _ := g.MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Fatal("state changed by a rejected commit")
			}
			if tc.name != "own commit" {
				if r := mustHandle(t, g, honest.Commit); r.Next == nil {
					t.Fatal("honest commit not processed after rejection")
				}
			}
		})
	}

	// The committer's side refuses invalid KeyPackages too.
	for _, kp := range []*KeyPackageBundle{&badSig, otherSuite} {
		if _, err := bob.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&kp.KeyPackage)}}); !errors.Is(err, ErrInvalidKeyPackage) {
			t.Fatalf("commit with bad key package: %v", err)
		}
	}

	// A Welcome for someone else.
	pc, err := alice.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&dave.KeyPackage)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(pc.Welcome, newBundle(t, s1, "mallory"), nil); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("welcome for someone else: %v", err)
	}
}
