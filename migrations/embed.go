package migrations

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var files embed.FS

// FS returns the migration files, one NNNN_name.sql per schema version.
func FS() fs.FS { return files }
