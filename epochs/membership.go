package epochs

import (
	"fmt"
	"slices"
)

// MemberState is a user's m.room.member membership.
type MemberState string

const (
	Join   MemberState = "join"
	Invite MemberState = "invite"
	Leave  MemberState = "leave"
	Ban    MemberState = "ban"
	Knock  MemberState = "knock"
)

// Room is the room's membership at one point of its event graph (the state
// at one event), and the device lists the caller knows for its users.
type Room struct {
	// Members maps user id to membership. A missing user never joined.
	Members map[string]MemberState
	// Devices maps user id to the user's device ids, as last queried. Only
	// planning uses it: device lists are not room state, and two members
	// can see them differently, so a rejection based on them would make
	// honest members disagree about which commits are valid.
	Devices map[string][]string
}

// inRoom: joined or invited. The group's devices are those of the users
// in the room: an invited user's devices are added (so that the user can
// read the room from the moment it joins) and are not removed.
func (r Room) inRoom(user string) bool {
	s := r.Members[user]
	return s == Join || s == Invite
}

// CommitEffect is what a commit does to the group's devices, as the group
// layer computed it while processing the commit.
type CommitEffect struct {
	Added   []Device
	Removed []Device
	// After is the group's device set in the epoch the commit creates.
	After []Device
	// Resolving is true if the commit names other heads in resolves; such a
	// commit must bring the group to the room's membership.
	Resolving bool
}

// Rejection is why a commit was refused. It wraps one of the sentinel
// errors (ErrUnauthorisedAdd, ErrStaleMember) for errors.Is, and names the
// device concerned so that the caller can log it.
type Rejection struct {
	Reason error
	Device Device
	// State is the user's membership at the commit.
	State MemberState
}

func (r *Rejection) Error() string {
	state := r.State
	if state == "" {
		state = "none"
	}
	return fmt.Sprintf("%v: %v (membership %s)", r.Reason, r.Device, state)
}

func (r *Rejection) Unwrap() error { return r.Reason }

// CheckCommit applies the room's authority over the group (package doc,
// "Membership authority"). atCommit is the room state at the commit event;
// atBase is the room state at the event that created the commit's base
// epoch (its commit_event). It returns nil or a *Rejection; with several
// faults it reports the first in device order, adds before stale members.
func CheckCommit(c CommitEffect, atCommit, atBase Room) error {
	added := slices.Clone(c.Added)
	slices.SortFunc(added, Device.Compare)
	for _, d := range added {
		if !atCommit.inRoom(d.UserID) {
			return &Rejection{Reason: ErrUnauthorisedAdd, Device: d, State: atCommit.Members[d.UserID]}
		}
	}
	after := slices.Clone(c.After)
	slices.SortFunc(after, Device.Compare)
	for _, d := range after {
		if atCommit.inRoom(d.UserID) {
			continue
		}
		// The committer had to remove this device if the user was already
		// gone when the base epoch was made (the committer built on that
		// epoch, so it had seen the leave), or if the commit resolves a
		// fork, which must always reconcile the membership.
		if c.Resolving || !atBase.inRoom(d.UserID) {
			return &Rejection{Reason: ErrStaleMember, Device: d, State: atCommit.Members[d.UserID]}
		}
	}
	return nil
}

// Plan is how a commit brings a group's devices to the room's membership.
type Plan struct {
	// Add are devices of joined and invited users that the group lacks;
	// the caller claims a KeyPackage for each, and leaves out those it
	// cannot get.
	Add []Device
	// Remove are devices whose user is neither joined nor invited, and
	// devices of joined or invited users whose known device list no longer
	// holds them.
	Remove []Device
}

// Empty reports whether the group already matches the room.
func (p Plan) Empty() bool { return len(p.Add) == 0 && len(p.Remove) == 0 }

// PlanMembership compares the group's devices with the room: the group
// must hold exactly the listed devices of the users that are joined or
// invited (package doc, "Resolving commits").
func PlanMembership(group []Device, room Room) Plan {
	var p Plan
	have := make(map[Device]bool, len(group))
	for _, d := range group {
		have[d] = true
		listed, known := room.Devices[d.UserID]
		switch {
		case !room.inRoom(d.UserID):
			p.Remove = append(p.Remove, d)
		case known && !slices.Contains(listed, d.DeviceID):
			p.Remove = append(p.Remove, d)
		}
	}
	for user := range room.Members {
		if !room.inRoom(user) {
			continue
		}
		for _, dev := range room.Devices[user] {
			d := Device{UserID: user, DeviceID: dev}
			if !have[d] {
				have[d] = true
				p.Add = append(p.Add, d)
			}
		}
	}
	slices.SortFunc(p.Add, Device.Compare)
	slices.SortFunc(p.Remove, Device.Compare)
	return p
}

// ResolvingCommit is everything the group layer needs to build the next
// commit: the base to build on, the heads to name, and the membership
// changes. Its commit always carries an update path (package doc).
type ResolvingCommit struct {
	Resolution
	Plan
}

// NextCommit plans the commit a member makes now: on the base, resolving
// the other heads, reconciling the base's devices with room.
func (g *Graph[S]) NextCommit(room Room) (ResolvingCommit, error) {
	res, err := g.Resolution()
	if err != nil {
		return ResolvingCommit{}, err
	}
	return ResolvingCommit{Resolution: res, Plan: PlanMembership(g.nodes[res.Base].Members, room)}, nil
}
