package groups

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Autojoin says which invitations to our puppets are accepted.
type Autojoin string

const (
	AutojoinOff  Autojoin = "off"
	AutojoinSame Autojoin = "same_homeserver"
	AutojoinAny  Autojoin = "any"
)

// Config holds what a Service needs.
type Config struct {
	DB      *database.DB
	Sealer  *seal.Sealer
	Keys    *keys.Manager
	Puppets *matrix.Puppets
	Metrics *Metrics
	Log     zerolog.Logger
	// Domain is our homeserver's server name.
	Domain string
	// Grace and MaxJitter parameterise the committer rule (epochs).
	Grace, MaxJitter time.Duration
	// Policy is the epoch retention per room.
	Policy epochs.Policy
	// Wait bounds how long an event naming an unknown epoch waits.
	Wait time.Duration
	// MaxHistory bounds the commit events one walk back along
	// commit_event links fetches (backfill, learning history after a
	// join); 256 if zero.
	MaxHistory int
	// LateEvent is how late a remote server's event may reach us before
	// the timeline behind it is checked for a hole (gap.go), and how often
	// at most one room is checked for that reason; a remote commit is
	// always checked. Zero turns both checks off.
	LateEvent time.Duration
	// Autojoin decides which invitations to our puppets are accepted.
	Autojoin Autojoin
	// SendTimeout bounds how long Send waits for the event id.
	SendTimeout time.Duration
	// DeviceTTL is how long a user's MLS device list is trusted.
	DeviceTTL time.Duration
	// Wake tells the workers and the outbox sender that work was added
	// outside a work item (an API call).
	Wake func()
	// OffloadThreshold is the size in bytes of an event's JSON content
	// above which its commit or Welcome goes through the media
	// repository (media.offload_threshold; 0 offloads every one).
	OffloadThreshold int64
	// StateCache is how many bytes of memory the decoded epoch state kept
	// across work items may take (the static part, group.Static, its
	// memory estimated from its encoding: statecache.go); 0 keeps none.
	StateCache int
	// LogRetention is how long an entry stays in the puppets' logs
	// (logprune.go); 0 keeps every entry.
	LogRetention time.Duration
	// LogBatch is how many rows one statement of log retention deletes
	// at most; 1000 if zero.
	LogBatch int
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Service runs DMLS rooms for our puppets: it implements the room,
// to-device, device-list and timer handlers that the spine calls, and
// the Go API that the bot API and the client-server façade wrap.
type Service struct {
	cfg     Config
	suite   *suite.Suite
	metrics *Metrics
	notify  notifier
	// lateChecked is when each room was last checked for a hole behind a
	// late remote event (gap.go).
	lateChecked *roomTimes
	statics     *staticCache
	// reconciled is when each room was last reconciled (reconcileLater).
	reconciled *roomTimes
	// runRows bounds the delivery rows one statement of a run writes
	// (run.go); tests lower it.
	runRows int
}

// New returns a Service over cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = 256
	}
	if cfg.Wake == nil {
		cfg.Wake = func() {}
	}
	s := cfg.Keys.Suite()
	return &Service{cfg: cfg, suite: s, metrics: cfg.Metrics, lateChecked: newRoomTimes(cfg.LateEvent),
		reconciled: newRoomTimes(reconcileCoalesce), statics: newStaticCache(cfg.StateCache), runRows: 4096}, nil
}

// Timer kinds of this package.
const (
	// timerCommit is a waiting committer's grace period (epochs,
	// "Committer"), one per room, run on the room's queue.
	timerCommit = "dmls_commit"
	// timerWait expires events waiting for an epoch, one per room.
	timerWait = "dmls_wait"
	// timerJoin accepts an invitation (autojoin), one per (room, puppet).
	timerJoin = "dmls_autojoin"
)

// Work item kinds this package puts on room queues.
const (
	// kindWelcome carries a Welcome that arrived as a to-device message
	// to the room's queue, where all of the room's state changes happen.
	kindWelcome = "dmls_welcome"
	// kindReconcile asks a room to compare its group with its membership
	// (a user's device list changed).
	kindReconcile = "dmls_reconcile"
)

// Handlers returns the handlers to add to the spine's (inbound.Handlers):
// room events, to-device Welcomes, device-list changes, and this
// package's timers and item kinds.
func (s *Service) Handlers(h *inbound.Handlers) {
	h.Room = append(h.Room, roomHandler{s})
	h.ToDevice = append(h.ToDevice, toDeviceHandler{s})
	h.DeviceList = append(h.DeviceList, deviceListHandler{s})
	if h.Timers == nil {
		h.Timers = map[string]inbound.TimerHandler{}
	}
	h.Timers[timerCommit] = commitTimer{s}
	h.Timers[timerWait] = waitTimer{s}
	h.Timers[timerJoin] = joinTimer{s}
	h.Timers[timerAuditSweep] = auditSweep{s}
	h.Timers[timerAudit] = auditTimer{s}
	h.Timers[timerRetain] = retainTimer{s}
	h.Timers[timerLogRetention] = logRetentionTimer{s}
	if h.Items == nil {
		h.Items = map[string]inbound.ItemHandler{}
	}
	h.Items[kindWelcome] = welcomeItem{s}
	h.Items[kindReconcile] = reconcileItem{s}
}

// roomQueue is the inbound queue of a room, where every change of its
// state is applied.
func roomQueue(room id.RoomID) string { return inbound.RoomQueue(room) }

func (s *Service) now() time.Time { return s.cfg.Now() }

// errf wraps an error with the room it concerns.
func errf(room id.RoomID, format string, args ...any) error {
	return fmt.Errorf("room %s: "+format, append([]any{room}, args...)...)
}
