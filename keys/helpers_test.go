package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

func idUser(s string) id.UserID     { return id.UserID(s) }
func idDevice(s string) id.DeviceID { return id.DeviceID(s) }

func newEd25519(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// nilHomeserver is for tests that make no request.
type nilHomeserver struct{}

var errNoHomeserver = errors.New("no homeserver in this test")

func (nilHomeserver) OneTimeKeyCounts(context.Context, id.UserID, id.DeviceID) (map[string]int, error) {
	return nil, errNoHomeserver
}
func (nilHomeserver) QueryKeys(context.Context, id.UserID, []id.UserID) (json.RawMessage, error) {
	return nil, errNoHomeserver
}
func (nilHomeserver) ClaimKeys(context.Context, id.UserID, id.DeviceID, map[id.UserID]map[id.DeviceID]string) (json.RawMessage, error) {
	return nil, errNoHomeserver
}
func (nilHomeserver) UploadSigningKeys(context.Context, id.UserID, json.RawMessage) error {
	return errNoHomeserver
}
func (nilHomeserver) UploadSignatures(context.Context, id.UserID, json.RawMessage) (json.RawMessage, error) {
	return nil, errNoHomeserver
}

// offlineManager is a Manager of suite id with a fresh sealing key and no
// homeserver, for tests and benchmarks that make and open keys only.
func offlineManager(t testing.TB, id suite.ID, stock, lowWater int, lifetime time.Duration) (*Manager, *seal.Sealer) {
	t.Helper()
	k, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.NewSealer(k)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Sealer: sealer, Homeserver: nilHomeserver{}, Metrics: NewMetrics(prometheus.NewRegistry()),
		Suite: id, Stock: stock, LowWater: lowWater, CheckInterval: time.Hour, Lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	return m, sealer
}
