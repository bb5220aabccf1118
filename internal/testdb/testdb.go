// Package testdb opens a migrated database of its own for a test, on the
// PostgreSQL that ./scripts/test starts (testenv.Database), or one at an
// older schema for a test of a migration that rewrites stored rows. It
// is apart from testenv because package database's own tests use
// testenv, and this package imports database.
package testdb

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"
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

// OpenBefore returns a new database at the schema just before migration
// first ("0017"), closed when the test ends: the test writes rows as the
// code before the migration did, migrates with migrations.FS() (which
// applies first and what follows) and reads them as the code after.
func OpenBefore(ctx context.Context, t testing.TB, first string) *database.DB {
	t.Helper()
	db, err := database.Open(ctx, testenv.Database(t), database.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, before(t, first)); err != nil {
		t.Fatal(err)
	}
	return db
}

// before returns the migrations older than version first.
func before(t testing.TB, first string) fs.FS {
	t.Helper()
	entries, err := fs.ReadDir(migrations.FS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	older := fstest.MapFS{}
	for _, e := range entries {
		if e.Name() >= first {
			continue
		}
		b, err := fs.ReadFile(migrations.FS(), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		older[e.Name()] = &fstest.MapFile{Data: b}
	}
	return older
}
