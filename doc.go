// Package mlsappservice holds the files that belong at the top of the
// repository but are also needed inside the binary: go:embed cannot
// reach a parent directory, so cmd/mls-appservice gets the example
// configuration from here. The service itself lives in the
// sub-packages; see README.md.
package mlsappservice
