package mlsappservice

import _ "embed"

//go:embed config.example.yaml
var exampleConfig []byte

// ExampleConfig returns config.example.yaml, which documents every key.
func ExampleConfig() []byte { return append([]byte(nil), exampleConfig...) }
