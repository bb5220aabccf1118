// Package database owns the service's PostgreSQL access: the pgx pool,
// the migration runner, and the stores that read and write each table.
//
// Everything that one inbound event changes is written inside one
// database transaction (DESIGN 8), so store methods that take part in
// processing accept a pgx.Tx and never open their own. The pool is the
// only shared resource; there is no package-level state.
//
// Connection errors name the host, port, database and user, never the
// password: they end up on an operator's terminal and in logs.
package database
