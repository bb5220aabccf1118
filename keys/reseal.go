package keys

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/seal"
)

// SealedColumn names a column of sealed values: its table, the primary
// key columns that make its seal.Binding (in order) and its purpose.
// Each package that seals lists its columns, and `mls-appservice keys
// reseal` walks them all.
type SealedColumn struct {
	Table   string
	Key     []string
	Column  string
	Purpose seal.Purpose
	// Binding is the table name in each value's seal.Binding when it is
	// not Table: a column that a migration moved to another table keeps
	// the binding it was sealed to.
	Binding string
}

// binding returns the seal.Binding of the row whose key columns hold key.
func (c SealedColumn) binding(key []string) seal.Binding {
	table := c.Table
	if c.Binding != "" {
		table = c.Binding
	}
	return seal.Row(table, key...)
}

// SealedColumns are the sealed columns of this package.
func SealedColumns() []SealedColumn {
	return []SealedColumn{
		{"puppet_device", []string{"user_id", "device_id"}, "signature_key", purposeSignatureKey, identityBinding},
		{"key_package", []string{"user_id", "device_id", "key_id"}, "private", purposeKeyPackage, ""},
		{"key_package_batch", []string{"user_id", "device_id", "upload_txn"}, "secrets", purposeKeyPackageBatch, ""},
		{"puppet", []string{"user_id"}, "master_key", purposeMasterKey, crossSigningBinding},
		{"puppet", []string{"user_id"}, "self_signing_key", purposeSelfSigningKey, crossSigningBinding},
	}
}

// Reseal re-seals every value of cols that is not under s's current key,
// in batches of one transaction each, and returns how many it re-sealed.
// A value that opens under none of s's keys stops it with an error
// naming the row: it is never overwritten. Running it again after an
// interruption continues where it stopped.
func Reseal(ctx context.Context, db *database.DB, s *seal.Sealer, cols []SealedColumn) (int, error) {
	total := 0
	for _, c := range cols {
		for {
			n, err := resealBatch(ctx, db, s, c, 200)
			total += n
			if err != nil {
				return total, err
			}
			if n == 0 {
				break
			}
		}
	}
	return total, nil
}

func resealBatch(ctx context.Context, db *database.DB, s *seal.Sealer, c SealedColumn, limit int) (int, error) {
	current := s.Current()
	keyCols := strings.Join(c.Key, ", ")
	n := 0
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		n = 0
		// The key id is bytes 1..8 of every sealed value: select only
		// those under another key, so a batch never repeats itself.
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT %s, %s FROM %s WHERE %s IS NOT NULL
			AND substring(%s from 2 for 8) <> $1 LIMIT %d FOR UPDATE`, keyCols, c.Column, c.Table, c.Column, c.Column, limit),
			current[:])
		if err != nil {
			return fmt.Errorf("reseal %s.%s: %w", c.Table, c.Column, err)
		}
		type row struct {
			key    []string
			sealed []byte
		}
		var batch []row
		for rows.Next() {
			vals := make([]any, len(c.Key)+1)
			r := row{key: make([]string, len(c.Key))}
			for i := range c.Key {
				vals[i] = &r.key[i]
			}
			vals[len(c.Key)] = &r.sealed
			if err := rows.Scan(vals...); err != nil {
				rows.Close()
				return fmt.Errorf("reseal %s.%s: %w", c.Table, c.Column, err)
			}
			batch = append(batch, r)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reseal %s.%s: %w", c.Table, c.Column, err)
		}
		where := make([]string, len(c.Key))
		for i, k := range c.Key {
			where[i] = fmt.Sprintf("%s = $%d", k, i+2)
		}
		update := fmt.Sprintf(`UPDATE %s SET %s = $1 WHERE %s`, c.Table, c.Column, strings.Join(where, " AND "))
		for _, r := range batch {
			b := c.binding(r.key)
			plain, err := s.Open(c.Purpose, b, r.sealed)
			if err != nil {
				return fmt.Errorf("reseal %s.%s: %w", c.Table, c.Column, err)
			}
			fresh, err := s.Seal(c.Purpose, b, plain)
			clear(plain)
			if err != nil {
				return err
			}
			args := []any{fresh}
			for _, k := range r.key {
				args = append(args, k)
			}
			if _, err := tx.Exec(ctx, update, args...); err != nil {
				return fmt.Errorf("reseal %s: %w", b, err)
			}
			n++
		}
		return nil
	})
	return n, err
}
