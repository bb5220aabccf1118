package groups

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Bad input from the other side of a room: each is refused with its
// reason, counted, and the room goes on (the remote device's next message
// is delivered to our puppet).

// badInputRoom is a room of remote bob and our alice (one device).
func badInputRoom(t *testing.T) (*harness, *remote, id.UserID, epochs.Device) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	dev := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(dev)
	if counter(h.metrics.WelcomesJoined) != 1 {
		t.Fatal("alice's device did not join")
	}
	return h, bob, alice, dev
}

// goesOn checks that a message bob sends now reaches alice.
func goesOn(t *testing.T, h *harness, bob *remote, alice id.UserID) {
	t.Helper()
	msg, eid := bob.message("m.room.message", map[string]string{"body": "still here"})
	h.send([]json.RawMessage{msg}, nil)
	d, err := h.s.Delivery(h.ctx, alice, eid)
	if err != nil || d == nil || d.Kind != KindMessage {
		t.Fatalf("the room does not go on: bob's next message was delivered as %+v (%v)", d, err)
	}
}

// clone is an independent copy of the remote's MLS state, for commits
// that the remote itself must not adopt.
func (r *remote) clone() *epochs.Member {
	r.h.t.Helper()
	data, err := r.m.MarshalBinary()
	if err != nil {
		r.h.t.Fatal(err)
	}
	m, err := epochs.UnmarshalMember(data, r.h.s.groupConfig())
	if err != nil {
		r.h.t.Fatal(err)
	}
	return m
}

// noResolves is DMLSCommitData with no resolved epochs (epochs'
// encodeResolves(nil)): version 1, empty vector.
var noResolves = []byte{1, 0}

// TestForgedCommit: a commit in bob's leaf and name, on the current
// epoch's real group state, but signed with a key that is not in the
// group (an attacker that knows the epoch's state, not bob's key).
func TestForgedCommit(t *testing.T) {
	h, bob, alice, _ := badInputRoom(t)
	base, err := bob.m.Base()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bob.clone().Public(base)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := suite.Lookup(testSuite)
	forgerSig, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	forgerLeaf, err := s.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	bobLeaf := treemath.LeafIndex(0) // bob created the group
	forger := group.New(pub, group.NewPrivate(bobLeaf, forgerSig, treekem.NewPrivateState(bobLeaf, forgerLeaf)), h.s.groupConfig())
	pc, err := forger.Commit(group.CommitOptions{SkipPending: true, ForcePath: true, AuthenticatedData: noResolves})
	if err != nil {
		t.Fatalf("forge: %v", err)
	}
	out := &epochs.Outgoing{Commit: epochs.Commit{Message: pc.Commit, Base: base, Epoch: epochs.ID(pc.State().Public().EpochID()),
		Number: pc.State().Epoch(), Creator: bob.dev}}
	ev, _, _ := bob.wire(out)
	applied := counter(h.metrics.CommitsApplied)
	h.send([]json.RawMessage{ev}, nil)
	if got := counter(h.metrics.CommitsRejected.WithLabelValues("invalid")); got != 1 {
		t.Errorf("forged commit: %v rejected as invalid, want 1", got)
	}
	if counter(h.metrics.CommitsApplied) != applied {
		t.Error("the forged commit was applied")
	}
	// Refused for its signature, not for anything else about it.
	if !strings.Contains(h.logs.String(), "signature verification failed") {
		t.Errorf("the forged commit was not refused for its signature; log:\n%s", h.logs)
	}
	r := h.loadRoom(bob.room)
	if heads := r.m.Graph().Heads(); len(heads) != 1 || heads[0] != base {
		t.Errorf("heads after the forged commit: %v, want [%v]", heads, base)
	}
	goesOn(t, h, bob, alice)
}

