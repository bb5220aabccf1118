package epochs

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
)

// cloneMember copies a member's graph structure so that a benchmark can
// repeat an operation on the same starting point. States are shared: the
// operations measured only puncture a base's PRF with a fresh input.
func cloneMember(o one) one {
	m := o.Member
	c := NewJoinedMember(m.cfg, m.Policy)
	for id, n := range m.graph.nodes {
		cp := *n
		c.graph.nodes[id] = &cp
	}
	for id, ch := range m.graph.children {
		c.graph.children[id] = append([]ID(nil), ch...)
	}
	c.graph.retiredBy = maps.Clone(m.graph.retiredBy)
	c.known = maps.Clone(m.known)
	return one{c, o.Self}
}

// forkedRoom makes a group of n devices in which members 1..heads commit
// on the same epoch; members 0 and heads+1 apply all of them, so they see
// a fork of the given number of heads.
func forkedRoom(b *testing.B, n, heads int) (committer, receiver one, room Room) {
	ms, room := memberRoomHeld(b, n, heads+2)
	var commits []Commit
	for i := 1; i <= heads; i++ {
		commits = append(commits, ms[i].commit(b, room, nil, fmt.Sprintf("$h%d", i), t0).Commit)
	}
	for _, m := range []one{ms[0], ms[heads+1]} {
		for _, c := range commits {
			if _, err := m.Apply(c, room, room, t0); err != nil {
				b.Fatal(err)
			}
		}
		if got := len(m.Graph().Heads()); got != heads {
			b.Fatalf("%d heads, want %d", got, heads)
		}
	}
	return ms[0], ms[heads+1], room
}

// BenchmarkResolveFork measures making the resolving commit (on the base,
// naming the other heads, with a path) and applying it at another member.
func BenchmarkResolveFork(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, heads := range []int{2, 4, 8} {
			committer, receiver, room := forkedRoom(b, n, heads)
			b.Run(fmt.Sprintf("members=%d/heads=%d/commit", n, heads), func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					out := cloneMember(committer).commit(b, room, nil, fmt.Sprintf("$r%d", i), t0)
					if len(out.Commit.Resolves) != heads-1 {
						b.Fatalf("resolves %d heads, want %d", len(out.Commit.Resolves), heads-1)
					}
				}
			})
			b.Run(fmt.Sprintf("members=%d/heads=%d/apply", n, heads), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					out := cloneMember(committer).commit(b, room, nil, fmt.Sprintf("$r%d", i), t0)
					r := cloneMember(receiver)
					b.StartTimer()
					if _, err := r.Apply(out.Commit, room, room, t0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkApplyOldEpoch applies a commit made on an epoch two epochs
// behind the receiver's newest (still retained), next to one made on the
// newest for comparison.
func BenchmarkApplyOldEpoch(b *testing.B) {
	for _, n := range []int{100, 1000} {
		ms, room := memberRoomHeld(b, n, 3)
		laggard := cloneMember(ms[2]) // stays at the old epoch
		for i := range 2 {
			out := ms[1].commit(b, room, nil, fmt.Sprintf("$n%d", i), t0.Add(time.Second))
			if _, err := ms[0].Apply(out.Commit, room, room, t0); err != nil {
				b.Fatal(err)
			}
			if _, err := ms[2].Apply(out.Commit, room, room, t0); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range []struct {
			name   string
			sender one
		}{{"old", laggard}, {"newest", ms[2]}} {
			b.Run(fmt.Sprintf("members=%d/base=%s", n, c.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					out := cloneMember(c.sender).commit(b, room, nil, fmt.Sprintf("$o%d", i), t0)
					r := cloneMember(ms[0])
					b.StartTimer()
					if _, err := r.Apply(out.Commit, room, room, t0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLoadOwnPrivates measures loading a stored epoch that the
// service's devices all hold and decoding their private states, as a
// commit by one of them does first: in a room of 10,000 of our devices
// this was 8 % of the service's CPU while bots sent and members came
// and went.
func BenchmarkLoadOwnPrivates(b *testing.B) {
	const n = 1000
	a := dev("@puppet0:x", "D0")
	r := newServiceRoom(b, 2, a)
	joining := map[Device]bool{}
	for i := 1; i < n; i++ {
		d := dev(fmt.Sprintf("@puppet%d:x", i/100), fmt.Sprintf("D%d", i%100))
		r.room.Members[d.UserID] = Join
		r.room.Devices[d.UserID] = append(r.room.Devices[d.UserID], d.DeviceID)
		joining[d] = true
	}
	ours := func(d Device) *group.KeyPackageBundle {
		if !joining[d] {
			return nil
		}
		return r.bundles[d]
	}
	out, err := r.svc.CommitJoining(a, r.room, r.kps, ours, t0)
	if err != nil || len(out.Joined) != n-1 {
		b.Fatalf("joined %d of our devices (%v)", len(out.Joined), err)
	}
	s := newStore()
	s.write(b, flush(b, r.svc))
	base, err := r.svc.Base()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		st, err := s.member(b).state(base)
		if err != nil || len(st.privs) != n {
			b.Fatalf("decoded %d private states (%v)", len(st.privs), err)
		}
	}
}
