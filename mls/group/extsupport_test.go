package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

const (
	extCustom  message.ExtensionType = 0xff00
	propCustom message.ProposalType  = 0xff01
)

// bundleSupporting makes a KeyPackage whose capabilities list exts.
func bundleSupporting(t *testing.T, name string, exts ...message.ExtensionType) *KeyPackageBundle {
	t.Helper()
	s, _ := suite.Lookup(s1)
	priv, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := NewKeyPackage(message.BasicCredential([]byte(name)), priv, &KeyPackageOptions{Capabilities: &message.Capabilities{Extensions: exts}})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// customGroup returns alice and bob, who support extCustom, and carol,
// who does not.
func customGroup(t *testing.T) []*Group {
	t.Helper()
	alice, err := Create(bundleSupporting(t, "alice", extCustom), []byte("group"), nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	bob, carol := bundleSupporting(t, "bob", extCustom), bundleSupporting(t, "carol")
	pc := mustCommit(t, alice, CommitOptions{Proposals: []*message.Proposal{AddProposal(&bob.KeyPackage), AddProposal(&carol.KeyPackage)}})
	gs := []*Group{mustNext(t, alice, pc)}
	for _, kp := range []*KeyPackageBundle{bob, carol} {
		g, err := Join(pc.Welcome, kp, nil)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	return gs
}

func requiredExt(rc message.RequiredCapabilities) message.Extension {
	if rc.ExtensionTypes == nil {
		rc.ExtensionTypes = []message.ExtensionType{}
	}
	if rc.ProposalTypes == nil {
		rc.ProposalTypes = []message.ProposalType{}
	}
	if rc.CredentialTypes == nil {
		rc.CredentialTypes = []message.CredentialType{}
	}
	return message.Extension{Type: message.ExtensionRequiredCapabilities, Data: codec.Marshal(&rc)}
}

// A GroupContextExtensions proposal may set only extensions, and require
// only capabilities, that every member after the commit supports
// (§12.1.7, §13.4); the committer refuses to make such a commit and the
// other members refuse to process one.
func TestGroupContextExtensionsSupport(t *testing.T) {
	custom := message.Extension{Type: extCustom, Data: []byte{1}}
	es := message.Extension{Type: message.ExtensionExternalSenders, Data: codec.Marshal(message.ExternalSenders{})}
	gce := func(exts ...message.Extension) *message.Proposal { return GroupContextExtensionsProposal(exts) }
	cases := []struct {
		name  string
		props func(t *testing.T) []*message.Proposal
		want  []error // nil: accepted
	}{
		{"default extension", func(*testing.T) []*message.Proposal { return []*message.Proposal{gce(es)} }, nil},
		{"custom extension carol lacks", func(*testing.T) []*message.Proposal { return []*message.Proposal{gce(custom)} }, []error{ErrUnsupported}},
		{"custom extension with carol removed", func(*testing.T) []*message.Proposal {
			return []*message.Proposal{gce(custom), RemoveProposal(2)}
		}, nil},
		{"custom extension with an add that lacks it", func(t *testing.T) []*message.Proposal {
			return []*message.Proposal{gce(custom), RemoveProposal(2), AddProposal(&bundleSupporting(t, "dave").KeyPackage)}
		}, []error{ErrUnsupported}},
		{"custom extension with an add that has it", func(t *testing.T) []*message.Proposal {
			return []*message.Proposal{gce(custom), RemoveProposal(2), AddProposal(&bundleSupporting(t, "dave", extCustom).KeyPackage)}
		}, nil},
		{"requires an extension carol lacks", func(*testing.T) []*message.Proposal {
			return []*message.Proposal{gce(requiredExt(message.RequiredCapabilities{ExtensionTypes: []message.ExtensionType{extCustom}}))}
		}, []error{ErrUnsupported}},
		{"requires a proposal nobody supports", func(*testing.T) []*message.Proposal {
			return []*message.Proposal{gce(requiredExt(message.RequiredCapabilities{ProposalTypes: []message.ProposalType{propCustom}}))}
		}, []error{ErrUnsupported}},
		{"extension listed twice", func(*testing.T) []*message.Proposal { return []*message.Proposal{gce(es, es)} }, []error{ErrInvalidProposal}},
		{"malformed required_capabilities", func(*testing.T) []*message.Proposal {
			return []*message.Proposal{gce(message.Extension{Type: message.ExtensionRequiredCapabilities, Data: []byte{9}})}
		}, []error{ErrInvalidProposal}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gs := customGroup(t)
			props := tc.props(t)
			before, _ := gs[0].MarshalBinary()
			pc, err := gs[0].Commit(CommitOptions{Proposals: props})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				mustHandle(t, gs[1], pc.Commit)
				return
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("commit: got %v, want %v", err, want)
				}
			}
			if after, _ := gs[0].MarshalBinary(); !bytes.Equal(before, after) {
				t.Fatal("refused commit changed the committer's state")
			}
			// The same commit made without checks is refused by bob.
			list := make([]message.ProposalOrRef, len(props))
			for i, p := range props {
				list[i] = message.ProposalOrRef{Type: message.ProposalOrRefProposal, Proposal: p}
			}
			forged := craft(t, gs[0], &message.Commit{Proposals: list}, nil)
			before, _ = gs[1].MarshalBinary()
			_, err = gs[1].Handle(forged)
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("receive: got %v, want %v", err, want)
				}
			}
			if after, _ := gs[1].MarshalBinary(); !bytes.Equal(before, after) {
				t.Fatal("refused commit changed the receiver's state")
			}
		})
	}
}

// Once a group uses an extension, a new member must support it, whether
// added (§13.4: the adder checks) or joining by external commit (the
// joiner checks).
func TestNewMembersSupportGroupExtensions(t *testing.T) {
	gs := customGroup(t)
	gs, _ = commitAll(t, gs[:2], 0, CommitOptions{Proposals: []*message.Proposal{
		GroupContextExtensionsProposal([]message.Extension{{Type: extCustom, Data: []byte{}}}), RemoveProposal(2),
	}})
	_, err := gs[0].Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&bundleSupporting(t, "dave").KeyPackage)}})
	if !errors.Is(err, ErrInvalidKeyPackage) || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("add of a client lacking the extension: %v", err)
	}
	if _, err := gs[0].Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&bundleSupporting(t, "dave", extCustom).KeyPackage)}}); err != nil {
		t.Fatal(err)
	}
	gi, err := gs[0].GroupInfo(GroupInfoOptions{RatchetTree: true, ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = JoinExternal(gi, bundleSupporting(t, "erin"), nil)
	if !errors.Is(err, ErrInvalidGroupInfo) || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("external join of a client lacking the extension: %v", err)
	}
	if _, err := JoinExternal(gi, bundleSupporting(t, "erin", extCustom), nil); err != nil {
		t.Fatal(err)
	}
}
