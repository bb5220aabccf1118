package group

import (
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

func mustProtect(t *testing.T, g *Group, text string) []byte {
	t.Helper()
	msg, err := g.Protect([]byte(text), []byte("ad "+text))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func expectLate(t *testing.T, g *Group, msg []byte, text string, epoch uint64) {
	t.Helper()
	r, err := g.Handle(msg)
	if err != nil {
		t.Fatalf("late message %q at epoch %d: %v", text, g.Epoch(), err)
	}
	if string(r.ApplicationData) != text || string(r.AuthenticatedData) != "ad "+text || r.Epoch != epoch || r.ContentType != message.ContentApplication {
		t.Fatalf("late message read as %q (%q) of epoch %d", r.ApplicationData, r.AuthenticatedData, r.Epoch)
	}
}

// The interop harness's out_of_order_across_epochs: a message encrypted
// before a commit arrives after it (RFC 9420 §9.2, §12.4.2).
func TestLateApplicationMessages(t *testing.T) {
	for _, wf := range []message.WireFormat{message.WireFormatPublicMessage, message.WireFormatPrivateMessage} {
		cfg := Config{HandshakeWireFormat: wf, PastEpochs: 2}
		gs := threeMembers(t, cfg) // epoch 1
		fromBob1 := mustProtect(t, gs[1], "bob in epoch 1")
		fromCarol1 := mustProtect(t, gs[2], "carol in epoch 1")
		aliceAt1 := gs[0]

		gs, _ = commitAll(t, gs, 0, CommitOptions{ForcePath: true}) // epoch 2
		expectLate(t, gs[0], fromBob1, "bob in epoch 1", 1)
		// Alice created the group: she keeps epoch 0 too.
		if got := gs[0].PastEpochs(); len(got) != 2 || got[0] != 0 || got[1] != 1 {
			t.Fatalf("past epochs %v, want [0 1]", got)
		}
		// Deleted after use, in the past epoch's secret tree that the
		// epoch's own state shares: neither reads it again.
		for _, g := range []*Group{gs[0], aliceAt1} {
			if _, err := g.Handle(fromBob1); !errors.Is(err, framing.ErrReplay) {
				t.Fatalf("replayed late message at epoch %d: %v, want ErrReplay", g.Epoch(), err)
			}
		}
		// A proposal of a past epoch can no longer take effect.
		prop, _, err := aliceAt1.WithConfig(Config{HandshakeWireFormat: message.WireFormatPrivateMessage}).Propose(RemoveProposal(2), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gs[1].Handle(prop); !errors.Is(err, ErrWrongEpoch) {
			t.Fatalf("proposal of a past epoch: %v, want ErrWrongEpoch", err)
		}

		fromCarol2 := mustProtect(t, gs[2], "carol in epoch 2")
		// Bob removes carol; her messages of epochs 1 and 2 still read
		// with her signature key of then.
		gs, _ = commitAll(t, gs[:2], 1, CommitOptions{Proposals: []*message.Proposal{RemoveProposal(2)}}) // epoch 3
		expectLate(t, gs[0], fromCarol2, "carol in epoch 2", 2)

		// The stored state keeps its past epochs.
		data, err := gs[0].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := UnmarshalGroup(data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := dec.PastEpochs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Fatalf("decoded past epochs %v, want [1 2]", got)
		}
		expectLate(t, dec, fromCarol1, "carol in epoch 1", 1)
		if again, _ := dec.MarshalBinary(); len(again) == 0 {
			t.Fatal("decoded state does not encode")
		}

		// Epoch 1 is now three back: beyond PastEpochs, its tree is gone.
		fromBob3 := mustProtect(t, gs[1], "bob in epoch 3")
		gs, _ = commitAll(t, gs, 0, CommitOptions{ForcePath: true}) // epoch 4
		if _, err := gs[0].Handle(fromCarol1); !errors.Is(err, ErrWrongEpoch) {
			t.Fatalf("message of an epoch no longer kept: %v, want ErrWrongEpoch", err)
		}
		expectLate(t, gs[0], fromBob3, "bob in epoch 3", 3)
		if got := gs[0].PastEpochs(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
			t.Fatalf("past epochs %v, want [2 3]", got)
		}
	}
}

func TestNoPastEpochsByDefault(t *testing.T) {
	gs := threeMembers(t, Config{})
	late := mustProtect(t, gs[1], "late")
	gs, _ = commitAll(t, gs, 0, CommitOptions{ForcePath: true})
	if _, err := gs[0].Handle(late); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("late message without past epochs: %v, want ErrWrongEpoch", err)
	}
	if n := len(gs[0].PastEpochs()); n != 0 {
		t.Fatalf("%d past epochs kept", n)
	}
	for _, c := range []struct{ ask, want int }{{-1, 0}, {3, 3}, {MaxPastEpochs + 1, MaxPastEpochs}} {
		if got := (&Config{PastEpochs: c.ask}).pastEpochs(); got != c.want {
			t.Errorf("PastEpochs %d keeps %d, want %d", c.ask, got, c.want)
		}
	}
}
