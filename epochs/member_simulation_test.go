package epochs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
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
// Member: a room whose membership changes (joins, invitations accepted or
// declined, leaves, kicks, devices added), a network that delivers every
// event to every member in random order with delays, duplicates and
// partitions that heal, devices that commit (the committer rule, random
// updates, resolutions) and send application messages, and a few forged
// commits that add a device of a user outside the room. After the last
// partition heals and the system is quiet it checks the issue's
// conditions.
//
// A member is a service: one Member holding one or more devices, which
// receives each room event once. In odd seeds some devices, of any users,
// share a service with one or two others (as an application service's
// puppets do); in even seeds every device is its own service.
//
// Everything follows from the seed, the MLS key material included
// (testing/cryptotest), so that a seed replays exactly: the schedule uses
// only the seeded generators and slices in creation order, and the MLS
// code runs on one thread (GOMAXPROCS 1), since its parallel HPKE
// encryptions otherwise draw randomness in whatever order the goroutines
// run.

var (
	simSeeds   = flag.Int("sim.seeds", 200, "number of simulation seeds")
	simSeed    = flag.Int64("sim.seed", -1, "run only this seed (replay)")
	simSoak    = flag.Duration("sim.soak", 0, "keep running further seeds for this long")
	simMembers = flag.Int("sim.members", 0, "override the number of initial members (3 to 50)")
	simPerSeed = flag.Bool("sim.perseed", false, "print each seed's totals")
)

// simParams derives a run's shape from its seed: mostly small rooms, one
// seed in ten with 11 to 50 members and fewer steps; odd seeds let
// devices share services.
func simParams(seed uint64) (members, steps int, shared bool) {
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
	return members, steps, seed%2 == 1
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
	// echo: the event is the service's own commit, which the homeserver
	// gives back to its sender as to everyone.
	echo bool
}

// mService is one Member and the devices it holds.
type mService struct {
	id      int
	devs    []*mDevice
	m       *Member
	inbox   []mDelivery
	pending []*mEvent
}

type mDevice struct {
	dev     Device
	sigPriv *suite.SignaturePrivateKey
	svc     *mService
	timerAt int
	jitter  *rand.Rand
}

type mStats struct {
	seeds, converged, forks, resolved, maxHeads, sent, decrypted int
	rogueSent, rogueRejected, unretained, lost, shared           int
	confirmed                                                    int
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
	s.confirmed += o.confirmed
	s.unretained += o.unretained
	s.lost += o.lost
	s.shared += o.shared
}

func (s mStats) line() string {
	return fmt.Sprintf("seeds=%d converged=%d forks=%d resolved=%d max_heads=%d sent=%d decrypted=%d",
		s.seeds, s.converged, s.forks, s.resolved, s.maxHeads, s.sent, s.decrypted)
}

type mSim struct {
	t        testing.TB
	seed     uint64
	r        *rand.Rand
	shared   bool
	step     int
	room     Room
	rooms    []Room // room after each step
	devices  map[Device]*mDevice
	order    []Device // devices in creation order, for deterministic loops
	services []*mService
	commits  []*Commit
	byEpoch  map[ID]*Commit // honest commits by the epoch they make
	// epochStep is the step of each epoch's commit event; roster its
	// devices, as its creator made it.
	epochStep map[ID]int
	roster    map[ID][]Device
	children  map[ID]int
	nextEvent int
	nextUser  int
	msgs      []*mEvent
	decrypted map[*mService]map[int]bool
	partition map[*mService]int // side; nil when healed
	healAt    int
	fail      []string
	stats     mStats
}

var simTrace = os.Getenv("SIM_TRACE")

func simNow(step int) time.Time { return t0.Add(time.Duration(step) * time.Second) }

func (s *mSim) failf(format string, args ...any) {
	s.fail = append(s.fail, fmt.Sprintf("step %d: ", s.step)+fmt.Sprintf(format, args...))
}