// TestCommitAddsOutsider: bob commits an Add of a device of eve, who is
// not in the room (epochs.Member.CommitProposals makes the commit the
// rules forbid).
func TestCommitAddsOutsider(t *testing.T) {
	h, bob, alice, _ := badInputRoom(t)
	s, _ := suite.Lookup(testSuite)
	eveSig, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	eve, err := group.NewKeyPackage(message.BasicCredential([]byte("@eve:remote.test|EVEDEV")), eveSig, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := bob.m.CommitProposals(bob.dev, []*message.Proposal{group.AddProposal(&eve.KeyPackage)})
	if err != nil {
		t.Fatal(err)
	}
	ev, _, _ := bob.wire(out)
	h.send([]json.RawMessage{ev}, nil)
	if got := counter(h.metrics.CommitsRejected.WithLabelValues("unauthorised_add")); got != 1 {
		t.Errorf("%v commits rejected as unauthorised_add, want 1", got)
	}
	r := h.loadRoom(bob.room)
	base, _ := r.m.Base()
	for _, d := range r.m.Devices(base) {
		if d.UserID == "@eve:remote.test" {
			t.Errorf("eve's device is in our group")
		}
	}
	goesOn(t, h, bob, alice)
}

// TestWelcomeForUnpublishedDevice: bob adds a device of alice that we
// never made, with a KeyPackage he made himself, and sends its Welcome to
// that device: we hold no KeyPackage the Welcome is for.
func TestWelcomeForUnpublishedDevice(t *testing.T) {
	h, bob, alice, dev := badInputRoom(t)
	s, _ := suite.Lookup(testSuite)
	sig, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	ghost := epochs.Device{UserID: string(alice), DeviceID: "GHOST"}
	kp, err := group.NewKeyPackage(message.BasicCredential([]byte(ghost.Identity())), sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, ev, _, wel := bob.commit(view(bob.dev, dev, ghost), map[epochs.Device]*message.KeyPackage{ghost: &kp.KeyPackage})
	if len(out.Added) != 1 || out.Added[0] != ghost {
		t.Fatalf("bob's commit added %v", out.Added)
	}
	h.send([]json.RawMessage{ev}, []json.RawMessage{toDevice(bob.dev.UserID, ghost, wel)})
	if got := counter(h.metrics.WelcomesRefused.WithLabelValues("unknown_key_package")); got != 1 {
		t.Errorf("%v Welcomes refused as unknown_key_package, want 1", got)
	}
	if got := counter(h.metrics.WelcomesJoined); got != 1 {
		t.Errorf("%v Welcomes joined, want only alice's first", got)
	}
	r := h.loadRoom(bob.room)
	for _, d := range r.m.Ours() {
		if d == ghost {
			t.Error("the unpublished device holds an epoch")
		}
	}
	goesOn(t, h, bob, alice)
}

// TestMalformedResolves: commits whose resolves fields are malformed or
// contradict the MLS commit. The commits are made on a copy of bob's
// state, so that bob goes on in the epoch we hold.
func TestMalformedResolves(t *testing.T) {
	h, bob, alice, dev := badInputRoom(t)
	room := view(bob.dev, dev)
	cases := []struct {
		name   string
		fields map[string]string // content fields replaced (JSON)
		metric func() float64
	}{
		{"resolves without dmls_resolves", map[string]string{"resolves": `[[0,["@bob:remote.test","BOBDEV"]]]`},
			func() float64 { return counter(h.metrics.MalformedEvents.WithLabelValues("room_event")) }},
		{"resolves entry not a pair", map[string]string{"resolves": `[[0]]`, "dmls_resolves": `["AAAA"]`},
			func() float64 { return counter(h.metrics.MalformedEvents.WithLabelValues("room_event")) }},
		{"dmls_resolves not base64", map[string]string{"resolves": `[[0,["@bob:remote.test","BOBDEV"]]]`, "dmls_resolves": `["%%"]`},
			func() float64 { return counter(h.metrics.MalformedEvents.WithLabelValues("room_event")) }},
		{"dmls_resolves names an epoch the commit does not resolve", map[string]string{
			"resolves": `[[0,["@bob:remote.test","BOBDEV"]]]`, "dmls_resolves": `["` + bob.m.Graph().Heads()[0].String() + `"]`},
			func() float64 { return counter(h.metrics.CommitsRejected.WithLabelValues("invalid")) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, applied := c.metric(), counter(h.metrics.CommitsApplied)
			clone := bob.clone()
			out, err := clone.Commit(bob.dev, room, func(epochs.Device) *message.KeyPackage { return nil }, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			ev, _, _ := bob.wire(out)
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(ev, &raw); err != nil {
				t.Fatal(err)
			}
			var content map[string]json.RawMessage
			if err := json.Unmarshal(raw["content"], &content); err != nil {
				t.Fatal(err)
			}
			for k, v := range c.fields {
				content[k] = json.RawMessage(v)
			}
			raw["content"] = mustJSON(t, content)
			h.send([]json.RawMessage{mustJSON(t, raw)}, nil)
			if got := c.metric() - before; got != 1 {
				t.Errorf("counted %v, want 1", got)
			}
			if counter(h.metrics.CommitsApplied) != applied {
				t.Error("the commit was applied")
			}
			goesOn(t, h, bob, alice)
		})
	}
}
