package epochs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// The simulation runs real MLS (suite 1, DMLS init scheme) members through
// Member: a room whose membership changes (joins, leaves, kicks, devices
// added), a network that delivers every event to every device in random
// order with delays, duplicates and partitions that heal, members that
// commit (the committer rule, random updates, resolutions) and send
// application messages, and a few forged commits that add a device of a
// user outside the room. After the last partition heals and the system is
// quiet it checks the conditions. Everything, including the MLS
// key material (testing/cryptotest), follows from the seed.

var (
	simSeeds   = flag.Int("sim.seeds", 200, "number of simulation seeds")
	simSeed    = flag.Int64("sim.seed", -1, "run only this seed (replay)")
	simSoak    = flag.Duration("sim.soak", 0, "keep running further seeds for this long")
	simMembers = flag.Int("sim.members", 0, "override the number of initial members (3 to 50)")
)

// simParams derives a run's shape from its seed: mostly small rooms, one
// seed in ten with 11 to 50 members and fewer steps.
func simParams(seed uint64) (members, steps int) {
	r := rand.New(rand.NewPCG(seed, 7))
	if seed%10 == 9 {
		members = 11 + r.IntN(40)
		steps = 30
	} else {
		members = 3 + r.IntN(8)
		steps = 60
	}
	if *simMembers > 0 {
		members = *simMembers
	}
	return members, steps
}

const (
	mMaxDelay   = 4 // steps for an event to arrive
	mGrace      = 6 * time.Second
	mJitter     = 4 * time.Second
	mQuietLimit = 400
)

var mPolicy = Policy{MaxEpochs: 64, MaxAge: 60 * time.Second}

type mEvent struct {
	commit  *Commit
	welcome []byte
	bundles map[Device]*group.KeyPackageBundle
	rogue   bool
	step    int
	// application message
	app    []byte
	epoch  ID
	msgID  int
	sender Device
}

type mDelivery struct {
	at int
	ev *mEvent
}

type mDevice struct {
	dev     Device
	sigPriv *suite.SignaturePrivateKey
	m       *Member
	inbox   []mDelivery
	pending []*mEvent
	timerAt int
	jitter  *rand.Rand
}

type mStats struct {
	seeds, converged, forks, resolved, maxHeads, sent, decrypted int
	rogueSent, rogueRejected, unretained, lost                   int
}

func (s *mStats) add(o mStats) {
	s.seeds += o.seeds
	s.converged += o.converged
	s.forks += o.forks
	s.resolved += o.resolved
	s.maxHeads = max(s.maxHeads, o.maxHeads)
	s.sent += o.sent
	s.decrypted += o.decrypted
	s.rogueSent += o.rogueSent
	s.rogueRejected += o.rogueRejected
	s.unretained += o.unretained
	s.lost += o.lost
}

type mSim struct {
	t       testing.TB
	seed    uint64
	r       *rand.Rand
	step    int
	room    Room
	rooms   []Room // room after each step
	devices map[Device]*mDevice
	order   []Device // devices in creation order, for deterministic loops
	commits []*Commit
	// epochStep is the step of each epoch's commit event; roster its
	// devices, as its creator made it.
	epochStep map[ID]int
	roster    map[ID][]Device
	children  map[ID]int
	nextEvent int
	nextUser  int
	msgs      []*mEvent
	decrypted map[Device]map[int]bool
	partition map[Device]int // side; nil when healed
	healAt    int
	fail      []string
	stats     mStats
}

var simTrace = os.Getenv("SIM_TRACE")

func simNow(step int) time.Time { return t0.Add(time.Duration(step) * time.Second) }

func (s *mSim) failf(format string, args ...any) {
	s.fail = append(s.fail, fmt.Sprintf("step %d: ", s.step)+fmt.Sprintf(format, args...))
}

func (s *mSim) newDevice(d Device) *mDevice {
	st, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	priv, err := st.GenerateSignatureKey()
	if err != nil {
		s.t.Fatal(err)
	}
	md := &mDevice{dev: d, sigPriv: priv, timerAt: -1, jitter: rand.New(rand.NewPCG(s.seed, uint64(len(s.order))+1000))}
	s.devices[d] = md
	s.order = append(s.order, d)
	return md
}

