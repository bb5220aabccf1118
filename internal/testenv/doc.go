// Package testenv gives tests the real components that ./scripts/test
// starts: a PostgreSQL 15 server and a Synapse homeserver with the
// service's registration loaded.
//
// The script passes them through environment variables. A test that
// needs one and does not find it fails with a message saying how to run
// it; it never skips, because a skipped end-to-end test looks like a
// passing one in CI.
package testenv
