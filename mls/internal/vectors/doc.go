// Package vectors loads the official MLS test vectors from
// ../shared/mls-test-vectors (relative to the repository root) and reports
// per-file results in the one line format that the project's test output
// promises: "vectors: <file> <passed>/<total>".
//
// It is used only by tests.
package vectors
