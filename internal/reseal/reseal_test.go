package reseal

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/mls-appservice/mls-appservice/internal/testdb"
	"github.com/mls-appservice/mls-appservice/seal"
)

// TestRun: a table of more rows than a batch, half of them under the old
// key and half already under the new one, with a scalar and an array
// column: every value under the old key is re-sealed once (the count is
// exact), each opens under the new key alone with the binding its Parts
// and Elements name, a second run finds nothing, and a value that opens
// under no key stops the run, naming its row, and is left as it was.
func TestRun(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, 2)
	if _, err := db.Exec(ctx, `CREATE TABLE sealed_things (n bigint PRIMARY KEY, name text NOT NULL, v bytea,
		members text[] NOT NULL, vs bytea[] NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	k0, _ := seal.GenerateKey()
	k1, _ := seal.GenerateKey()
	s0, _ := seal.NewSealer(k0)
	s1, _ := seal.NewSealer(k1)
	const rows = 3*batchSize + 7
	members := []string{"a", "b", "c"}
	for i := range rows {
		s := s0
		if i%2 == 1 {
			s = s1
		}
		v, err := s.Seal("test.v", seal.Row("things", strconv.Itoa(i), "x"), []byte("v"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		var vs [][]byte
		for j, m := range members {
			s := s0
			if j == 1 {
				s = s1 // one element already under the new key
			}
			b, err := s.Seal("test.vs", seal.Row("old_things", strconv.Itoa(i), m), []byte(m))
			if err != nil {
				t.Fatal(err)
			}
			vs = append(vs, b)
		}
		if i == 4 {
			v = nil // a NULL is skipped
		}
		if _, err := db.Exec(ctx, `INSERT INTO sealed_things VALUES ($1, $2, $3, $4, $5)`, i, fmt.Sprint(i), v, members, vs); err != nil {
			t.Fatal(err)
		}
	}
	cols := []Column{
		{Table: "sealed_things", Column: "v", Purpose: "test.v", Binding: "things", Parts: []string{"t.n::text", "'x'"}},
		{Table: "sealed_things", Column: "vs", Purpose: "test.vs", Binding: "old_things", Parts: []string{"t.name"},
			Elements: []string{"t.members"}},
	}
	rotating, _ := seal.NewSealer(k1, k0)
	want := (rows+1)/2 - 1 + rows*2 // scalars under k0 but the NULL, two elements of three in every row
	if n, err := Run(ctx, db, rotating, cols); err != nil || n != want {
		t.Fatalf("Run: %d values, %v; want %d", n, err, want)
	}
	if n, err := Run(ctx, db, rotating, cols); err != nil || n != 0 {
		t.Fatalf("Run again: %d values, %v; want 0", n, err)
	}
	res, err := db.Query(ctx, `SELECT n, v, vs FROM sealed_things ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for res.Next() {
		var n int
		var v []byte
		var vs [][]byte
		if err := res.Scan(&n, &v, &vs); err != nil {
			t.Fatal(err)
		}
		if n == 4 != (v == nil) {
			t.Fatalf("row %d: value %x", n, v)
		}
		if v != nil {
			if p, err := s1.Open("test.v", seal.Row("things", strconv.Itoa(n), "x"), v); err != nil || string(p) != "v"+strconv.Itoa(n) {
				t.Fatalf("row %d after Run: %q, %v", n, p, err)
			}
		}
		for j, m := range members {
			if p, err := s1.Open("test.vs", seal.Row("old_things", strconv.Itoa(n), m), vs[j]); err != nil || string(p) != m {
				t.Fatalf("row %d element %d after Run: %q, %v", n, j, p, err)
			}
		}
		seen++
	}
	if seen != rows {
		t.Fatalf("%d rows", seen)
	}

	// A value under a key the sealer does not have.
	k2, _ := seal.GenerateKey()
	s2, _ := seal.NewSealer(k2)
	alien, _ := s2.Seal("test.v", seal.Row("things", "7", "x"), []byte("v7"))
	if _, err := db.Exec(ctx, `UPDATE sealed_things SET v = $1 WHERE n = 7`, alien); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, db, rotating, cols); err == nil {
		t.Fatal("a value under an unknown key re-sealed")
	}
	var kept []byte
	if err := db.QueryRow(ctx, `SELECT v FROM sealed_things WHERE n = 7`).Scan(&kept); err != nil || string(kept) != string(alien) {
		t.Fatalf("the value that did not open was changed (%v)", err)
	}
}

// TestRunStopsChasingAWriter: values under the old key that keep
// appearing (here a trigger writes one for each value re-sealed, as a
// service still sealing under the old key would) stop the run with an
// error that says so, after maxWalks walks, instead of running forever.
func TestRunStopsChasingAWriter(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, 2)
	k0, _ := seal.GenerateKey()
	k1, _ := seal.GenerateKey()
	s0, _ := seal.NewSealer(k0)
	stale, err := s0.Seal("test.v", seal.Row("things", "x"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE chased (n bigserial PRIMARY KEY, v bytea NOT NULL)`,
		`CREATE FUNCTION chase() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO chased (v) VALUES (OLD.v); RETURN NEW; END $$`,
		`CREATE TRIGGER chase BEFORE UPDATE ON chased FOR EACH ROW EXECUTE FUNCTION chase()`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO chased (v) VALUES ($1)`, stale); err != nil {
		t.Fatal(err)
	}
	rotating, _ := seal.NewSealer(k1, k0)
	cols := []Column{{Table: "chased", Column: "v", Purpose: "test.v", Binding: "things", Parts: []string{"'x'"}}}
	n, err := Run(ctx, db, rotating, cols)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("after %d walks", maxWalks)) {
		t.Fatalf("Run chasing a writer: %d values, %v", n, err)
	}
	if n < maxWalks {
		t.Fatalf("%d values re-sealed in %d walks", n, maxWalks)
	}
}
