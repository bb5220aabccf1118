package epochs

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestDecideCommitter(t *testing.T) {
	joined := []LeafDevice{{bob, 4}, {alice, 2}, {carol, 7}} // unsorted on purpose
	const grace, jitter = 10 * time.Second, 5 * time.Second
	tests := []struct {
		name   string
		joined []LeafDevice
		self   Device
		want   Action
	}{
		{"lowest leaf commits now", joined, alice, CommitNow},
		{"others wait", joined, bob, CommitLater},
		{"highest waits too", joined, carol, CommitLater},
		{"not a joined member", joined, dev("@dave:x", "D1"), DoNotCommit},
		{"empty group", nil, alice, DoNotCommit},
		{"alone", []LeafDevice{{carol, 9}}, carol, CommitNow},
		{"equal leaves fall back to device order", []LeafDevice{{bob, 1}, {alice, 1}}, alice, CommitNow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideCommitter(CommitterInput{
				Joined: tt.joined, Self: tt.self, Seen: t0, Grace: grace, MaxJitter: jitter,
				Jitter: rand.New(rand.NewPCG(1, 2)),
			})
			if d.Action != tt.want {
				t.Fatalf("action %v, want %v", d.Action, tt.want)
			}
			switch d.Action {
			case CommitNow:
				if d.Delay != 0 || !d.At.Equal(t0) {
					t.Fatalf("commit now with delay %v at %v", d.Delay, d.At)
				}
			case CommitLater:
				if d.Delay < grace || d.Delay >= grace+jitter || !d.At.Equal(t0.Add(d.Delay)) {
					t.Fatalf("delay %v at %v", d.Delay, d.At)
				}
			}
		})
	}
}

func TestDecideCommitterJitterIsSeeded(t *testing.T) {
	in := func(seed uint64) CommitterInput {
		return CommitterInput{
			Joined: []LeafDevice{{alice, 0}, {bob, 1}}, Self: bob, Seen: t0,
			Grace: time.Second, MaxJitter: time.Hour, Jitter: rand.New(rand.NewPCG(seed, 0)),
		}
	}
	a, b, c := DecideCommitter(in(1)), DecideCommitter(in(1)), DecideCommitter(in(2))
	if a != b {
		t.Fatal("same seed, different delays")
	}
	if a == c {
		t.Fatal("different seeds, same delay")
	}
	// Without jitter the delay is exactly the grace period.
	noJitter := in(1)
	noJitter.MaxJitter = 0
	if d := DecideCommitter(noJitter); d.Delay != time.Second {
		t.Fatalf("delay %v", d.Delay)
	}
}

// TestDecideCommitterBacksOff checks that each resolving round in a row
// doubles a waiting device's delay, up to MaxBackoff, and leaves the
// first committer's at once.
func TestDecideCommitterBacksOff(t *testing.T) {
	joined := []LeafDevice{{alice, 0}, {bob, 1}}
	for rounds, factor := range []time.Duration{1, 2, 4, 8, 16, 16, 16} {
		in := CommitterInput{Joined: joined, Self: bob, Seen: t0, Grace: 3 * time.Second, Rounds: rounds}
		if d := DecideCommitter(in); d.Action != CommitLater || d.Delay != factor*3*time.Second {
			t.Errorf("rounds %d: %v after %v, want %v", rounds, d.Action, d.Delay, factor*3*time.Second)
		}
		// The jitter is doubled with the grace: the whole wait backs off.
		in.MaxJitter, in.Jitter = time.Second, rand.New(rand.NewPCG(1, 2))
		if d := DecideCommitter(in); d.Delay < factor*3*time.Second || d.Delay >= factor*4*time.Second {
			t.Errorf("rounds %d with jitter: delay %v", rounds, d.Delay)
		}
		in.Self = alice
		if d := DecideCommitter(in); d.Action != CommitNow || d.Delay != 0 {
			t.Errorf("rounds %d: the first committer waits %v", rounds, d.Delay)
		}
	}
}

// TestDecideAmongIsDecideCommitterInTurn: for random groups and random
// sets of ours (joined or not, the first among them or not, equal
// leaves), DecideAmong gives what asking DecideCommitter for each of ours
// in turn gives: the first committer of ours at once, else the earliest
// wait, with the same jitter draws.
func TestDecideAmongIsDecideCommitterInTurn(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for round := range 500 {
		var joined []LeafDevice
		for i := range r.IntN(12) {
			joined = append(joined, LeafDevice{dev(fmt.Sprintf("@u%d:x", i), "D"), uint32(r.IntN(8))})
		}
		var ours []Device
		for i := range r.IntN(14) {
			ours = append(ours, dev(fmt.Sprintf("@u%d:x", r.IntN(16)+i%2), "D"))
		}
		in := CommitterInput{Joined: joined, Seen: t0, Grace: time.Second, MaxJitter: time.Minute, Rounds: r.IntN(3)}

		in.Jitter = rand.New(rand.NewPCG(uint64(round), 1))
		var want *Decision
		var wantBy Device
	turn:
		for _, d := range ours {
			each := in
			each.Self = d
			switch dec := DecideCommitter(each); dec.Action {
			case CommitNow:
				want, wantBy = &dec, d
				break turn
			case CommitLater:
				if want == nil || dec.At.Before(want.At) {
					want, wantBy = &dec, d
				}
			}
		}
		in.Jitter = rand.New(rand.NewPCG(uint64(round), 1))
		got, by := DecideAmong(in, ours)
		if want == nil {
			if got.Action != DoNotCommit {
				t.Fatalf("round %d: %+v by %v, want DoNotCommit", round, got, by)
			}
			continue
		}
		if got != *want || by != wantBy {
			t.Fatalf("round %d: %+v by %v, want %+v by %v", round, got, by, *want, wantBy)
		}
	}
}
