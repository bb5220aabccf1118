package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func TestVerifyGroupInfo(t *testing.T) {
	gs := threeMembers(t, Config{})
	other := threeMembers(t, Config{})
	sign := func(gi *message.GroupInfo) {
		sig, err := gs[0].priv.signKey.SignWithLabel("GroupInfoTBS", gi.TBS())
		if err != nil {
			t.Fatal(err)
		}
		gi.Signature = sig
	}
	cases := []struct {
		name   string
		withRT bool
		change func(gi *message.GroupInfo)
		rt     message.RatchetTree
		want   []error
	}{
		{"valid, tree inside", true, nil, nil, nil},
		{"valid, tree out of band", false, nil, gs[0].pub.tree.RatchetTree(), nil},
		{"bad signature", true, func(gi *message.GroupInfo) { gi.Signature[0] ^= 1 }, nil, []error{ErrInvalidGroupInfo, suite.ErrBadSignature}},
		{"altered context", true, func(gi *message.GroupInfo) { gi.GroupContext.Epoch++ }, nil, []error{ErrInvalidGroupInfo, suite.ErrBadSignature}},
		{"signed by another member", true, func(gi *message.GroupInfo) { gi.Signer = 1 }, nil, []error{ErrInvalidGroupInfo, suite.ErrBadSignature}},
		{"blank signer", true, func(gi *message.GroupInfo) { gi.Signer = 9 }, nil, []error{ErrInvalidGroupInfo}},
		{"another group's tree", false, nil, other[0].pub.tree.RatchetTree(), []error{ErrInvalidGroupInfo}},
		{"signed context, wrong tree hash", true, func(gi *message.GroupInfo) {
			gi.GroupContext.TreeHash = bytes.Repeat([]byte{1}, len(gi.GroupContext.TreeHash))
			sign(gi)
		}, nil, []error{ErrInvalidGroupInfo}},
		{"no tree", false, nil, nil, []error{ErrMissingTree}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gi, err := gs[0].GroupInfo(GroupInfoOptions{RatchetTree: tc.withRT})
			if err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				gi.Signature = bytes.Clone(gi.Signature)
				tc.change(gi)
			}
			tr, err := VerifyGroupInfo(gi, tc.rt, Config{})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(tr.RootHash(), gs[0].TreeHash()) {
					t.Fatal("returned tree is not the group's")
				}
				return
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
		})
	}
}
