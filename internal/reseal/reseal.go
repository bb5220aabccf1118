// Package reseal re-seals stored secrets under the current master key
// (package seal, "Rotation"): `mls-appservice keys reseal` runs it over
// the columns that every sealing package lists (keys, groups, botapi
// each export SealedColumns), so that an old key can be removed without
// losing anything sealed under it.
//
// A column says how each value's seal.Binding is made from its row, as
// SQL expressions, so that one walker serves every table: bindings are
// labels fixed when a value was sealed, and a migration that moves a
// column or renumbers its key keeps them (a value moved from
// device_identity to puppet_device is still bound to device_identity).
package reseal

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Column is a column of sealed values.
type Column struct {
	// Table is the table, named t in Parts and Elements.
	Table string
	// Column holds the values: bytea, or bytea[] when Elements is set.
	Column  string
	Purpose seal.Purpose
	// Binding is the table name each value is bound to (seal.Row's
	// first argument).
	Binding string
	// Parts are SQL expressions over t, each of type text: the rest of
	// the binding, in order.
	Parts []string
	// Elements, for a bytea[] column, are SQL expressions over t of type
	// text[]: element i of the column is bound to Parts followed by
	// element i of each.
	Elements []string
}

func (c Column) String() string { return c.Table + "." + c.Column }

// batchSize is how many rows one transaction re-seals.
const batchSize = 200