func (s *mSim) bundle(d Device) *group.KeyPackageBundle {
	kp, err := group.NewKeyPackage(message.BasicCredential([]byte(d.Identity())), s.devices[d].sigPriv,
		&group.KeyPackageOptions{Lifetime: &message.Lifetime{NotBefore: 0, NotAfter: 1 << 62}})
	if err != nil {
		s.t.Fatal(err)
	}
	return kp
}

func (s *mSim) snapshot() Room {
	m := make(map[string]MemberState, len(s.room.Members))
	for k, v := range s.room.Members {
		m[k] = v
	}
	d := make(map[string][]string, len(s.room.Devices))
	for k, v := range s.room.Devices {
		d[k] = slices.Clone(v)
	}
	return Room{Members: m, Devices: d}
}

func (s *mSim) joinedDevices() []Device {
	var out []Device
	for _, d := range s.order {
		if s.room.Members[d.UserID] == Join && slices.Contains(s.room.Devices[d.UserID], d.DeviceID) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, compareDevices)
	return out
}

func (s *mSim) addUser(devices int) string {
	user := fmt.Sprintf("@u%d:x", s.nextUser)
	s.nextUser++
	for i := range devices {
		d := Device{user, fmt.Sprintf("D%d", i+1)}
		s.newDevice(d)
		s.room.Devices[user] = append(s.room.Devices[user], d.DeviceID)
	}
	return user
}

