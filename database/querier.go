package database

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what a store function needs: the pool, or a transaction the
// caller has open. Every store function takes one, so that any of them
// can run inside the caller's transaction (DESIGN 8: everything one work
// item changes is written in one database transaction).
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	// SendBatch sends several statements in one round trip; they run in
	// order, as if sent one by one.
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	// CopyFrom writes rows into table with COPY, which PostgreSQL takes
	// in batches: the cheapest way in for many rows that need no
	// conflict handling (a unique key still refuses a duplicate, failing
	// the whole statement).
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error)
}

var (
	_ Querier = (pgx.Tx)(nil)
	_ Querier = (*DB)(nil)
)

// Exec runs sql on the pool.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return db.Pool.Exec(ctx, sql, args...)
}

// Query runs sql on the pool.
func (db *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return db.Pool.Query(ctx, sql, args...)
}

// QueryRow runs sql on the pool.
func (db *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return db.Pool.QueryRow(ctx, sql, args...)
}

// SendBatch runs b on one connection of the pool.
func (db *DB) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return db.Pool.SendBatch(ctx, b)
}

// CopyFrom runs COPY on one connection of the pool.
func (db *DB) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error) {
	return db.Pool.CopyFrom(ctx, table, columns, rows)
}
