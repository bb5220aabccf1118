// Package migrations holds the numbered SQL files that define the
// service's PostgreSQL schema and embeds them into the binary.
//
// The files live in their own package because go:embed cannot reach a
// parent directory: database/ applies them, but only this package can
// embed them. A file is named NNNN_description.sql; NNNN is the schema
// version it produces, and versions must be contiguous from 1. A file
// is never edited once released: a change is a new file.
package migrations
