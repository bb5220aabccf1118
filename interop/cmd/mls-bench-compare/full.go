package main

import (
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/group/grouptest"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// fullGroup builds, without running n commits, the state of one member of
// an n-member group whose tree is what every member committing once, in
// leaf order, leaves (grouptest.Build): running those commits would take
// O(n²) processing, far too long at 10,000 members through any
// implementation's public API. The tree passes the full validation of a
// join, ours and OpenMLS's, so the members added to it from here on are
// real. The member returned sits in the middle of the tree.
func fullGroup(cs suite.ID, n int) (*group.Group, error) {
	g, err := grouptest.Build(cs, n, true)
	if err != nil {
		return nil, err
	}
	return g.Member(n/2, group.Config{})
}
