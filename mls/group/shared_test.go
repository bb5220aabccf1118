package group

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/pprf"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
)

// sharedWorld is a group in which every member keeps its own state,
// processed on its own (indep), and some members are also "ours": they
// share one Public (pub), decoded separately from the independent states,
// with their Privates in privs. Every step checks that the shared states
// agree with the independent ones.
type sharedWorld struct {
	t       testing.TB
	cfg     Config
	indep   []*Group // by member; nil once removed
	bundles []*KeyPackageBundle
	pub     *Public
	ours    []int // members of ours still in the group, primary first
	privs   map[int]*Private
	msgs    int
}

func newSharedWorld(t testing.TB, cfg Config, n int, ours []int) *sharedWorld {
	t.Helper()
	w := &sharedWorld{t: t, cfg: cfg, privs: map[int]*Private{}}
	creator := newBundle(t, s1, name(0))
	a, err := Create(creator, []byte("shared group"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.bundles = []*KeyPackageBundle{creator}
	var props []*message.Proposal
	for i := 1; i < n; i++ {
		kp := newBundle(t, s1, name(i))
		w.bundles = append(w.bundles, kp)
		props = append(props, AddProposal(&kp.KeyPackage))
	}
	pc, err := a.Commit(CommitOptions{Proposals: props, ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	w.indep = []*Group{mustAdopt(t, a, pc)}
	for _, kp := range w.bundles[1:] {
		g, err := Join(pc.Welcome, kp, &JoinOptions{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		w.indep = append(w.indep, g)
	}
	w.pub = w.roundTrip(w.indep[ours[0]].Public())
	w.ours = slices.Clone(ours)
	for _, i := range ours {
		w.privs[i] = w.indep[i].Private()
	}
	return w
}

// roundTrip returns a copy of p stored in parts and decoded, so that the
// shared Public is not any independent member's.
func (w *sharedWorld) roundTrip(p *Public) *Public {
	w.t.Helper()
	static, err := p.MarshalStatic()
	if err != nil {
		w.t.Fatal(err)
	}
	init, _ := p.MarshalInitState()
	secrets, _ := p.MarshalSecretTree()
	q, err := UnmarshalPublicParts(static, init, secrets)
	if err != nil {
		w.t.Fatal(err)
	}
	return q
}

// primary is the Group that processes for all of ours: the first of ours
// with the others as others, or with view set a Group without a private
// part and all of ours as others.
func (w *sharedWorld) primary(view bool) (*Group, []*Private) {
	var others []*Private
	for _, i := range w.ours {
		others = append(others, w.privs[i])
	}
	if view || len(others) == 0 {
		return New(w.pub, nil, w.cfg), others
	}
	return New(w.pub, others[0], w.cfg), others[1:]
}

// commit has member from (not ours) commit o, which adds the members
// of added; everyone else processes it independently, and ours once
// through HandleCommitShared.
func (w *sharedWorld) commit(from int, o CommitOptions, view bool, added ...*KeyPackageBundle) *PendingCommit {
	t := w.t
	t.Helper()
	pc, err := w.indep[from].Commit(o)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range w.indep {
		switch {
		case g == nil:
		case i == from:
			w.indep[i] = mustAdopt(t, g, pc)
		default:
			w.indep[i] = mustHandle(t, g, pc.Commit).Next
		}
	}
	for _, kp := range added {
		g, err := Join(pc.Welcome, kp, &JoinOptions{Config: w.cfg})
		if err != nil {
			t.Fatal(err)
		}
		w.indep = append(w.indep, g)
		w.bundles = append(w.bundles, kp)
	}
	if len(w.ours) == 0 {
		return pc
	}
	g, others := w.primary(view)
	msg, err := message.ParseMLSMessage(pc.Commit)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := g.HandleCommitShared(msg, others)
	if err != nil {
		t.Fatalf("shared processing of %d's commit for %v: %v", from, w.ours, err)
	}
	if _, err := g.HandleCommitShared(msg, others); tr.Public != nil && w.cfg.Scheme == keyschedule.SchemeDMLS && !errors.Is(err, pprf.ErrPunctured) {
		t.Fatalf("second shared processing: %v, want ErrPunctured", err)
	}
	w.adopt(tr, view, w.indep[from])
	return pc
}

// adopt checks a transition against the independent states and makes it
// the shared state.
func (w *sharedWorld) adopt(tr *SharedTransition, view bool, ref *Group) {
	t := w.t
	t.Helper()
	offset := 0
	if view || len(w.ours) == 0 {
		offset = 1
		if tr.Privates[0] != nil || tr.Group(0) != nil {
			t.Fatal("a view got a private part")
		}
	}
	if len(tr.Privates) != len(w.ours)+offset {
		t.Fatalf("%d privates for %d members", len(tr.Privates), len(w.ours))
	}
	var left []int
	for k, i := range w.ours {
		priv := tr.Privates[k+offset]
		if (priv == nil) != (w.indep[i] == nil) {
			t.Fatalf("member %d: shared private %v, independent state %v", i, priv != nil, w.indep[i] != nil)
		}
		if priv == nil {
			delete(w.privs, i)
			continue
		}
		got, _ := priv.MarshalBinary()
		want, _ := w.indep[i].Private().MarshalBinary()
		if !bytes.Equal(got, want) {
			t.Fatalf("member %d: shared private part differs from the independent one", i)
		}
		if g := tr.Group(k + offset); g == nil || g.LeafIndex() != uint32(priv.Leaf()) || g.Public() != tr.Public {
			t.Fatalf("member %d: Group of the transition", i)
		}
		w.privs[i] = priv
		left = append(left, i)
	}
	w.ours = left
	if len(left) == 0 {
		if tr.Public != nil {
			t.Fatal("a Public for nobody")
		}
		w.pub = nil
		return
	}
	if !bytes.Equal(tr.Public.EpochAuthenticator(), ref.EpochAuthenticator()) || !bytes.Equal(tr.Public.TreeHash(), ref.TreeHash()) {
		t.Fatal("shared Public disagrees with the committer")
	}
	w.pub = tr.Public
	w.messages()
}

// messages: a member not of ours sends, ours read it through the shared
// Public; each of ours sends and an independent member reads it.
func (w *sharedWorld) messages() {
	t := w.t
	t.Helper()
	var stranger int
	for i, g := range w.indep {
		if g != nil && !slices.Contains(w.ours, i) {
			stranger = i
			break
		}
	}
	text := fmt.Sprintf("message %d", w.msgs)
	w.msgs++
	ct, err := w.indep[stranger].Protect([]byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(w.pub, nil, w.cfg).Handle(ct)
	if err != nil || string(r.ApplicationData) != text {
		t.Fatalf("shared Public reads %q: %v", r.ApplicationData, err)
	}
	for _, i := range w.ours {
		ct, err := New(w.pub, w.privs[i], w.cfg).Protect([]byte(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		r := mustHandle(t, w.indep[stranger], ct)
		if string(r.ApplicationData) != text || r.Sender.LeafIndex != uint32(w.privs[i].Leaf()) {
			t.Fatalf("member %d's message read as %q from %d", i, r.ApplicationData, r.Sender.LeafIndex)
		}
	}
}

// A commit processed once for 1, 2 and 4 members of ours sharing one
// Public gives the same epoch and the same private keys as each member
// processing it on its own: updates, an add, the removal of one of ours,
// the removal of the member whose Group processes (the others go on), and
// a view without a private part processing for all.
func TestHandleCommitShared(t *testing.T) {
	for _, scheme := range []keyschedule.InitScheme{keyschedule.SchemeDMLS, keyschedule.SchemeRFC9420} {
		for _, ours := range [][]int{{1}, {1, 4}, {1, 3, 4, 6}} {
			t.Run(fmt.Sprintf("%v/ours=%d", scheme, len(ours)), func(t *testing.T) {
				w := newSharedWorld(t, Config{Scheme: scheme}, 8, ours)
				w.commit(0, CommitOptions{ForcePath: true}, false)
				joiner := newBundle(t, s1, "joiner")
				w.commit(2, CommitOptions{Proposals: []*message.Proposal{AddProposal(&joiner.KeyPackage)}, ForcePath: true}, false, joiner)
				if last := ours[len(ours)-1]; len(ours) > 1 {
					w.commit(0, CommitOptions{Proposals: []*message.Proposal{RemoveProposal(uint32(last))}}, false)
					if slices.Contains(w.ours, last) {
						t.Fatal("removed member still ours")
					}
				}
				// The primary goes; the others, if any, go on.
				w.commit(8, CommitOptions{Proposals: []*message.Proposal{RemoveProposal(uint32(ours[0]))}}, false)
				if len(ours) == 1 {
					if w.pub != nil {
						t.Fatal("a Public after every member of ours left")
					}
					return
				}
				w.commit(7, CommitOptions{ForcePath: true}, true)
				w.commit(2, CommitOptions{ForcePath: true}, false)
			})
		}
	}
}

// Refusals leave the shared state usable: a commit whose proposal by
// reference was not received, and one that a member of ours cannot
// decrypt its path secret of, are refused before the key schedule runs,
// so the same commit goes through afterwards. Members that are not of
// this epoch, or given twice, are refused at once.
func TestHandleCommitSharedRefusals(t *testing.T) {
	cfg := Config{Scheme: keyschedule.SchemeDMLS}
	w := newSharedWorld(t, cfg, 6, []int{2, 3, 5})
	// Member 4's path gives member 5 the key of node 11 (above leaves
	// 4 to 7), to which member 0's next path encrypts for that half.
	w.commit(4, CommitOptions{}, false)

	// Member 1 proposes to leave; only member 0 sees it and commits it
	// by reference.
	prop, _, err := w.indep[1].Propose(RemoveProposal(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustHandle(t, w.indep[0], prop)
	pc, err := w.indep[0].Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := message.ParseMLSMessage(pc.Commit)
	g, others := w.primary(false)
	if _, err := g.HandleCommitShared(msg, others); !errors.Is(err, ErrUnknownProposalRef) {
		t.Fatalf("unknown proposal reference: %v", err)
	}

	// A member of ours whose private part lacks the node keys it learned
	// from its Welcome holds no key of member 0's copath resolution.
	stripped := NewPrivate(w.privs[5].Leaf(), w.bundles[5].SignatureKey, treekem.NewPrivateState(w.privs[5].Leaf(), w.bundles[5].EncryptionKey))
	mustHandle(t, g, prop)
	if _, err := g.HandleCommitShared(msg, []*Private{others[0], stripped}); !errors.Is(err, ErrInvalidPath) {
		t.Fatalf("undecryptable path: %v", err)
	}
	for name, bad := range map[string][]*Private{
		"twice":         {others[0], others[0]},
		"the receiver":  {w.privs[2]},
		"another epoch": {w.indep[0].Private()},
		"nil":           {nil},
	} {
		if _, err := g.HandleCommitShared(msg, bad); err == nil {
			t.Fatalf("members %s accepted", name)
		}
	}
	if _, err := g.HandleCommitShared(msg, others); err != nil {
		t.Fatalf("the commit after refusals: %v", err)
	}
	// Our own commit is not processed.
	own, err := g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ownMsg, _ := message.ParseMLSMessage(own.Commit)
	if _, err := New(w.pub, others[0], cfg).HandleCommitShared(ownMsg, []*Private{w.privs[2]}); !errors.Is(err, ErrOwnCommit) {
		t.Fatalf("own commit: %v", err)
	}
	// An application message is not a commit.
	ct, err := w.indep[4].Protect([]byte("hi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	appMsg, _ := message.ParseMLSMessage(ct)
	if _, err := New(w.pub, nil, cfg).HandleCommitShared(appMsg, others); !errors.Is(err, ErrMalformed) {
		t.Fatalf("application message: %v", err)
	}
}

// Our own commit gives our other members' next private parts from the
// path secrets it generated, equal to what they derive by processing the
// commit themselves; a member of ours that the commit removes gets none.
func TestCommitOthers(t *testing.T) {
	cfg := Config{Scheme: keyschedule.SchemeDMLS}
	w := newSharedWorld(t, cfg, 7, []int{1, 3, 4, 6})
	g, others := w.primary(false)
	joiner := newBundle(t, s1, "joiner")
	pc, err := g.Commit(CommitOptions{Others: others, Proposals: []*message.Proposal{RemoveProposal(4), AddProposal(&joiner.KeyPackage)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.Others) != 3 || pc.Others[1] != nil {
		t.Fatalf("others after the commit: %v", pc.Others)
	}
	next := mustAdopt(t, g, pc)
	for k, i := range []int{3, 4, 6} {
		r := mustHandle(t, w.indep[i], pc.Commit)
		if i == 4 {
			if !r.Removed {
				t.Fatal("member 4 not removed")
			}
			continue
		}
		got, _ := pc.Others[k].MarshalBinary()
		want, _ := r.Next.Private().MarshalBinary()
		if !bytes.Equal(got, want) {
			t.Fatalf("member %d: private part from our commit differs from processing it", i)
		}
		if err := pc.Others[k].path.Check(next.Public().Tree()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Next.EpochAuthenticator(), next.EpochAuthenticator()) {
			t.Fatal("epochs differ")
		}
	}
	// Members that are not of the epoch are refused before anything is
	// consumed.
	if _, err := g.Commit(CommitOptions{Others: []*Private{w.indep[0].Private(), nil}}); err == nil {
		t.Fatal("a nil member accepted")
	}
}

// Our own commit gives the members it adds that are ours their private
// parts in the new epoch from the path secrets it generated, both in a
// commit with a path (DMLS: always) and in an RFC 9420 commit that only
// adds, which has none. The Welcome is for the others only (none at all
// when every added member is ours). The joiners' parts are those of the
// new epoch's tree (CheckPrivate), they read what the member that joined
// by the Welcome sends, and they process its commit, whose path is
// encrypted to the keys they derived. A bundle the commit does not add,
// or given twice, is refused before anything is consumed.
func TestCommitJoiners(t *testing.T) {
	for _, tt := range []struct {
		name   string
		scheme keyschedule.InitScheme
	}{{"dmls", keyschedule.SchemeDMLS}, {"rfc9420 adds only", keyschedule.SchemeRFC9420}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Scheme: tt.scheme}
			w := newSharedWorld(t, cfg, 7, []int{1, 3})
			g, others := w.primary(false)
			a, b, c := newBundle(t, s1, "joiner-a"), newBundle(t, s1, "joiner-b"), newBundle(t, s1, "remote-c")
			props := []*message.Proposal{AddProposal(&a.KeyPackage), AddProposal(&b.KeyPackage), AddProposal(&c.KeyPackage)}
			for name, bad := range map[string][]*KeyPackageBundle{
				"not added": {newBundle(t, s1, "stranger")},
				"twice":     {a, a},
				"nil":       {nil},
			} {
				if _, err := g.Commit(CommitOptions{Proposals: props, Others: others, Joiners: bad}); err == nil {
					t.Fatalf("joiners %s accepted", name)
				}
			}
			ours, err := g.Commit(CommitOptions{Proposals: props[:2], Others: others, Joiners: []*KeyPackageBundle{b, a}})
			if err != nil {
				t.Fatal(err)
			}
			if ours.Welcome != nil || ours.GroupInfo != nil || len(ours.Joiners) != 2 {
				t.Fatalf("adding only members of ours: Welcome %d bytes, GroupInfo %v, %d joiners", len(ours.Welcome),
					ours.GroupInfo != nil, len(ours.Joiners))
			}
			pc, err := g.Commit(CommitOptions{Proposals: props, Others: others, Joiners: []*KeyPackageBundle{b, a}})
			if err != nil {
				t.Fatal(err)
			}
			if hasPath := mustCommitPath(t, pc.Commit); hasPath != (tt.scheme == keyschedule.SchemeDMLS) {
				t.Fatalf("commit has a path: %v", hasPath)
			}
			if len(pc.Joiners) != 2 {
				t.Fatalf("%d joiners' private parts, want 2", len(pc.Joiners))
			}
			wm, err := message.ParseMLSMessage(pc.Welcome)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(wm.Welcome.Secrets); n != 1 || !bytes.Equal(wm.Welcome.Secrets[0].NewMember, c.KeyPackage.Ref(c.SignatureKey.Suite())) {
				t.Fatalf("the Welcome holds %d members' secrets, want only the remote one's", n)
			}
			for _, kp := range []*KeyPackageBundle{a, b} {
				if _, err := Join(pc.Welcome, kp, &JoinOptions{Config: cfg}); !errors.Is(err, ErrNotForUs) {
					t.Fatalf("a joiner of ours opened the Welcome: %v", err)
				}
			}
			next := mustAdopt(t, g, pc)
			remote, err := Join(pc.Welcome, c, &JoinOptions{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			update, err := remote.Commit(CommitOptions{ForcePath: true})
			if err != nil {
				t.Fatal(err)
			}
			for k, priv := range pc.Joiners {
				if err := next.Public().CheckPrivate(priv); err != nil {
					t.Fatal(err)
				}
				// Our members share the epoch's Public and its secret
				// tree: a message each, as a generation is read once.
				hello, err := remote.Protect([]byte("hello"), nil)
				if err != nil {
					t.Fatal(err)
				}
				joiner := New(next.Public(), priv, cfg)
				if r := mustHandle(t, joiner, hello); string(r.ApplicationData) != "hello" {
					t.Fatalf("joiner %d read %q", k, r.ApplicationData)
				}
			}
			// The remote member's commit, processed once for both (its
			// path secrets encrypted to the keys they derived).
			msg, err := message.ParseMLSMessage(update.Commit)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := New(next.Public(), pc.Joiners[0], cfg).HandleCommitShared(msg, pc.Joiners[1:])
			if err != nil {
				t.Fatal(err)
			}
			for k, priv := range tr.Privates {
				if err := tr.Public.CheckPrivate(priv); err != nil {
					t.Fatalf("joiner %d after the remote member's commit: %v", k, err)
				}
			}
		})
	}
}

// JoinPrivate derives the same private part as a full Join, from the
// Public of the epoch that our other members already hold, and refuses a
// Welcome for another epoch.
func TestJoinPrivate(t *testing.T) {
	cfg := Config{Scheme: keyschedule.SchemeDMLS}
	w := newSharedWorld(t, cfg, 5, []int{1, 2})
	c := newBundle(t, s1, "ours-c")
	pc, err := w.indep[3].Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&c.KeyPackage)}})
	if err != nil {
		t.Fatal(err)
	}
	next := mustAdopt(t, w.indep[3], pc)
	full, err := Join(pc.Welcome, c, &JoinOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	// Ours hold the next epoch: process the commit once for them.
	g, others := w.primary(false)
	msg, _ := message.ParseMLSMessage(pc.Commit)
	tr, err := g.HandleCommitShared(msg, others)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := JoinPrivate(tr.Public, pc.Welcome, c, &JoinOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := priv.MarshalBinary()
	want, _ := full.Private().MarshalBinary()
	if !bytes.Equal(got, want) {
		t.Fatal("JoinPrivate and Join give different private parts")
	}
	// The joined member works: it sends, the committer reads.
	ct, err := New(tr.Public, priv, cfg).Protect([]byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := mustHandle(t, next, ct); string(r.ApplicationData) != "hello" {
		t.Fatal("message of the joined member")
	}
	if _, err := JoinPrivate(w.pub, pc.Welcome, c, nil); !errors.Is(err, ErrWelcomeEpoch) {
		t.Fatalf("welcome for the next epoch into this one: %v", err)
	}
	if _, err := JoinPrivate(tr.Public, pc.Welcome, newBundle(t, s1, "stranger"), nil); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("welcome for another key package: %v", err)
	}
	if _, err := JoinPrivate(tr.Public, pc.Commit, c, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a commit as a welcome: %v", err)
	}
}

func FuzzJoinPrivate(f *testing.F) {
	cfg := Config{Scheme: keyschedule.SchemeDMLS}
	w := newSharedWorld(f, cfg, 3, []int{1})
	kp := newBundle(f, s1, "joiner")
	pc := w.commit(0, CommitOptions{Proposals: []*message.Proposal{AddProposal(&kp.KeyPackage)}}, false, kp)
	f.Add(pc.Welcome)
	f.Fuzz(func(t *testing.T, data []byte) {
		priv, err := JoinPrivate(w.pub, data, kp, &JoinOptions{Config: cfg})
		if err == nil && priv.Leaf() != 3 {
			t.Fatalf("joined at leaf %d", priv.Leaf())
		}
	})
}

// A member of ours that enters the parent epoch after the commit was
// processed for the others gets its next private part from the commit
// and the Public already made, without a key schedule, equal to
// processing it on its own.
func TestPrivatesAfter(t *testing.T) {
	cfg := Config{Scheme: keyschedule.SchemeDMLS}
	w := newSharedWorld(t, cfg, 6, []int{1, 3, 4})
	pc, err := w.indep[0].Commit(CommitOptions{Proposals: []*message.Proposal{RemoveProposal(4)}})
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := message.ParseMLSMessage(pc.Commit)
	g := New(w.pub, nil, cfg)
	tr, err := g.HandleCommitShared(msg, []*Private{w.privs[1]})
	if err != nil {
		t.Fatal(err)
	}
	init, _ := w.pub.Changes()
	late, err := g.PrivatesAfter(msg, tr.Public, []*Private{w.privs[3], w.privs[4]})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := w.pub.Changes(); after != init {
		t.Fatal("PrivatesAfter ran the key schedule")
	}
	if late[1] != nil {
		t.Fatal("a removed member got a private part")
	}
	want, _ := mustHandle(t, w.indep[3], pc.Commit).Next.Private().MarshalBinary()
	if got, _ := late[0].MarshalBinary(); !bytes.Equal(got, want) {
		t.Fatal("late private part differs from processing the commit")
	}
	if err := tr.Public.CheckPrivate(late[0]); err != nil {
		t.Fatal(err)
	}
	// Another epoch is refused: the parent, and a sibling.
	if _, err := g.PrivatesAfter(msg, w.pub, []*Private{w.privs[3]}); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("the parent as next: %v", err)
	}
	other, err := w.indep[2].Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherMsg, _ := message.ParseMLSMessage(other.Commit)
	if _, err := g.PrivatesAfter(otherMsg, tr.Public, []*Private{w.privs[3]}); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("a sibling's commit: %v", err)
	}
}

// mustCommitPath reports whether an encoded commit message carries an
// UpdatePath.
func mustCommitPath(t *testing.T, commit []byte) bool {
	t.Helper()
	msg, err := message.ParseMLSMessage(commit)
	if err != nil {
		t.Fatal(err)
	}
	var c *message.Commit
	switch {
	case msg.PublicMessage != nil:
		c = msg.PublicMessage.Content.Commit
	default:
		t.Fatal("not a public message")
	}
	return c.Path != nil
}