func (s *mSim) tracef(svc *mService, format string, args ...any) {
	if simTrace == "" {
		return
	}
	for _, d := range svc.devs {
		if d.dev.Identity() == simTrace {
			s.t.Logf("step %d service %d: "+format, append([]any{s.step, svc.id}, args...)...)
			return
		}
	}
}

// newDevice makes a device and its service: in shared seeds, a device
// that may share joins the last service if that has fewer than three
// devices, half the time.
func (s *mSim) newDevice(d Device, mayShare bool) *mDevice {
	st, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	priv, err := st.GenerateSignatureKey()
	if err != nil {
		s.t.Fatal(err)
	}
	md := &mDevice{dev: d, sigPriv: priv, timerAt: -1, jitter: rand.New(rand.NewPCG(s.seed, uint64(len(s.order))+1000))}
	if k := len(s.services); mayShare && s.shared && k > 0 && len(s.services[k-1].devs) < 3 && s.r.IntN(2) == 0 {
		md.svc = s.services[k-1]
	} else {
		md.svc = &mService{id: k}
		s.services = append(s.services, md.svc)
	}
	md.svc.devs = append(md.svc.devs, md)
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

// reads reports whether a device's user is in the room (joined or
// invited) with the device listed: the group must hold it, and it reads
// the room's events.
func (s *mSim) reads(d Device) bool {
	st := s.room.Members[d.UserID]
	return (st == Join || st == Invite) && slices.Contains(s.room.Devices[d.UserID], d.DeviceID)
}

// joined reports whether a device's user is joined: only those commit
// and send.
func (s *mSim) joined(d Device) bool {
	return s.room.Members[d.UserID] == Join && slices.Contains(s.room.Devices[d.UserID], d.DeviceID)
}

// groupDevices are the devices the group must hold: those of joined and
// invited users.
func (s *mSim) groupDevices() []Device {
	var out []Device
	for _, d := range s.order {
		if s.reads(d) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, Device.Compare)
	return out
}

// svcReads reports whether any device of svc reads the room.
func (s *mSim) svcReads(svc *mService) bool {
	return slices.ContainsFunc(svc.devs, func(d *mDevice) bool { return s.reads(d.dev) })
}

func (s *mSim) addUser(devices int) string {
	user := fmt.Sprintf("@u%d:x", s.nextUser)
	s.nextUser++
	for i := range devices {
		d := Device{user, fmt.Sprintf("D%d", i+1)}
		s.newDevice(d, true)
		s.room.Devices[user] = append(s.room.Devices[user], d.DeviceID)
	}
	return user
}

func newMSim(t testing.TB, seed uint64, members int, shared bool) *mSim {
	s := &mSim{
		t: t, seed: seed, r: rand.New(rand.NewPCG(seed, 1)), shared: shared,
		room:    Room{Members: map[string]MemberState{}, Devices: map[string][]string{}},
		devices: map[Device]*mDevice{}, epochStep: map[ID]int{}, roster: map[ID][]Device{},
		children: map[ID]int{}, decrypted: map[*mService]map[int]bool{}, byEpoch: map[ID]*Commit{},
	}
	for i := range members {
		n := 1
		if i%4 == 3 {
			n = 2
		}
		s.room.Members[s.addUser(n)] = Join
	}
	creator := s.devices[s.order[0]]
	g, err := group.Create(s.bundle(creator.dev), []byte("!room:x"), nil, s.cfg())
	if err != nil {
		t.Fatal(err)
	}
	creator.svc.m, err = NewMember(creator.dev, g, "$create", mPolicy, simNow(0))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := creator.svc.m.Base()
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

// send queues ev for every service but the sender's, with delays, a
// chance of duplicates, and the partition holding cross-side events until
// it heals.
func (s *mSim) send(from Device, ev *mEvent) {
	src := s.devices[from].svc
	for _, svc := range s.services {
		if svc == src {
			if ev.commit != nil {
				svc.inbox = append(svc.inbox, mDelivery{at: s.step + 1 + s.r.IntN(mMaxDelay), ev: ev, echo: true})
			}
			continue
		}
		at := s.step + 1 + s.r.IntN(mMaxDelay)
		if s.partition != nil && s.partition[svc] != s.partition[src] {
			at = max(at, s.healAt+1+s.r.IntN(mMaxDelay))
		}
		svc.inbox = append(svc.inbox, mDelivery{at: at, ev: ev})
		if s.r.IntN(10) == 0 {
			svc.inbox = append(svc.inbox, mDelivery{at: at + 1 + s.r.IntN(2*mMaxDelay), ev: ev})
		}
	}
}

// commit makes d's next commit, if it can, and sends it; the homeserver
// returns its event id, which the service records.
func (s *mSim) commit(d *mDevice) {
	m := d.svc.m
	if m == nil || !s.joined(d.dev) {
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
	out, err := m.Commit(d.dev, s.snapshot(), kps, simNow(s.step))
	if errors.Is(err, ErrCannotCommit) {
		return
	}
	if err != nil {
		s.failf("%v commit: %v", d.dev, err)
		return
	}
	s.nextEvent++
	c := out.Commit
	c.EventID = fmt.Sprintf("$c%d", s.nextEvent)
	if err := m.SetCommitEvent(c.Epoch, c.EventID); err != nil {
		s.failf("%v commit event: %v", d.dev, err)
	}
	s.epochStep[c.Epoch] = s.step
	s.roster[c.Epoch] = m.Devices(c.Epoch)
	s.children[c.Base]++
	if s.children[c.Base] == 2 {
		s.stats.forks++
	}
	if len(c.Resolves) > 0 {
		s.stats.resolved++
	}
	s.commits = append(s.commits, &c)
	s.byEpoch[c.Epoch] = &c
	ev := &mEvent{commit: &c, welcome: out.Welcome, bundles: bundles, step: s.step}
	// Devices of the committing service that the commit adds join from
	// the Welcome it made; the others receive the event.
	var joiners []*mDevice
	for _, x := range d.svc.devs {
		if bundles[x.dev] != nil && s.reads(x.dev) {
			joiners = append(joiners, x)
		}
	}
	if s.join(d.svc, joiners, ev) {
		s.retry(d.svc)
	}
	s.send(d.dev, ev)
	d.timerAt = -1
	s.after(d)
}

// rogue has d forge a commit adding a device of a user outside the room.
func (s *mSim) rogue(d *mDevice) {
	if d.svc.m == nil {
		return
	}
	evil := Device{"@evil:x", "E"}
	if s.devices[evil] == nil {
		s.newDevice(evil, false)
	}
	out, err := d.svc.m.CommitProposals(d.dev, []*message.Proposal{group.AddProposal(&s.bundle(evil).KeyPackage)})
	if err != nil {
		return
	}
	s.nextEvent++
	out.Commit.EventID = fmt.Sprintf("$c%d", s.nextEvent)
	s.stats.rogueSent++
	s.send(d.dev, &mEvent{commit: &out.Commit, rogue: true, step: s.step})
}

// need says whether d's view calls for a commit: the room differs from
// the base, or there is a fork.
func (s *mSim) need(d *mDevice) bool {
	m := d.svc.m
	if m == nil || !s.joined(d.dev) {
		return false
	}
	rc, err := m.graph.NextCommit(s.room)
	if err != nil {
		return false
	}
	if n := len(m.graph.Heads()); n > s.stats.maxHeads {
		s.stats.maxHeads = n
	}
	return !rc.Plan.Empty() || len(rc.Resolves) > 0
}

// after applies the committer rule once d's view changed: the wait
// counts from the latest change seen, so that waiting devices stay quiet
// while commits are still arriving (package doc, "Committer").
func (s *mSim) after(d *mDevice) {
	if !s.need(d) {
		d.timerAt = -1
		return
	}
	joined, err := d.svc.m.Joined(s.room)
	if err != nil {
		return
	}
	dec := DecideCommitter(CommitterInput{
		Joined: joined, Self: d.dev, Seen: simNow(s.step),
		Grace: mGrace, MaxJitter: mJitter, Jitter: d.jitter, Rounds: d.svc.m.Graph().ResolvingRun(),
	})
	switch dec.Action {
	case CommitNow:
		d.timerAt = s.step
	case CommitLater:
		d.timerAt = s.step + int((dec.Delay+time.Second-1)/time.Second)
	}
}

// afterAll applies the committer rule for every device of svc.
func (s *mSim) afterAll(svc *mService) {
	for _, d := range svc.devs {
		s.after(d)
	}
}

func (s *mSim) deliver(svc *mService, ev *mEvent) {
	if ev.commit != nil {
		s.deliverCommit(svc, ev)
	} else {
		s.deliverApp(svc, ev)
	}
}

// deliverCommit gives a commit event to a service: its devices that the
// commit added join from the Welcome, and the service applies the commit
// for its devices in the base, in either order.
func (s *mSim) deliverCommit(svc *mService, ev *mEvent) {
	c := ev.commit
	var joiners []*mDevice
	for _, d := range svc.devs {
		if ev.bundles[d.dev] != nil && s.reads(d.dev) {
			joiners = append(joiners, d)
		}
	}
	if svc.m == nil && len(joiners) > 0 {
		svc.m = NewJoinedMember(s.cfg(), mPolicy)
	}
	if svc.m == nil {
		// A service whose Welcome has not arrived keeps the room's
		// events, as a Matrix client keeps its timeline.
		if s.svcReads(svc) {
			svc.pending = append(svc.pending, ev)
		}
		return
	}
	progress := false
	joinFirst := s.r.IntN(2) == 0
	if joinFirst {
		progress = s.join(svc, joiners, ev)
	}
	_, err := svc.m.Apply(*c, s.rooms[ev.step], s.rooms[s.epochStep[c.Base]], simNow(s.step))
	s.tracef(svc, "apply %v on %v by %v: %v", c.Epoch, c.Base, c.Creator, err)
	switch {
	case err == nil:
		if ev.rogue {
			s.failf("service %d accepted an unauthorised add", svc.id)
		}
		progress = true
	case errors.Is(err, ErrUnknownEpoch):
		svc.pending = append(svc.pending, ev)
	case errors.Is(err, ErrDuplicateCommit), errors.Is(err, ErrRemoved):
	case errors.Is(err, ErrParentNotRetained):
		s.stats.unretained++
	case ev.rogue && errors.Is(err, ErrUnauthorisedAdd):
		s.stats.rogueRejected++
	default:
		s.failf("service %d rejected %v's commit on %v: %v", svc.id, c.Creator, c.Base, err)
	}
	if !joinFirst {
		progress = s.join(svc, joiners, ev) || progress
	}
	if progress {
		s.retry(svc)
		s.afterAll(svc)
	}
}

// deliverEcho gives a service its own commit back. The simulation makes
// no commit that the room refuses (a forged add is not adopted by its
// maker), so groups' check of the echo accepts it and confirms it
// (Member.Confirm); its base may have gone meanwhile (then the echo is a
// commit on a dropped epoch, and nothing to confirm).
func (s *mSim) deliverEcho(svc *mService, ev *mEvent) {
	c := ev.commit
	if svc.m == nil {
		return // its devices have all left the group since
	}
	_, err := svc.m.Apply(*c, s.rooms[ev.step], s.rooms[s.epochStep[c.Base]], simNow(s.step))
	s.tracef(svc, "echo %v on %v by %v: %v", c.Epoch, c.Base, c.Creator, err)
	if errors.Is(err, ErrDuplicateCommit) && svc.m.Confirm(c.Epoch) {
		s.stats.confirmed++
	}
}

// join has each of joiners join from ev's Welcome, then fetches the
// history its graph lacks.
func (s *mSim) join(svc *mService, joiners []*mDevice, ev *mEvent) bool {
	progress := false
	for _, d := range joiners {
		_, err := svc.m.Join(d.dev, ev.welcome, ev.bundles[d.dev], *ev.commit, simNow(s.step))
		s.tracef(svc, "%v joins %v on %v: %v", d.dev, ev.commit.Epoch, ev.commit.Base, err)
		switch {
		case err == nil:
			progress = true
		case !errors.Is(err, ErrDuplicateCommit):
			s.failf("%v join at %v: %v", d.dev, ev.commit.Epoch, err)
		}
	}
	if progress {
		s.backfill(svc)
	}
	return progress
}

// backfill has svc fetch the commits its graph's history lacks, as a
// member follows commit_event links back through the room (DESIGN §5),
// until its retained epochs' histories meet.
func (s *mSim) backfill(svc *mService) {
	for {
		missing := svc.m.Graph().MissingHistory()
		learned := false
		for _, id := range missing {
			if c := s.byEpoch[id]; c != nil {
				svc.m.Observe(*c)
				_, ok := svc.m.Graph().Node(id)
				learned = learned || ok
			}
		}
		if !learned {
			return
		}
	}
}

func (s *mSim) deliverApp(svc *mService, ev *mEvent) {
	if svc.m == nil {
		if s.svcReads(svc) {
			svc.pending = append(svc.pending, ev)
		}
		return
	}
	pt, from, err := svc.m.Decrypt(ev.epoch, ev.app)
	switch {
	case err == nil:
		if !bytes.Equal(pt, fmt.Appendf(nil, "message %d", ev.msgID)) || from != ev.sender {
			s.failf("service %d decrypted message %d wrongly", svc.id, ev.msgID)
		}
		if !slices.ContainsFunc(svc.devs, func(d *mDevice) bool { return slices.Contains(s.roster[ev.epoch], d.dev) }) {
			s.failf("service %d decrypted message %d of an epoch none of its devices was in", svc.id, ev.msgID)
		}
		if s.decrypted[svc] == nil {
			s.decrypted[svc] = map[int]bool{}
		}
		if !s.decrypted[svc][ev.msgID] {
			s.decrypted[svc][ev.msgID] = true
			s.stats.decrypted++
		}
	case errors.Is(err, ErrUnknownEpoch):
		svc.pending = append(svc.pending, ev)
	case errors.Is(err, ErrParentNotRetained), errors.Is(err, ErrNotHeld):
		s.stats.lost++
	default:
		if !s.decrypted[svc][ev.msgID] { // a duplicate fails on its generation
			s.failf("service %d cannot decrypt message %d in %v: %v", svc.id, ev.msgID, ev.epoch, err)
		}
	}
}

// retry re-delivers what waited for an epoch, until nothing moves.
func (s *mSim) retry(svc *mService) {
	for {
		waiting := svc.pending
		svc.pending = nil
		for _, ev := range waiting {
			s.deliver(svc, ev)
			if svc.m == nil {
				return
			}
		}
		if len(svc.pending) == len(waiting) {
			return
		}
	}
}

// leave takes a user's devices out of their services: a service keeps
// its Member while another of its devices reads the room.
func (s *mSim) leave(user string) {
	s.room.Members[user] = Leave
	for _, d := range s.order {
		svc := s.devices[d].svc
		if d.UserID != user || svc.m == nil {
			continue
		}
		if _, err := svc.m.RemoveDevice(d); err != nil {
			s.failf("remove %v: %v", d, err)
		}
		if !s.svcReads(svc) {
			svc.m.Destroy()
			svc.m, svc.pending = nil, nil
		}
	}
}

// changeMembership: a join (new user), a leave or kick, a new device, or
// an invitation (to a new user, or an invited user accepts or declines).
func (s *mSim) changeMembership() {
	var joined, invited []string
	for _, d := range s.order {
		switch u := d.UserID; s.room.Members[u] {
		case Join:
			if !slices.Contains(joined, u) {
				joined = append(joined, u)
			}
		case Invite:
			if !slices.Contains(invited, u) {
				invited = append(invited, u)
			}
		}
	}
	switch k := s.r.IntN(4); {
	case k == 0 || len(joined) < 3:
		s.room.Members[s.addUser(1+s.r.IntN(2))] = Join
	case k == 1:
		s.leave(joined[s.r.IntN(len(joined))])
	case k == 2:
		user := joined[s.r.IntN(len(joined))]
		d := Device{user, fmt.Sprintf("D%d", len(s.room.Devices[user])+1)}
		s.newDevice(d, true)
		s.room.Devices[user] = append(s.room.Devices[user], d.DeviceID)
	case len(invited) > 0 && s.r.IntN(2) == 0:
		user := invited[s.r.IntN(len(invited))]
		if s.r.IntN(4) == 0 {
			s.leave(user)
		} else {
			s.room.Members[user] = Join
		}
	default:
		s.room.Members[s.addUser(1+s.r.IntN(2))] = Invite
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
			s.partition = map[*mService]int{}
			for _, svc := range s.services {
				s.partition[svc] = s.r.IntN(2)
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
	for _, svc := range s.services {
		var later, now []mDelivery
		for _, x := range svc.inbox {
			if x.at <= s.step {
				now = append(now, x)
			} else {
				later = append(later, x)
			}
		}
		svc.inbox = later
		// Random order within a step.
		s.r.Shuffle(len(now), func(i, j int) { now[i], now[j] = now[j], now[i] })
		for _, x := range now {
			if x.echo {
				s.deliverEcho(svc, x.ev)
			} else {
				s.deliver(svc, x.ev)
			}
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
	}
	for _, svc := range s.services {
		if svc.m != nil {
			if _, err := svc.m.Retain(simNow(s.step)); err != nil {
				s.failf("service %d retain: %v", svc.id, err)
			}
		}
	}
}

// members are the joined devices that hold state in their service's base:
// those that may commit and send.
func (s *mSim) members() []*mDevice {
	var out []*mDevice
	for _, d := range s.order {
		md := s.devices[d]
		if md.svc.m == nil || !s.joined(d) {
			continue
		}
		if base, err := md.svc.m.Base(); err == nil && slices.Contains(md.svc.m.Holders(base), d) {
			out = append(out, md)
		}
	}
	return out
}

func (s *mSim) sendApp(d *mDevice) {
	epoch, msg, err := d.svc.m.Encrypt(d.dev, fmt.Appendf(nil, "message %d", len(s.msgs)))
	if err != nil {
		s.failf("%v encrypt: %v", d.dev, err)
		return
	}
	ev := &mEvent{app: msg, epoch: epoch, msgID: len(s.msgs), sender: d.dev, step: s.step}
	s.msgs = append(s.msgs, ev)
	s.stats.sent++
	s.send(d.dev, ev)
}

func (s *mSim) quiet() bool {
	for _, svc := range s.services {
		if len(svc.inbox) > 0 {
			return false
		}
	}
	for _, d := range s.order {
		if s.devices[d].timerAt >= 0 {
			return false
		}
	}
	return s.partition == nil
}

// check verifies the conditions once the system is quiet: every
// device of a joined or invited user holds the same single head, whose
// devices are exactly those, and every service that holds an epoch for
// its devices read every message sent in it by another service.
func (s *mSim) check() {
	want := s.groupDevices()
	var head ID
	var auth, treeHash []byte
	for _, d := range want {
		m := s.devices[d].svc.m
		if m == nil {
			s.failf("%v holds no group state", d)
			continue
		}
		heads := m.graph.Heads()
		if len(heads) != 1 {
			s.failf("%v has %d heads", d, len(heads))
			continue
		}
		if !slices.Contains(m.Holders(heads[0]), d) {
			s.failf("%v holds no state in its service's head\n%s", d, s.dump(d))
			continue
		}
		pub, err := m.Public(heads[0])
		if err != nil {
			s.failf("%v: %v", d, err)
			continue
		}
		if head == "" {
			head, auth, treeHash = heads[0], pub.EpochAuthenticator(), pub.TreeHash()
			if got := m.Devices(head); !slices.Equal(got, want) {
				s.failf("group devices %v, joined and invited devices %v", got, want)
			}
		} else if heads[0] != head || !bytes.Equal(auth, pub.EpochAuthenticator()) || !bytes.Equal(treeHash, pub.TreeHash()) {
			s.failf("%v is at %v, others at %v\n%s", d, heads[0], head, s.dump(d))
		}
	}
	for _, ev := range s.msgs {
		src := s.devices[ev.sender].svc
		for _, svc := range s.services {
			if svc == src || svc.m == nil || !s.svcReads(svc) || len(svc.m.Holders(ev.epoch)) == 0 {
				continue
			}
			if !s.decrypted[svc][ev.msgID] {
				s.failf("service %d holds epoch %v but did not decrypt message %d", svc.id, ev.epoch, ev.msgID)
			}
		}
	}
}

func runMSim(t testing.TB, seed uint64) (mStats, []string, int) {
	members, steps, shared := simParams(seed)
	s := newMSim(t, seed, members, shared)
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
	if shared {
		s.stats.shared = 1
	}
	return s.stats, s.fail, members
}

func TestDMLSSimulation(t *testing.T) {
	// One thread, so that the MLS code draws its randomness in a fixed
	// order (see the top of this file).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
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
		if *simPerSeed {
			fmt.Printf("seed %d: %s\n", seed, st.line())
		}
		if len(fail) > 0 {
			if len(fail) > 5 {
				fail = append(fail[:5], fmt.Sprintf("... %d more", len(fail)-5))
			}
			t.Errorf("seed %d (%d members): %s\nreplay: go test ./epochs -run 'TestDMLSSimulation$' -count=1 -sim.seed=%d -v", seed, members, strings.Join(fail, "\n  "), seed)
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
	fmt.Printf("simulation: %s\n", total.line())
	t.Logf("seeds with shared services %d; forged adds sent %d, rejections %d; own commits confirmed %d; commits on dropped epochs %d; messages for dropped epochs %d; %v",
		total.shared, total.rogueSent, total.rogueRejected, total.confirmed, total.unretained, total.lost, time.Since(start).Round(time.Millisecond))
}

func (s *mSim) dump(d Device) string {
	svc := s.devices[d].svc
	m := svc.m
	var b strings.Builder
	fmt.Fprintf(&b, "%v (service %d): heads %v\n", d, svc.id, m.graph.Heads())
	for _, ev := range svc.pending {
		if ev.commit != nil {
			_, known := m.graph.Node(ev.commit.Base)
			fmt.Fprintf(&b, "  pending commit %v on %v (known %v) by %v resolves %v\n", ev.commit.Epoch, ev.commit.Base, known, ev.commit.Creator, ev.commit.Resolves)
		}
	}
	for _, c := range s.commits {
		n, ok := m.graph.Node(c.Epoch)
		fmt.Fprintf(&b, "  commit %v (#%d) on %v by %v step %d: known %v retained %v holders %v roster-has %v\n", c.Epoch, c.Number, c.Base, c.Creator, s.epochStep[c.Epoch], ok, n.Retained, m.Holders(c.Epoch), slices.Contains(s.roster[c.Epoch], d))
	}
	return b.String()
}