func newMSim(t testing.TB, seed uint64, members int) *mSim {
	s := &mSim{
		t: t, seed: seed, r: rand.New(rand.NewPCG(seed, 1)),
		room:    Room{Members: map[string]MemberState{}, Devices: map[string][]string{}},
		devices: map[Device]*mDevice{}, epochStep: map[ID]int{}, roster: map[ID][]Device{},
		children: map[ID]int{}, decrypted: map[Device]map[int]bool{},
	}
	for i := range members {
		n := 1
		if i%4 == 3 {
			n = 2
		}
		s.room.Members[s.addUser(n)] = Join
	}
	creator := s.devices[s.order[0]]
	cfg := group.Config{Scheme: keyschedule.SchemeDMLS, Now: func() time.Time { return time.Time{} }}
	g, err := group.Create(s.bundle(creator.dev), []byte("!room:x"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	creator.m, err = NewMember(creator.dev, g, "$create", mPolicy, simNow(0))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := creator.m.graph.Base()
	s.epochStep[first] = 0
	s.roster[first] = []Device{creator.dev}
	s.rooms = append(s.rooms, s.snapshot())
	// The creator adds everybody else in one commit.
	s.commit(creator)
	return s
}

func (s *mSim) cfg() group.Config {
	return group.Config{Scheme: keyschedule.SchemeDMLS, Now: func() time.Time { return time.Time{} }}
}

// send queues ev for every device but the sender, with delays, a chance of
// duplicates, and the partition holding cross-side events until it heals.
func (s *mSim) send(from Device, ev *mEvent) {
	for _, d := range s.order {
		if d == from {
			continue
		}
		md := s.devices[d]
		at := s.step + 1 + s.r.IntN(mMaxDelay)
		if s.partition != nil && s.partition[d] != s.partition[from] {
			at = max(at, s.healAt+1+s.r.IntN(mMaxDelay))
		}
		md.inbox = append(md.inbox, mDelivery{at, ev})
		if s.r.IntN(10) == 0 {
			md.inbox = append(md.inbox, mDelivery{at + 1 + s.r.IntN(2*mMaxDelay), ev})
		}
	}
}

// commit makes d's next commit, if it can, and sends it.
func (s *mSim) commit(d *mDevice) {
	if d.m == nil || s.room.Members[d.dev.UserID] != Join {
		return
	}
	bundles := map[Device]*group.KeyPackageBundle{}
	kps := func(x Device) *message.KeyPackage {
		if s.devices[x] == nil {
			return nil
		}
		b := s.bundle(x)
		bundles[x] = b
		return &b.KeyPackage
	}
	s.nextEvent++
	out, err := d.m.Commit(s.snapshot(), kps, fmt.Sprintf("$c%d", s.nextEvent), simNow(s.step))
	if errors.Is(err, ErrCannotCommit) {
		return
	}
	if err != nil {
		s.failf("%v commit: %v", d.dev, err)
		return
	}
	c := out.Commit
	s.epochStep[c.Epoch] = s.step
	s.roster[c.Epoch] = d.m.Devices(c.Epoch)
	s.children[c.Base]++
	if s.children[c.Base] == 2 {
		s.stats.forks++
	}
	if len(c.Resolves) > 0 {
		s.stats.resolved++
	}
	s.commits = append(s.commits, &c)
	ev := &mEvent{commit: &c, welcome: out.Welcome, bundles: bundles, step: s.step}
	s.send(d.dev, ev)
	d.timerAt = -1
	s.after(d)
}

// rogue has d forge a commit adding a device of a user outside the room.
func (s *mSim) rogue(d *mDevice) {
	if d.m == nil {
		return
	}
	evil := Device{"@evil:x", "E"}
	if s.devices[evil] == nil {
		s.newDevice(evil)
	}
	s.nextEvent++
	out, err := d.m.CommitProposals([]*message.Proposal{group.AddProposal(&s.bundle(evil).KeyPackage)}, fmt.Sprintf("$c%d", s.nextEvent))
	if err != nil {
		return
	}
	s.stats.rogueSent++
	s.send(d.dev, &mEvent{commit: &out.Commit, rogue: true, step: s.step})
}

// need says whether d's view calls for a commit: the room differs from
// the base, or there is a fork.
func (s *mSim) need(d *mDevice) bool {
	if d.m == nil || s.room.Members[d.dev.UserID] != Join {
		return false
	}
	rc, err := d.m.graph.NextCommit(s.room)
	if err != nil {
		return false
	}
	if n := len(d.m.graph.Heads()); n > s.stats.maxHeads {
		s.stats.maxHeads = n
	}
	return !rc.Plan.Empty() || len(rc.Resolves) > 0
}

// after applies the committer rule once d's view changed.
func (s *mSim) after(d *mDevice) {
	if !s.need(d) {
		d.timerAt = -1
		return
	}
	if d.timerAt >= 0 {
		return
	}
	dec := DecideCommitter(CommitterInput{
		Joined: d.m.Joined(s.room), Self: d.dev, Seen: simNow(s.step),
		Grace: mGrace, MaxJitter: mJitter, Jitter: d.jitter,
	})
	switch dec.Action {
	case CommitNow:
		d.timerAt = s.step
	case CommitLater:
		d.timerAt = s.step + int((dec.Delay+time.Second-1)/time.Second)
	}
}

func (s *mSim) deliver(d *mDevice, ev *mEvent) {
	if ev.commit != nil {
		s.deliverCommit(d, ev)
	} else {
		s.deliverApp(d, ev)
	}
}

func (s *mSim) deliverCommit(d *mDevice, ev *mEvent) {
	c := ev.commit
	joined := s.room.Members[d.dev.UserID] == Join && slices.Contains(s.room.Devices[d.dev.UserID], d.dev.DeviceID)
	if b := ev.bundles[d.dev]; b != nil && joined {
		if d.m == nil {
			d.m = NewJoinedMember(d.dev, s.cfg(), mPolicy)
			for _, old := range s.commits {
				d.m.Observe(*old)
			}
		}
		_, err := d.m.Join(ev.welcome, b, *c, simNow(s.step))
		if simTrace != "" && d.dev.Identity() == simTrace {
			s.t.Logf("step %d %v join %v on %v: %v", s.step, d.dev, c.Epoch, c.Base, err)
		}
		if err != nil && !errors.Is(err, ErrDuplicateCommit) {
			s.failf("%v join at %v: %v", d.dev, c.Epoch, err)
		}
		s.retry(d)
		s.after(d)
		return
	}
	if d.m == nil {
		// A device whose Welcome has not arrived keeps the room's events,
		// as a Matrix client keeps its timeline.
		if joined {
			d.pending = append(d.pending, ev)
		}
		return
	}
	_, err := d.m.Apply(*c, s.rooms[ev.step], s.rooms[s.epochStep[c.Base]], simNow(s.step))
	if simTrace != "" && d.dev.Identity() == simTrace {
		s.t.Logf("step %d %v apply %v on %v: %v", s.step, d.dev, c.Epoch, c.Base, err)
	}
	switch {
	case err == nil:
		if ev.rogue {
			s.failf("%v accepted an unauthorised add", d.dev)
		}
		s.retry(d)
		s.after(d)
	case errors.Is(err, ErrUnknownEpoch):
		d.pending = append(d.pending, ev)
	case errors.Is(err, ErrDuplicateCommit), errors.Is(err, ErrRemoved):
	case errors.Is(err, ErrParentNotRetained):
		s.stats.unretained++
	case ev.rogue && errors.Is(err, ErrUnauthorisedAdd):
		s.stats.rogueRejected++
	default:
		s.failf("%v rejected %v's commit on %v: %v", d.dev, c.Creator, c.Base, err)
	}
}

func (s *mSim) deliverApp(d *mDevice, ev *mEvent) {
	if d.m == nil {
		if s.room.Members[d.dev.UserID] == Join {
			d.pending = append(d.pending, ev)
		}
		return
	}
	pt, from, err := d.m.Decrypt(ev.epoch, ev.app)
	switch {
	case err == nil:
		if !bytes.Equal(pt, []byte(fmt.Sprintf("message %d", ev.msgID))) || from != ev.sender {
			s.failf("%v decrypted message %d wrongly", d.dev, ev.msgID)
		}
		if !slices.Contains(s.roster[ev.epoch], d.dev) {
			s.failf("%v decrypted message %d of an epoch it was not in", d.dev, ev.msgID)
		}
		if s.decrypted[d.dev] == nil {
			s.decrypted[d.dev] = map[int]bool{}
		}
		if !s.decrypted[d.dev][ev.msgID] {
			s.decrypted[d.dev][ev.msgID] = true
			s.stats.decrypted++
		}
	case errors.Is(err, ErrUnknownEpoch):
		d.pending = append(d.pending, ev)
	case errors.Is(err, ErrParentNotRetained):
		s.stats.lost++
	default:
		if !s.decrypted[d.dev][ev.msgID] { // a duplicate fails on its generation
			s.failf("%v cannot decrypt message %d in %v: %v", d.dev, ev.msgID, ev.epoch, err)
		}
	}
}

// retry re-delivers what waited for an epoch, until nothing moves.
func (s *mSim) retry(d *mDevice) {
	for {
		waiting := d.pending
		d.pending = nil
		for _, ev := range waiting {
			s.deliver(d, ev)
			if d.m == nil {
				return
			}
		}
		if len(d.pending) == len(waiting) {
			return
		}
	}
}

// changeMembership: a join (new user), a leave or kick, or a new device.
func (s *mSim) changeMembership() {
	var joined []string
	for _, d := range s.order {
		if s.room.Members[d.UserID] == Join && !slices.Contains(joined, d.UserID) {
			joined = append(joined, d.UserID)
		}
	}
	switch k := s.r.IntN(3); {
	case k == 0 || len(joined) < 3:
		s.room.Members[s.addUser(1+s.r.IntN(2))] = Join
	case k == 1:
		user := joined[s.r.IntN(len(joined))]
		s.room.Members[user] = Leave
		for _, d := range s.order {
			if d.UserID == user && s.devices[d].m != nil {
				s.devices[d].m.Destroy()
				s.devices[d].m = nil
				s.devices[d].pending = nil
			}
		}
	default:
		user := joined[s.r.IntN(len(joined))]
		d := Device{user, fmt.Sprintf("D%d", len(s.room.Devices[user])+1)}
		s.newDevice(d)
		s.room.Devices[user] = append(s.room.Devices[user], d.DeviceID)
	}
}

func (s *mSim) tick(active bool, steps int) {
	s.step++
	if active {
		if s.r.IntN(100) < 8 {
			s.changeMembership()
			s.rooms = append(s.rooms, s.snapshot())
			for _, d := range s.order {
				s.after(s.devices[d])
			}
		} else {
			s.rooms = append(s.rooms, s.rooms[len(s.rooms)-1])
		}
		if s.partition == nil && s.step < steps-12 && s.r.IntN(100) < 4 {
			s.partition = map[Device]int{}
			for _, d := range s.order {
				s.partition[d] = s.r.IntN(2)
			}
			s.healAt = s.step + 3 + s.r.IntN(10)
		}
		members := s.members()
		if len(members) > 0 {
			if s.r.IntN(100) < 12 {
				s.commit(members[s.r.IntN(len(members))])
			}
			if s.r.IntN(100) < 50 {
				s.sendApp(members[s.r.IntN(len(members))])
			}
			if s.r.IntN(100) < 2 {
				s.rogue(members[s.r.IntN(len(members))])
			}
		}
	} else {
		s.rooms = append(s.rooms, s.rooms[len(s.rooms)-1])
	}
	if s.partition != nil && s.step >= s.healAt {
		s.partition = nil
	}
	for _, id := range s.order {
		d := s.devices[id]
		var later []mDelivery
		var now []mDelivery
		for _, x := range d.inbox {
			if x.at <= s.step {
				now = append(now, x)
			} else {
				later = append(later, x)
			}
		}
		d.inbox = later
		// Random order within a step.
		s.r.Shuffle(len(now), func(i, j int) { now[i], now[j] = now[j], now[i] })
		for _, x := range now {
			s.deliver(d, x.ev)
		}
	}
	for _, id := range s.order {
		d := s.devices[id]
		if d.timerAt >= 0 && d.timerAt <= s.step {
			d.timerAt = -1
			if s.need(d) {
				s.commit(d)
			}
		}
		if d.m != nil {
			if _, err := d.m.Retain(simNow(s.step)); err != nil {
				s.failf("%v retain: %v", d.dev, err)
			}
		}
	}
}

// members are the devices that hold a state and whose user is joined.
func (s *mSim) members() []*mDevice {
	var out []*mDevice
	for _, d := range s.order {
		if md := s.devices[d]; md.m != nil && s.room.Members[d.UserID] == Join {
			if _, _, err := md.m.Base(); err == nil {
				out = append(out, md)
			}
		}
	}
	return out
}

func (s *mSim) sendApp(d *mDevice) {
	epoch, msg, err := d.m.Encrypt([]byte(fmt.Sprintf("message %d", len(s.msgs))))
	if err != nil {
		return // removed in its base, waiting for a Welcome
	}
	ev := &mEvent{app: msg, epoch: epoch, msgID: len(s.msgs), sender: d.dev, step: s.step}
	s.msgs = append(s.msgs, ev)
	s.stats.sent++
	s.send(d.dev, ev)
}

func (s *mSim) quiet() bool {
	for _, d := range s.order {
		md := s.devices[d]
		if len(md.inbox) > 0 || md.timerAt >= 0 {
			return false
		}
	}
	return s.partition == nil
}

// check verifies the conditions once the system is quiet.
func (s *mSim) check() {
	want := s.joinedDevices()
	var head ID
	var auth, treeHash []byte
	for _, d := range want {
		md := s.devices[d]
		if md.m == nil {
			s.failf("joined device %v holds no group state", d)
			continue
		}
		heads := md.m.graph.Heads()
		if len(heads) != 1 {
			s.failf("%v has %d heads", d, len(heads))
			continue
		}
		g, _ := md.m.graph.State(heads[0])
		if head == "" {
			head, auth, treeHash = heads[0], g.EpochAuthenticator(), g.TreeHash()
			if got := md.m.Devices(head); !slices.Equal(got, want) {
				s.failf("group devices %v, joined devices %v", got, want)
			}
		} else if heads[0] != head || !bytes.Equal(auth, g.EpochAuthenticator()) || !bytes.Equal(treeHash, g.TreeHash()) {
			s.failf("%v is at %v, others at %v\n%s", d, heads[0], head, s.dump(d))
		}
	}
	for _, ev := range s.msgs {
		for _, d := range want {
			md := s.devices[d]
			if d == ev.sender || md.m == nil || !slices.Contains(s.roster[ev.epoch], d) {
				continue
			}
			if _, ok := md.m.graph.State(ev.epoch); ok && !s.decrypted[d][ev.msgID] {
				s.failf("%v holds epoch %v but did not decrypt message %d", d, ev.epoch, ev.msgID)
			}
		}
	}
}

func runMSim(t testing.TB, seed uint64) (mStats, []string, int) {
	members, steps := simParams(seed)
	s := newMSim(t, seed, members)
	for s.step < steps {
		s.tick(true, steps)
	}
	for i := 0; i < mQuietLimit && !s.quiet(); i++ {
		s.tick(false, steps)
	}
	if !s.quiet() {
		s.failf("not quiet after %d steps", mQuietLimit)
	}
	s.check()
	s.stats.seeds = 1
	if len(s.fail) == 0 {
		s.stats.converged = 1
	}
	return s.stats, s.fail, members
}

func TestDMLSSimulation(t *testing.T) {
	var seeds []uint64
	if *simSeed >= 0 {
		seeds = []uint64{uint64(*simSeed)}
	} else {
		for i := range *simSeeds {
			seeds = append(seeds, uint64(i))
		}
	}
	var total mStats
	start := time.Now()
	run := func(seed uint64) {
		cryptotest.SetGlobalRandom(t, seed)
		st, fail, members := runMSim(t, seed)
		total.add(st)
		if len(fail) > 0 {
			if len(fail) > 5 {
				fail = append(fail[:5], fmt.Sprintf("... %d more", len(fail)-5))
			}
			t.Errorf("seed %d (%d members): %s\nreplay: go test ./epochs -run 'TestDMLSSimulation$' -sim.seed=%d -v", seed, members, strings.Join(fail, "\n  "), seed)
		}
	}
	for _, seed := range seeds {
		run(seed)
	}
	if *simSoak > 0 && *simSeed < 0 {
		for seed := uint64(len(seeds)); time.Since(start) < *simSoak; seed++ {
			run(seed)
		}
	}
	fmt.Printf("simulation: seeds=%d converged=%d forks=%d resolved=%d max_heads=%d sent=%d decrypted=%d\n",
		total.seeds, total.converged, total.forks, total.resolved, total.maxHeads, total.sent, total.decrypted)
	t.Logf("forged adds sent %d, rejections %d; commits on dropped epochs %d; messages for dropped epochs %d; %v",
		total.rogueSent, total.rogueRejected, total.unretained, total.lost, time.Since(start).Round(time.Millisecond))
}

func (s *mSim) dump(d Device) string {
	md := s.devices[d]
	var b strings.Builder
	fmt.Fprintf(&b, "%v: heads %v\n", d, md.m.graph.Heads())
	for _, ev := range md.pending {
		if ev.commit != nil {
			_, known := md.m.graph.Node(ev.commit.Base)
			fmt.Fprintf(&b, "  pending commit %v on %v (known %v) by %v resolves %v\n", ev.commit.Epoch, ev.commit.Base, known, ev.commit.Creator, ev.commit.Resolves)
		}
	}
	for _, c := range s.commits {
		n, ok := md.m.graph.Node(c.Epoch)
		fmt.Fprintf(&b, "  commit %v (#%d) on %v by %v step %d: known %v retained %v roster-has %v\n", c.Epoch, c.Number, c.Base, c.Creator, s.epochStep[c.Epoch], ok, n.Retained, slices.Contains(s.roster[c.Epoch], d))
	}
	return b.String()
}
