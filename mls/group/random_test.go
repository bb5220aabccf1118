package group

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// liveGroup drives a group of members through the public API.
type liveGroup struct {
	t       *testing.T
	id      suite.ID
	rng     *rand.Rand
	members map[uint32]*Group
	psks    *PSKStore
	next    int
}

func (lg *liveGroup) cfg() Config {
	wf := message.WireFormatPublicMessage
	if lg.rng.IntN(2) == 0 {
		wf = message.WireFormatPrivateMessage
	}
	return Config{HandshakeWireFormat: wf, PSKs: lg.psks}
}

func (lg *liveGroup) pick() *Group {
	keys := lg.leaves()
	return lg.members[keys[lg.rng.IntN(len(keys))]]
}

func (lg *liveGroup) leaves() []uint32 {
	var ls []uint32
	for l := range lg.members {
		ls = append(ls, l)
	}
	for i := range ls { // deterministic order for the seeded choices
		for j := i + 1; j < len(ls); j++ {
			if ls[j] < ls[i] {
				ls[i], ls[j] = ls[j], ls[i]
			}
		}
	}
	return ls
}

// distribute delivers committer's pending commit to every other member
// and checks that all agree afterwards.
func (lg *liveGroup) distribute(committer *Group, pc *PendingCommit) {
	t := lg.t
	t.Helper()
	next := map[uint32]*Group{}
	for l, g := range lg.members {
		if g == committer {
			ng, err := g.HandlePendingCommit(pc)
			if err != nil {
				t.Fatal(err)
			}
			next[l] = ng
			continue
		}
		r, err := g.Handle(pc.Commit)
		if err != nil {
			t.Fatalf("member %d handling commit from %d: %v", l, committer.LeafIndex(), err)
		}
		if r.Next != nil {
			next[r.Next.LeafIndex()] = r.Next
		}
	}
	lg.members = next
	var gs []*Group
	for _, l := range lg.leaves() {
		gs = append(gs, lg.members[l])
	}
	checkAgree(t, gs)
}

func (lg *liveGroup) join(pc *PendingCommit, bundles []*KeyPackageBundle) {
	for _, b := range bundles {
		g, err := Join(pc.Welcome, b, &JoinOptions{Config: lg.cfg()})
		if err != nil {
			lg.t.Fatalf("join: %v", err)
		}
		lg.members[g.LeafIndex()] = g
	}
}

func (lg *liveGroup) bundle() *KeyPackageBundle {
	lg.next++
	return newBundle(lg.t, lg.id, name(lg.next))
}

func (lg *liveGroup) messages() {
	t := lg.t
	for range 2 {
		from := lg.pick()
		text := fmt.Appendf(nil, "message %d", lg.rng.Int())
		ct, err := from.Protect(text, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range lg.members {
			if to == from {
				continue
			}
			r, err := to.Handle(ct)
			if err != nil {
				t.Fatalf("member %d decrypting from %d: %v", to.LeafIndex(), from.LeafIndex(), err)
			}
			if !bytes.Equal(r.ApplicationData, text) || r.Sender.LeafIndex != from.LeafIndex() {
				t.Fatal("wrong application message")
			}
		}
	}
}

func (lg *liveGroup) step() string {
	t := lg.t
	n := len(lg.members)
	op := lg.rng.IntN(10)
	if op >= 7 || n < 3 {
		op = 0
	}
	if n >= 50 && op == 0 {
		op = 1
	}
	committer := lg.pick()
	switch op {
	case 0: // add
		var bundles []*KeyPackageBundle
		var props []*message.Proposal
		for range 1 + lg.rng.IntN(min(3, 50-n)) {
			b := lg.bundle()
			bundles = append(bundles, b)
			props = append(props, AddProposal(&b.KeyPackage))
		}
		pc, err := committer.Commit(CommitOptions{Proposals: props, ForcePath: lg.rng.IntN(2) == 0})
		if err != nil {
			t.Fatal(err)
		}
		lg.distribute(committer, pc)
		lg.join(pc, bundles)
		return "add"
	case 1: // remove
		victim := lg.pick()
		for victim == committer {
			victim = lg.pick()
		}
		pc, err := committer.Commit(CommitOptions{Proposals: []*message.Proposal{RemoveProposal(victim.LeafIndex())}})
		if err != nil {
			t.Fatal(err)
		}
		lg.distribute(committer, pc)
		return "remove"
	case 2: // update proposal committed by someone else
		updater := lg.pick()
		for updater == committer {
			updater = lg.pick()
		}
		msg, _, err := updater.ProposeUpdate(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range lg.members {
			if g != updater {
				mustHandle(t, g, msg)
			}
		}
		pc, err := committer.Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lg.distribute(committer, pc)
		return "update"
	case 3: // external PSK
		id := fmt.Appendf(nil, "psk-%d", lg.rng.Int())
		lg.psks.AddExternal(id, bytes.Repeat([]byte{byte(len(id))}, 32))
		pskID, err := ExternalPSKID(committer.Public().Suite(), id)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := committer.Commit(CommitOptions{Proposals: []*message.Proposal{PSKProposal(pskID)}, ForcePath: lg.rng.IntN(2) == 0})
		if err != nil {
			t.Fatal(err)
		}
		lg.distribute(committer, pc)
		return "psk"
	case 4: // external join
		if n >= 50 {
			return lg.step()
		}
		gi, err := committer.GroupInfo(GroupInfoOptions{RatchetTree: true, ExternalPub: true})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := JoinExternal(gi, lg.bundle(), &ExternalJoinOptions{Config: lg.cfg()})
		if err != nil {
			t.Fatal(err)
		}
		joiner := pc.State()
		lg.distribute(nil, pc)
		lg.members[joiner.LeafIndex()] = joiner
		checkAgree(t, []*Group{joiner, lg.pick()})
		return "external"
	case 5: // resumption PSK of an earlier epoch
		pskID, err := ResumptionPSKID(committer.Public().Suite(), message.ResumptionApplication, committer.GroupID(), committer.Epoch())
		if err != nil {
			t.Fatal(err)
		}
		pc, err := committer.Commit(CommitOptions{Proposals: []*message.Proposal{PSKProposal(pskID)}})
		if err != nil {
			t.Fatal(err)
		}
		lg.distribute(committer, pc)
		return "resumption"
	default: // empty commit with path
		pc, err := committer.Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lg.distribute(committer, pc)
		return "path"
	}
}

func TestRandomLiveGroups(t *testing.T) {
	steps := 60
	if testing.Short() {
		steps = 15
	}
	for _, id := range []suite.ID{suite.X25519AES128GCMSHA256Ed25519, suite.P256AES128GCMSHA256P256, suite.X25519ChaCha20Poly1305SHA256Ed25519} {
		t.Run(fmt.Sprint(id), func(t *testing.T) {
			lg := &liveGroup{t: t, id: id, rng: rand.New(rand.NewPCG(uint64(id), 42)), members: map[uint32]*Group{}, psks: NewPSKStore()}
			creator, err := Create(lg.bundle(), []byte("random group"), nil, lg.cfg())
			if err != nil {
				t.Fatal(err)
			}
			lg.members[0] = creator
			ops := map[string]int{}
			for range steps {
				ops[lg.step()]++
				lg.messages()
			}
			t.Logf("suite %d: %d members after %v", id, len(lg.members), ops)
		})
	}
}
