package database

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is a pool of connections to the service's database.
type DB struct {
	Pool *pgxpool.Pool
}

// Options tune the pool. Zero values keep pgx's defaults.
type Options struct {
	MaxConns int32
	// ConnectTimeout bounds each new connection, so that an unreachable
	// or frozen server fails requests instead of hanging them.
	ConnectTimeout time.Duration
}

// Open connects to the database at uri and checks that it answers.
func Open(ctx context.Context, uri string, o Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(uri)
	if err != nil {
		// pgx redacts the password in parse errors, but the URI may be
		// malformed in a way that defeats its parser, so say nothing of it.
		return nil, errors.New("cannot parse the PostgreSQL URI (expected postgres://user:password@host:port/dbname)")
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	addr := Describe(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %s", addr, scrub(err.Error(), cfg.ConnConfig.Password))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach %s: %s", addr, scrub(err.Error(), cfg.ConnConfig.Password))
	}
	return &DB{Pool: pool}, nil
}

// Close releases every connection.
func (db *DB) Close() { db.Pool.Close() }

// Describe names a connection target for humans: user, host, port and
// database, without the password.
func Describe(cc *pgx.ConnConfig) string {
	host := cc.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(cc.Port)))
	}
	return fmt.Sprintf("postgres://%s@%s/%s", cc.User, host, cc.Database)
}

func scrub(msg, password string) string {
	if password == "" {
		return msg
	}
	return strings.ReplaceAll(msg, password, "********")
}

// InTxRetry is InTx for callers outside the work queues (API calls):
// a transaction that loses a conflict with another one (a deadlock or a
// serialization failure, which PostgreSQL resolves by aborting one of
// them) is run again, a few times, with a short pause.
func (db *DB) InTxRetry(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := db.InTx(ctx, fn)
		if err == nil || !IsConflict(err) || attempt == 4 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(10<<attempt) * time.Millisecond):
		}
	}
}

// IsConflict reports a transaction aborted because it lost to a
// concurrent one (deadlock, serialization failure): nobody's fault, and
// running it again is the cure.
func IsConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// IsUniqueViolation reports an insert that met an existing row with the
// same unique key, typically one a concurrent transaction just committed.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// InTx runs fn inside one database transaction and commits if fn returns
// nil. Effects of processing and their "processed" mark go through here
// together, so a crash leaves either all of them or none.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, fn)
}
