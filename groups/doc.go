// Package groups runs the DMLS rooms of our puppets: it is where the
// spine's work items (package inbound), the DMLS rules (package epochs),
// the devices' identities and KeyPackages (package keys) and PostgreSQL
// meet. It owns no cryptography and no wire transport of its own: MLS is
// reached only through epochs.Member, the homeserver only through the
// outbox and matrix.Puppets.
//
// # What it does
//
//   - Rooms. A DMLS room is one whose m.room.create names the DMLS
//     algorithm (DESIGN 6). The creator's device makes epoch 0 when the
//     create event comes back, so a crash between creating the room and
//     making the group loses nothing.
//   - Membership drives commits. Every membership change and device-list
//     change of a room queues a reconcile of that room (after the room's
//     queued events, and left to a later one queued behind it when the
//     room was reconciled moments before, so that a burst or a room
//     filling up makes few commits). The committer rule
//     of epochs decides whether one of our devices commits now, later (a
//     timer row, so a crash never loses a due commit), or not at all. Our
//     commit claims and verifies the KeyPackages of the devices it adds,
//     always carries a path, resolves any open fork, and is written to the
//     outbox in the same database transaction as the new state: the commit
//     as m.room.encrypted, then the Welcome as a to-device message that
//     names the commit's event id (filled in by the outbox once sent), one
//     request for up to 100 of the added devices, queued per room. Our own
//     devices that the commit adds are none of them: they are members of
//     the new epoch from the commit's own path secrets, in the same
//     transaction (epochs.Member.CommitJoining). A device of ours that
//     the group holds without its keys (its Welcome never came: an orphan,
//     orphan.go) is removed after groups.wait and added again; each
//     removal doubles its next wait, so late Welcomes from a backlogged
//     homeserver do not make a room remove and add the same devices over
//     and over. Most such devices are not lost, only behind: a room's
//     creator adds an invitee's devices before the invitee joins, each
//     device enters its own epoch by Welcome, and the commits between
//     those epochs never reach us (a homeserver shows an invited user no
//     room events). When a puppet of ours joins, those commits are
//     fetched and applied, and the devices follow into the latest epoch
//     (history.go, followBehind). Where a Welcome was lost (Synapse drops
//     to-device messages to an application service that is down, and
//     never delivered 18 of 915 in one load run with the service up), the
//     commits up to the cut are backfilled, so that only that device is
//     an orphan. A device whose KeyPackage a commit could not claim or
//     verify is left out of that room (dmls_left_out) until its user's
//     device list changes; if its homeserver had no KeyPackage to give
//     (the device's first upload not in yet), it is claimed again after
//     30 s, then after a wait that doubles with each refusal (up to
//     32 min), since an upload of KeyPackages changes no device list.
//   - Membership the homeserver never sent. Synapse can hold back a
//     transaction for good (one made while it counts the appservice as
//     down, audit.go). Our puppet's own join is read back from the
//     homeserver when it is made; every DMLS room's membership is audited
//     against the room's state at start and hourly, and the membership
//     events missing here are queued as if they had arrived.
//   - Receiving. A commit is applied once for the room and each of our
//     devices then derives its private path keys from the shared result
//     (DESIGN 4). It is checked against the room's membership at its event
//     and at its base: first as events reached us, and before a refusal as
//     the homeserver resolved it in the room's graph (a commit made during
//     a partition arrives after the other side's membership changes); a
//     rejection is logged with its reason and counted. Our own commit is
//     checked the same way when its event comes back, and withdrawn if the
//     room's graph refuses it (receive.go, checkOwnCommit), confirmed if
//     it accepts it (retention then counts it as another member's); a message of
//     ours sent in a withdrawn epoch reached no one else, and is sent again
//     in the current epoch when its echo comes back (resend).
//     A message is decrypted once and delivered to every puppet of ours
//     joined in the room, and to any that has left but whose device the
//     message's epoch holds (a message concurrent with the leave,
//     recipients); an event naming an epoch we do not hold waits
//     (dmls_waiting, bounded by Config.Wait, a commit by 8 times that) while history is learnt along
//     commit_event links (history.go), and is reported undecryptable only
//     when the wait ends. A commit event the homeserver never received (a
//     hole left by federation catch-up after a partition) is found by
//     paging the timeline back, as a puppet of ours still joined (one that
//     left sees the timeline only up to its leave), which makes the
//     homeserver fetch the hole;
//     the hole's membership, commits and messages are then applied in
//     order (gap.go). Events not addressed to any of our devices (for
//     example sent after our puppet left) are counted as such, not as
//     undecryptable. A stored epoch that does not load (a value that
//     does not open under the configured keys, a database error;
//     epochs.ErrLoad) is our fault, not the event's: the event's item
//     fails, is retried and then parked with the reason, never refused
//     nor delivered as undecryptable, so that `queue retry` applies it
//     once the state opens again. A busy room's consecutive messages come as a run
//     (inbound.RoomRunHandler, run.go): read the room once, decrypt them
//     all, write the ratchets once and every delivery in three round trips.
//     A run takes only that common case; anything else in it (a commit, a
//     wait, a hole, a replay) hands the whole run back to be applied one
//     event at a time.
//   - Sending. Send encrypts in the base epoch of the room's graph and
//     writes the event to the outbox; an idempotency key makes a retried
//     request return the first result.
//   - Delivery log. Every event delivered to a puppet gets the next
//     sequence number of that puppet's log, which the bot API's
//     server-sent events and the client-server façade's /sync resume
//     from. The log is keyed by a number the puppet's cursor row holds
//     (delivery_cursor.log_no), not by its user ID (migration 0018). A
//     decrypted message, a membership event or a commit's MLS state is
//     stored once, in its room's log (room_entry, sealed to the room and
//     its number there), and a run of them given to a puppet is one row
//     of the puppet's log, a span of its numbers standing for the run
//     (delivery_span, migrations 0025, 0029 and 0030), which grows for an
//     hour while the puppet's next entries are the room's next ones
//     (roomlog.go); a device's join told to its puppet and undecryptable
//     notices are a row per puppet (delivery). Readers merge the two by
//     number (logread.go).
//     Entries older than groups.log_retention (30 days by default) are
//     deleted hourly (logprune.go): a reader resumes at the oldest kept.
//
// # Storage (migrations/0005_groups.sql)
//
// Per room, dmls_room holds the epoch graph's metadata (public: it all
// travels in room events). Per retained epoch, dmls_epoch holds the state
// all our devices share, sealed, in three parts that change at different
// times (static: written once; init: the puncturable PRF, changed when a
// child epoch is derived; secrets: the secret tree's ratchets, changed by
// each message), so decrypting a message rewrites only the ratchets and
// the delivery (and with a sender's first message in an epoch the graph,
// which notes it for retention). The static part, decoded, is also kept in memory across
// work items (statecache.go): it never changes, and decoding a large
// room's tree was most of the cost of reading one message. Per retained
// epoch, dmls_epoch_private holds our devices' private parts, each sealed
// on its own, in one row (a row per part cost as much again as the part:
// ids, tuple header, index entry). Epochs that retention drops (package
// epochs, "Retention": every member moved on, or epochs.Policy's count
// or age) are deleted with everything kept about them each time the room
// is saved (mlsas_dmls_epochs_dropped_total), and in a room that fell
// quiet when the next would go (a settled epoch's groups.epoch_linger, an
// epoch's age: retain.go). Every sealed value is bound to its row
// (package seal), so a value moved to another row does not open.
//
// # Concurrency
//
// A room is loaded for one work item (or run) or API call while its
// queue's lock is held (database.WaitQueue), so operations on one room are serial and
// different rooms run in parallel, across workers and instances alike.
package groups
