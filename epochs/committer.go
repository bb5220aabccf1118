package epochs

import (
	"cmp"
	"time"
)

// LeafDevice is a group member with its leaf index in the ratchet tree.
type LeafDevice struct {
	Device Device
	Leaf   uint32
}

// Jitter draws a uniform integer in [0, n). *math/rand/v2.Rand satisfies
// it; seed it per device so that devices do not draw the same delays.
type Jitter interface {
	Int64N(n int64) int64
}

// CommitterInput is what the committer rule needs to know.
type CommitterInput struct {
	// Joined are the group's devices whose users are joined, with their
	// leaf indices, in the base epoch.
	Joined []LeafDevice
	// Self is the device that asks.
	Self Device
	// Seen is when Self last saw the group change: a membership change,
	// or a commit that arrived. Each change restarts the wait (package
	// doc, "Committer").
	Seen time.Time
	// Grace is how long the others leave the first committer.
	Grace time.Duration
	// MaxJitter bounds the random extra delay; zero means none.
	MaxJitter time.Duration
	// Jitter is required if MaxJitter > 0.
	Jitter Jitter
	// Rounds is how many commits in a row that resolved a fork lead to
	// the base (Graph.ResolvingRun). Each doubles a waiting device's
	// delay, up to MaxBackoff times.
	Rounds int
}

// Action is the committer rule's answer.
type Action int

const (
	// DoNotCommit: Self is not a joined member of the group.
	DoNotCommit Action = iota
	// CommitNow: Self has the lowest leaf index.
	CommitNow
	// CommitLater: at Decision.At, commit if the change is still not in
	// the base epoch (NextCommit's Plan is not Empty, or the fork is still
	// there); otherwise do nothing.
	CommitLater
)

// Decision is when Self should commit.
type Decision struct {
	Action Action
	// Delay is counted from CommitterInput.Seen; At is Seen + Delay.
	Delay time.Duration
	At    time.Time
}

// DecideCommitter is the committer rule (package doc, "Committer"): the
// joined device with the lowest leaf index commits at once; every other
// joined device waits Grace plus a jitter drawn from [0, MaxJitter),
// doubled for each of Rounds up to MaxBackoff times, and then commits
// only if nobody did.
func DecideCommitter(in CommitterInput) Decision {
	var first *LeafDevice
	self := false
	for i := range in.Joined {
		d := &in.Joined[i]
		if d.Device == in.Self {
			self = true
		}
		if first == nil || compareLeaf(*d, *first) < 0 {
			first = d
		}
	}
	switch {
	case !self:
		return Decision{Action: DoNotCommit}
	case first.Device == in.Self:
		return Decision{Action: CommitNow, At: in.Seen}
	}
	return in.wait()
}

// wait is the decision of a joined device that is not the first: Grace
// plus a jitter, doubled for each of Rounds up to MaxBackoff times.
func (in CommitterInput) wait() Decision {
	delay := max(in.Grace, 0)
	if in.MaxJitter > 0 && in.Jitter != nil {
		delay += time.Duration(in.Jitter.Int64N(int64(in.MaxJitter)))
	}
	delay <<= min(max(in.Rounds, 0), backoffDoublings)
	return Decision{Action: CommitLater, Delay: delay, At: in.Seen.Add(delay)}
}

// MaxBackoff bounds the factor by which resolving rounds in a row
// lengthen a waiting device's delay (package doc, "Committer"): each
// doubles it, at most backoffDoublings times.
const (
	backoffDoublings = 4
	MaxBackoff       = 1 << backoffDoublings
)

// compareLeaf orders by leaf index; equal indices, which a valid tree never
// has, fall back to the device so that the answer is still unique.
func compareLeaf(a, b LeafDevice) int {
	if c := cmp.Compare(a.Leaf, b.Leaf); c != 0 {
		return c
	}
	return a.Device.Compare(b.Device)
}

// DecideAmong is the committer rule for several devices of one member
// (ours): DecideCommitter asked for each of ours in turn, with in.Self
// ignored, in time linear in Joined and ours (asking for each in turn is
// quadratic: a room of 10,000 of our devices made 10^8 comparisons a
// reconciliation). It returns the decision of the one of ours that
// commits now, if any; else the earliest CommitLater among ours, drawing
// each one's jitter in the order of ours as the calls in turn would; else
// DoNotCommit. by is the device the decision is for.
func DecideAmong(in CommitterInput, ours []Device) (dec Decision, by Device) {
	joined := make(map[Device]bool, len(in.Joined))
	var first *LeafDevice
	for i := range in.Joined {
		d := &in.Joined[i]
		joined[d.Device] = true
		if first == nil || compareLeaf(*d, *first) < 0 {
			first = d
		}
	}
	var later *Decision
	for _, d := range ours {
		switch {
		case !joined[d]:
			continue
		case first.Device == d:
			return Decision{Action: CommitNow, At: in.Seen}, d
		}
		if dd := in.wait(); later == nil || dd.At.Before(later.At) {
			later, by = &dd, d
		}
	}
	if later == nil {
		return Decision{Action: DoNotCommit}, Device{}
	}
	return *later, by
}