// Run re-seals every value of cols that is not under s's current key, in
// transactions of batchSize rows, and returns how many values it
// re-sealed. A value that opens under none of s's keys stops it with an
// error naming its column and binding: it is never overwritten. Running
// it again after an interruption continues where it stopped. Rows are
// locked while their batch runs, so the service may keep running.
func Run(ctx context.Context, db *database.DB, s *seal.Sealer, cols []Column) (int, error) {
	total := 0
	for _, c := range cols {
		n, err := column(ctx, db, s, c)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// column re-seals one column. It walks the table in physical order from a
// cursor (a TID range scan, so that a large table such as the delivery
// log is read once, not once per batch), then counts what is left under
// another key, which the walk can miss only if rows moved behind the
// cursor meanwhile or were written since, and walks again while anything
// is, up to maxWalks times.
func column(ctx context.Context, db *database.DB, s *seal.Sealer, c Column) (int, error) {
	current := s.Current()
	stale := fmt.Sprintf("t.%s IS NOT NULL AND substring(t.%s from 2 for 8) <> $1", c.Column, c.Column)
	if len(c.Elements) > 0 {
		stale = fmt.Sprintf("EXISTS (SELECT FROM unnest(t.%s) v WHERE substring(v from 2 for 8) <> $1)", c.Column)
	}
	sel := []string{"t.ctid", "ARRAY[" + strings.Join(c.Parts, ", ") + "]::text[]"}
	sel = append(sel, c.Elements...)
	sel = append(sel, "t."+c.Column)
	query := fmt.Sprintf(`SELECT %s FROM %s t WHERE t.ctid > $2 AND t.ctid < $3 AND %s LIMIT %d FOR UPDATE OF t`,
		strings.Join(sel, ", "), c.Table, stale, batchSize)
	update := fmt.Sprintf(`UPDATE %s SET %s = $1 WHERE ctid = $2`, c.Table, c.Column)
	count := fmt.Sprintf(`SELECT count(*) FROM %s t WHERE %s`, c.Table, stale)

	total := 0
	for walk := 1; ; walk++ {
		// A walk ends at the table's end as it began: rows written
		// behind it are the next walk's, so a writer cannot keep one
		// walk going.
		var blocks int64
		if err := db.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint`,
			c.Table).Scan(&blocks); err != nil {
			return total, fmt.Errorf("reseal %s: %w", c, err)
		}
		end := pgtype.TID{BlockNumber: uint32(blocks), Valid: true}
		walked := 0
		after := pgtype.TID{Valid: true} // (0,0): before every row
		for {
			n, last, err := batch(ctx, db, s, c, query, update, current[:], after, end)
			walked += n
			if err != nil {
				return total + walked, err
			}
			if !last.Valid {
				break
			}
			after = last
		}
		total += walked
		var left int64
		if err := db.QueryRow(ctx, count, current[:]).Scan(&left); err != nil {
			return total, fmt.Errorf("reseal %s: %w", c, err)
		}
		if left == 0 {
			return total, nil
		}
		if walk == maxWalks {
			return total, fmt.Errorf("reseal %s: %d values under another key after %d walks: is a service still sealing under the old key (restart it with the new one first)?", c, left, walk)
		}
	}
}

// maxWalks bounds the walks of one column: values under another key that
// keep appearing come from a writer sealing under it, which no number of
// walks outruns.
const maxWalks = 5

// batch re-seals the rows query finds between the cursor and end and
// returns how many values it re-sealed and the greatest row position it saw (invalid
// when it found none).
func batch(ctx context.Context, db *database.DB, s *seal.Sealer, c Column, query, update string, current []byte, after, end pgtype.TID) (int, pgtype.TID, error) {
	n := 0
	var last pgtype.TID
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		n, last = 0, pgtype.TID{}
		type row struct {
			tid      pgtype.TID
			parts    []string
			elements [][]string
			value    []byte
			values   [][]byte
		}
		var rows []row
		res, err := tx.Query(ctx, query, current, after, end)
		if err != nil {
			return fmt.Errorf("reseal %s: %w", c, err)
		}
		for res.Next() {
			r := row{elements: make([][]string, len(c.Elements))}
			dest := []any{&r.tid, &r.parts}
			for i := range r.elements {
				dest = append(dest, &r.elements[i])
			}
			if len(c.Elements) > 0 {
				dest = append(dest, &r.values)
			} else {
				dest = append(dest, &r.value)
			}
			if err := res.Scan(dest...); err != nil {
				res.Close()
				return fmt.Errorf("reseal %s: %w", c, err)
			}
			rows = append(rows, r)
		}
		if err := res.Err(); err != nil {
			return fmt.Errorf("reseal %s: %w", c, err)
		}
		for _, r := range rows {
			if !last.Valid || tidLess(last, r.tid) {
				last = r.tid
			}
			var fresh any
			if len(c.Elements) == 0 {
				v, err := resealValue(s, c, seal.Row(c.Binding, r.parts...), r.value)
				if err != nil {
					return err
				}
				fresh = v
				n++
			} else {
				out := make([][]byte, len(r.values))
				for i, v := range r.values {
					parts := append([]string(nil), r.parts...)
					for _, e := range r.elements {
						if len(e) != len(r.values) {
							return fmt.Errorf("reseal %s: row %v: %d values, %d binding elements", c, r.parts, len(r.values), len(e))
						}
						parts = append(parts, e[i])
					}
					if !s.NeedsReseal(v) {
						out[i] = v
						continue
					}
					if out[i], err = resealValue(s, c, seal.Row(c.Binding, parts...), v); err != nil {
						return err
					}
					n++
				}
				fresh = out
			}
			if _, err := tx.Exec(ctx, update, fresh, r.tid); err != nil {
				return fmt.Errorf("reseal %s: row %v: %w", c, r.parts, err)
			}
		}
		return nil
	})
	return n, last, err
}

// resealValue opens value under binding and seals it again under the
// current key.
func resealValue(s *seal.Sealer, c Column, b seal.Binding, value []byte) ([]byte, error) {
	plain, err := s.Open(c.Purpose, b, value)
	if err != nil {
		return nil, fmt.Errorf("reseal %s: %w", c, err)
	}
	defer clear(plain)
	return s.Seal(c.Purpose, b, plain)
}

func tidLess(a, b pgtype.TID) bool {
	return a.BlockNumber < b.BlockNumber || a.BlockNumber == b.BlockNumber && a.OffsetNumber < b.OffsetNumber
}
