// Package epochs makes MLS work on Matrix, where events have no linear
// order and two members can commit on the same epoch (Decentralised MLS,
// DESIGN §5, MSC2883, draft-kohbrok-mls-dmls). It holds the graph of
// epochs of one room as our devices know it, chooses where the next commit
// goes, says which commits the room's membership forbids, who should
// commit and when, and which old epochs may be forgotten.
//
// It has no Matrix client and no database. Graph[S] holds the rules over
// any per-epoch state S: its inputs are epochs (identity, parent,
// confirmation tag, members, the caller's state), room membership at given
// points, and the caller's clock; its outputs are heads, bases, plans for
// commits, and rejections. Member binds those rules to real MLS states
// (mls/group with keyschedule.SchemeDMLS) for all of our devices in one
// room (see "Our devices" below): it applies a commit on any retained
// epoch, decrypts in any retained epoch, makes the next commit per
// NextCommit, joins from Welcomes, and zeroes dropped epochs. It is stored
// in parts and loaded lazily (see "Storage").
// The rules below are the protocol: every member of a room must apply them
// identically, so they are stated here precisely enough to reimplement.
//
// # Epoch identity
//
// An epoch is identified by dmls_epoch = DeriveSecret(epoch_secret,
// "epoch") (KDF.Nh bytes; unique across forks, unlike the epoch number).
// Events also carry MSC2883's names: the epoch number, epoch_creator
// ([user id, device id] of the device whose commit made the epoch) and
// commit_event (that commit's event id; the m.room.create event for the
// first epoch). In `resolves`, MSC2883 names an epoch
// [epoch number, [user id, device id]]; that is ambiguous when one device
// committed twice on one epoch, so commits also carry dmls_resolves, the
// dmls_epoch values of the same heads in the same order, and receivers use
// those when present.
//
// # Graph and heads
//
// Each epoch records its parent (the epoch its creating commit was made
// on), its creator, the confirmation tag of its creating commit, the
// group's devices in it, and the heads its creating commit resolves. A
// commit can be applied on any retained epoch, not only the newest, and an
// application message can be decrypted in any retained epoch. A head is a
// retained epoch that has no child and that no known commit names in
// dmls_resolves (a resolution may name an epoch before it arrives; the
// epoch then arrives already resolved). More than one head is a fork. If
// hostile commits resolved every childless epoch, the childless epochs are
// the heads.
//
// # Base selection
//
// Epochs are totally ordered as bases; the base is the greatest head:
//
//  1. The higher epoch number wins.
//  2. Between equal numbers, follow both epochs' parent links back to the
//     last common ancestor; the branch whose first commit after it (the
//     "first differing commit") has the lexicographically higher
//     confirmation tag wins (the IETF draft's rule). Tags are compared as
//     unsigned byte strings.
//  3. If those two commits have equal tags, which distinct commits cannot
//     have in practice, the one with the higher dmls_epoch (as bytes) wins.
//
// Equivalently: compare the chains of commits from the oldest common
// ancestor lexicographically, each commit keyed by (confirmation tag,
// dmls_epoch). This is a total order, so three-way and nested forks have
// one answer whatever order the member learned the epochs in. A member
// whose known histories of two epochs never meet (it joined late or
// dropped too much) compares their oldest known epochs the same way; it
// should first fetch the missing commits by following commit_event links.
//
// # Resolving commits
//
// A member that commits while there are several heads makes a resolving
// commit: on the base, naming every other head in resolves and
// dmls_resolves (in base order, best first), removing every device whose
// user is neither joined nor invited (and devices that their user's
// device list no longer holds), and adding every device of a joined or
// invited user that the base lacks, from KeyPackages the caller claimed (a
// device without a KeyPackage is left for a later commit). Every commit
// plans its membership this way (PlanMembership): the group's devices are
// the listed devices of the room's joined and invited users. (Earlier,
// invited users' devices were kept but not added until their users
// joined.) Every commit in a DMLS
// room, and so every resolving commit, carries an update path (see
// mls/pprf for why). Applying a commit that names heads retires them. A
// member whose own update was lost in a losing branch sends a fresh
// update soon after. NextCommit computes the base, the heads to name and
// the membership plan.
//
// # Commit events and joining
//
// A commit travels as an MLS PublicMessage (so that anyone can read its
// confirmation tag) with these event fields: dmls_epoch of its base, the
// dmls_epoch and number of the epoch it creates, epoch_creator,
// commit_event (of its base: the link a member that lacks the base
// follows back) and resolves/dmls_resolves. The committer also puts
// dmls_resolves in the commit's authenticated_data
// (struct { uint8 version = 1; opaque dmls_epoch<V><V>; }), so that the
// signature covers it; receivers use the signed list and reject an event
// that says otherwise. A receiver that processes the commit checks the
// claimed dmls_epoch, number and creator against the result.
//
// An epoch's own commit_event is known only once its commit's event was
// sent: the committer records it then (Member.SetCommitEvent), and
// nothing that must name it is sent before (DESIGN §3's outbox
// dependencies). No rule depends on commit events: base selection,
// heads, resolutions, planning, the committer rule and retention use
// epoch numbers, dmls_epoch values, confirmation tags, creators and the
// caller's clock; the membership authority uses the room states that
// the caller looked up at those events.
//
// A member that joins by Welcome holds only the epoch it was added to; to
// order that epoch against other branches as the older members do, it
// learns the history from the commit events themselves (it reads the room
// timeline, backfilling along commit_event links): each event names its
// base and its new epoch and carries the confirmation tag, so the joiner
// records the chain from its epoch back as metadata (Member.Observe,
// Graph.Learn). Graph.MissingHistory names the epochs whose commits it
// still needs: those that would connect the histories of its retained
// epochs. The Welcome carries no history. A learned epoch's claimed
// dmls_epoch cannot be checked by the joiner; a lie only changes the
// joiner's order of branches, never what it accepts. We chose this over
// putting history in the GroupInfo because the commits are public in the
// room anyway and a GroupInfo extension would need every client to
// understand it.
//
// Under SchemeDMLS an epoch can derive each child once (its PRF is
// punctured), so a member never processes a commit twice: it remembers
// the hash of every commit it made, applied or rejected while that
// commit's base is retained, adopts its own commits when it makes them
// and skips their echo (ErrDuplicateCommit). A commit whose base this
// member dropped cannot be processed (ErrParentNotRetained); heads are
// never dropped and superseded epochs are kept for MaxAge, so this only
// happens to commits made on an epoch that was superseded longer ago than
// MaxAge (a partition longer than that), and such a member then depends
// on the others' resolution. A commit on an epoch the member does not
// hold, or knows only as history, waits for it (ErrUnknownEpoch; the
// caller bounds the wait), unless that epoch is unknown and older than
// every retained epoch (ErrParentNotRetained: dropped and forgotten). A
// commit that removes all of our devices is recorded as metadata only
// (ErrRemoved).
//
// # Our devices
//
// An application service has many devices in a room (its puppets'), and
// processes each room event once for all of them (DESIGN §4). A Member
// holds, in each retained epoch, one shared group state (*group.Public)
// and the private state (*group.Private) of each of our devices in that
// epoch, its holders:
//
//   - Apply processes a commit once for all holders of its base
//     (group.Group.HandleCommitShared: one verification and key schedule,
//     one HPKE decryption per device); the new epoch's holders are those
//     the commit kept.
//   - Commit is made by one holder of the base; our other holders enter
//     the new epoch from the path secrets it generated, without
//     processing it (CommitOptions.Others).
//   - Join enters one device by Welcome: into an epoch we hold, only the
//     device's private state is derived (group.JoinPrivate); otherwise
//     the epoch is joined in full.
//   - Whatever order commits and Welcomes arrive in, each holder of an
//     epoch follows into every retained child whose commit kept it:
//     when a device enters an epoch (by Welcome, or because the epoch's
//     own commit arrives after a child was joined), it enters the
//     children from their commits, which the Member keeps with each
//     epoch (group.Group.PrivatesAfter: no key schedule, so the parent's
//     PRF is not used twice).
//   - Decrypt reads a message once, advancing the epoch's secret tree,
//     for all holders; Encrypt sends as one holder.
//   - RemoveDevice drops a device that left the room from every epoch;
//     an epoch left without holders is dropped, unless it is a head.
//
// Each device still follows the committer rule on its own, but sees the
// Member's single graph; a Member with one device is a member as the
// protocol describes it.
//
// # Storage
//
// A Member is stored in parts so that an event writes in proportion to
// what it changed (DESIGN §5). Flush returns what changed since the last
// Flush; LoadMember decodes the metadata and loads an epoch's parts on
// first use of its state:
//
//	part                           written                         size
//	metadata (graph, holders,      on a graph change: a new        O(1) per epoch (member
//	  policy, commit hashes,         epoch, a drop, a commit         lists as changes from
//	  observed commits)              seen, a commit event            the parent's), plus one
//	                                                                 full member list, O(n)
//	per epoch: static part         once, with the epoch            the ratchet tree: O(n)
//	per epoch: init state          the epoch's PRF punctured       ~17 KiB per child derived
//	                                 (a commit on it processed
//	                                 or made)
//	per epoch: secret tree         a message sent or read in it    O(log n) per sender used
//	per epoch: commit              once, with the epoch; cleared   the commit message
//	                                 when the parent goes
//	                                 (Changes.CommitsUnneeded)
//	per (epoch, device): private   once, when the device enters    O(log n) keys
//
// Decrypting changes only the secret tree of the message's epoch, and
// reads no private state: an epoch's private states are decoded and
// checked against its tree on the first operation that needs a key of
// ours (a commit made or processed, a message sent, a join), so a message
// does not pay for deriving every path public key. Retention deletes
// whole epochs (Changes.Dropped).
//
// # Membership authority
//
// The room's m.room.member state is the authority over the group. Let
// atCommit be the room state at the commit's event and atBase the room
// state at its base epoch's commit_event; a user is in the room if joined
// or invited. A commit is rejected, and not applied, if:
//
//   - it adds a device whose user is not in the room in atCommit
//     (ErrUnauthorisedAdd); or
//   - the group after it holds a device whose user is not in the room in
//     atCommit, and the removal was due: the user was already out of the
//     room in atBase (the committer built on an epoch made after the
//     leave), or the commit resolves a fork (ErrStaleMember).
//
// Device lists play no part in rejection: they are not room state, and
// members may see them differently. The caller logs and counts rejections.
//
// The rule binds the committer too. A member adopts its own commit when
// it makes it, from the room as it had seen it by then; its homeserver may
// already have placed a membership change before the commit's event that
// the member had not yet been told of. When the commit's event comes back,
// the member checks it as every other member does; if the room refuses
// it, the member withdraws it (Member.Withdraw: the epoch and every epoch
// above it are forgotten, the base is a head again) and commits anew. A
// committer that kept a commit everyone else refused would build on a
// branch that no one else ever applies, and never learn that.
//
// A Welcome does not bypass the rule. A member remembers the epochs whose
// commits it refused (and those it withdrew) and refuses what builds on
// one, following the way down through graph parents and the bases that
// observed commit events name: a Welcome whose epoch or base descends
// from a refused epoch (ErrRefusedEpoch), and a commit on one (at once,
// as ErrParentNotRetained: its base never comes). If a Welcome came
// first, the commit is still checked when it arrives, and an epoch a
// Welcome entered goes, with everything above it, as soon as the way down
// shows it stands on a refused epoch. Otherwise a withdrawn commit's
// Welcome would carry the members it adds onto the dead branch.
//
// # Committer
//
// When a member sees a membership change or a fork, the joined device
// with the lowest leaf index in the base epoch (ties, impossible in a
// valid tree, broken by user id then device id) commits at once. Every
// other joined device waits Grace plus a uniform jitter in [0, MaxJitter)
// from when it last saw the group change (a membership change, or a
// commit that arrived), then commits only if the change is still not
// reflected in its base (NextCommit's Plan is not empty) or a fork is
// still open. Each change seen restarts the wait, so that waiting devices
// stay quiet while commits are still arriving; counting only from the
// first change made large groups after a partition fall into a
// resolution storm, every waiting device resolving the forks that the
// others' resolutions made (seen in the simulation with 40 members).
// A device that is not a joined member does not commit. Forks remain
// possible and are resolved as above. Grace should exceed the usual time
// for an event to reach every member: a shorter one makes the waiting
// devices commit before the first commit arrives, which forks the group
// on every change and delays convergence.
//
// Each commit in a row that resolved a fork, counting down from the base
// (Graph.ResolvingRun), doubles a waiting device's whole delay (Grace
// plus jitter), up to MaxBackoff (16) times; the first committer still
// commits at once. When events take longer than Grace plus MaxJitter to
// arrive (a grace set too short, a homeserver under load), every waiting
// device resolves the fork before the first committer's resolution
// reaches it, the resolutions fork again, and without the backoff they
// did so for ever (two services on one loaded Synapse reached epoch 100
// in a four-device room; TestSimulationOutlastsShortGrace). An ordinary
// commit ends the run, so a group that settled waits Grace again.
//
// # Retention
//
// Heads are never dropped. Any other retained epoch E is dropped when any
// of these holds:
//
//   - age: MaxAge has passed since E was superseded (its first child or
//     the first resolution naming it arrived), because messages encrypted
//     in E keep arriving for a while after E is left;
//   - settled: every member of E has moved on: it created an epoch above E
//     or sent an application message in one, or it is absent from every
//     head above E (removed on every live branch). This is the draft's
//     rule that an epoch may go once every member has committed on a
//     branch above it, extended to messages (the draft: a client that
//     sends a message chooses that fork; a member sends in its base, which
//     never moves back to an ancestor, so it will neither commit on E nor
//     send in it again, and its earlier messages in E precede the later
//     one in the room's DAG) and to removed members, who will never commit
//     there. A Member also counts its own devices as moved on from E once
//     they hold a retained epoch at or above a child of E that another
//     member's commit made, or our own commit once its event came back
//     and the room accepted it (Member.Confirm): that child cannot be
//     taken back (Withdraw takes back only our own commits, and refuses
//     confirmed ones), so E is never a head again and our devices will
//     neither commit on it nor send in it, and they hold their keys above
//     it (Member.pastForGood). Conversely, what our own devices did at or
//     above a commit of ours that may still be withdrawn (not confirmed,
//     and no other member committed or sent at or above it) counts for
//     nothing: a withdrawal takes them back to its base, which must then
//     still be there (Member.tentative). Without these an epoch of a
//     group where only a few members commit would settle never, and go
//     only by age or count, its secrets kept all that while. A settled
//     epoch still waits Policy.Linger from the latest move above it (an
//     epoch above it added, or a first message heard in one: Spoken):
//     a member's messages in E precede its move in the DAG but may
//     arrive after it, when a homeserver left them in a hole that is
//     paged back later; two federated services lost such messages
//     whenever the commit that settled E came first;
//   - count: more than MaxEpochs epochs are retained; the oldest
//     superseded (then lowest number, then lowest dmls_epoch) go first
//     until the count fits or only heads are left. A Member never drops by
//     count a foothold: the highest-numbered epoch that one of its own
//     devices holds. A device that joined by Welcome at an epoch whose
//     successors it has not processed yet holds its keys only there;
//     dropping it would leave the device in the group without them. Age
//     and settlement still drop a foothold, so a device stranded on it
//     for MaxAge is left to be removed and added again.
//
// Dropping an epoch hands its state to the caller's destroy function to
// zero its secrets; the graph keeps its metadata while a comparison between
// retained epochs may need it (between the retained epochs' last common
// ancestor and themselves) or while its commit resolves a retained epoch
// (forgetting it would make that epoch a head again), and forgets the
// rest. A Member forgets with them what it kept about commits: the hashes
// of commits made on epochs no longer retained, and observed commits that
// no longer connect to the graph. Its state is so bounded by the policy. The init secrets that
// retained epochs keep for their children come from the DMLS puncturable
// PRF (mls/pprf), so a retained epoch cannot derive the same child twice.
package epochs
