package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Homeserver is what the package needs from the homeserver; matrix.Puppets
// implements it. Answers are raw JSON, parsed and verified here.
type Homeserver interface {
	// OneTimeKeyCounts returns the homeserver's current one-time key
	// counts of a device, by algorithm.
	OneTimeKeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, error)
	// QueryKeys runs /keys/query as user for all devices of users.
	QueryKeys(ctx context.Context, user id.UserID, users []id.UserID) (json.RawMessage, error)
	// ClaimKeys runs /keys/claim as a device.
	ClaimKeys(ctx context.Context, user id.UserID, device id.DeviceID, claims map[id.UserID]map[id.DeviceID]string) (json.RawMessage, error)
	// UploadSigningKeys runs /keys/device_signing/upload as user.
	UploadSigningKeys(ctx context.Context, user id.UserID, body json.RawMessage) error
	// UploadSignatures runs /keys/signatures/upload as user.
	UploadSignatures(ctx context.Context, user id.UserID, body json.RawMessage) (json.RawMessage, error)
}

// Config holds what a Manager needs.
type Config struct {
	DB         *database.DB
	Sealer     *seal.Sealer
	Homeserver Homeserver
	Metrics    *Metrics
	Log        zerolog.Logger
	// Suite of our devices' identities and KeyPackages.
	Suite suite.ID
	// Stock is how many KeyPackages each device keeps on the homeserver;
	// below LowWater it is topped up.
	Stock, LowWater int
	// CheckInterval is the period of each device's safety-net check.
	CheckInterval time.Duration
	// Lifetime is the validity period of a new KeyPackage.
	Lifetime time.Duration
	// LastResortGrace is how long a replaced last-resort KeyPackage's
	// private keys are kept.
	LastResortGrace time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Manager owns our devices' identities and KeyPackages and claims other
// devices' KeyPackages. It is safe for concurrent use; its state is in
// the database.
type Manager struct {
	cfg   Config
	suite *suite.Suite
}

// New returns a Manager over cfg.
func New(cfg Config) (*Manager, error) {
	if !Supported(cfg.Suite) {
		return nil, fmt.Errorf("keys: %w: 0x%04x", suite.ErrUnsupportedSuite, uint16(cfg.Suite))
	}
	s, err := suite.Lookup(cfg.Suite)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if cfg.Sealer == nil || cfg.Homeserver == nil || cfg.Metrics == nil {
		return nil, errors.New("keys: Sealer, Homeserver and Metrics are required")
	}
	if cfg.Stock < 1 || cfg.LowWater < 0 || cfg.LowWater >= cfg.Stock {
		return nil, fmt.Errorf("keys: stock %d and low water %d: want 0 <= low water < stock", cfg.Stock, cfg.LowWater)
	}
	if cfg.CheckInterval <= 0 || cfg.Lifetime <= 0 {
		return nil, errors.New("keys: CheckInterval and Lifetime must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Metrics.LowWater.Set(float64(cfg.LowWater))
	return &Manager{cfg: cfg, suite: s}, nil
}

// Suite returns the suite of our devices.
func (m *Manager) Suite() *suite.Suite { return m.suite }

// Handlers returns the handlers that keep the stock: the key-count
// handler and the three timers. Append them to the service's Handlers.
func (m *Manager) Handlers() (inbound.KeyCountHandler, map[string]inbound.TimerHandler) {
	return countHandler{m}, map[string]inbound.TimerHandler{
		TimerSweep:  sweepTimer{m},
		TimerDevice: deviceTimer{m},
		TimerPuppet: puppetTimer{m},
	}
}

// Start schedules the sweep at once, so that every device without an
// identity (one created before this package existed, or by a process
// that did not make one) gets one, and every device's check timer exists.
func (m *Manager) Start(ctx context.Context) error {
	return database.ScheduleTimer(ctx, m.cfg.DB, database.Timer{Kind: TimerSweep, Key: "all", DueAt: m.cfg.Now()}, database.Replace)
}
