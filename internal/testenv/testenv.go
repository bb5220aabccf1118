package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables set by ./scripts/test.
const (
	PostgresVar     = "MLSAS_TEST_POSTGRES"     // base DSN of a server we may create databases on
	SynapseURLVar   = "MLSAS_TEST_SYNAPSE_URL"  // client-server API of the test homeserver
	ConfigVar       = "MLSAS_TEST_CONFIG"       // service config with the registration's tokens
	RegistrationVar = "MLSAS_TEST_REGISTRATION" // registration.yaml loaded by the homeserver

	SynapsePythonVar   = "MLSAS_TEST_SYNAPSE_PYTHON"   // python of the Synapse virtualenv, for private homeservers
	SynapseTemplateVar = "MLSAS_TEST_SYNAPSE_TEMPLATE" // deploy/synapse/homeserver.yaml, their configuration's base

	NioPythonVar = "MLSAS_TEST_NIO_PYTHON" // python of the matrix-nio virtualenv (the façade's SDK bot)
)

// NioPython returns the python of the virtualenv that holds matrix-nio at
// the version csapi/testdata/nio/requirements.txt pins.
func NioPython(t testing.TB) string {
	t.Helper()
	return require(t, NioPythonVar)
}

func require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: this test needs the real components that ./scripts/test provides (PostgreSQL, Synapse, Synapse's virtualenv); run ./scripts/test, which sets the MLSAS_TEST_* variables", name)
	}
	return v
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// Database creates an empty database for the calling test and returns
// its DSN. The database is dropped when the test ends, unless MLSAS_KEEP
// is 1 (as for scripts/with-env's work directory): then its name is
// logged and it stays, to be inspected after the run.
func Database(t testing.TB) string {
	t.Helper()
	base := require(t, PostgresVar)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test PostgreSQL (%s): %v; is ./scripts/test running it?", PostgresVar, err)
	}
	defer conn.Close(ctx)

	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	name := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = "t_" + name + "_" + hex.EncodeToString(suffix[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("MLSAS_KEEP") == "1" {
			t.Logf("MLSAS_KEEP=1: test database %s kept", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", PostgresVar, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Synapse describes the test homeserver and the service configuration
// registered with it.
type Synapse struct {
	URL              string
	ConfigPath       string
	RegistrationPath string
}

// RequireSynapse returns the running test homeserver.
func RequireSynapse(t testing.TB) Synapse {
	t.Helper()
	return Synapse{
		URL:              require(t, SynapseURLVar),
		ConfigPath:       require(t, ConfigVar),
		RegistrationPath: require(t, RegistrationVar),
	}
}

// String is for failure messages.
func (s Synapse) String() string { return fmt.Sprintf("Synapse at %s", s.URL) }
