// Package testdb opens a migrated database of its own for a test, on the
// PostgreSQL that ./scripts/test starts (testenv.Database). It is apart
// from testenv because package database's own tests use testenv, and
// this package imports database.
package testdb

import (
	"context"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/migrations"
)

// Open returns a pool of at most maxConns connections to a new, migrated
// database, closed when the test ends.
func Open(t testing.TB, maxConns int32) *database.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := database.Open(ctx, testenv.Database(t), database.Options{MaxConns: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return db
}
