// Package config loads, checks and rewrites the service's YAML
// configuration.
//
// Start-up fails on the first problem with one line that names the key
// (for example "appservice.hs_token: still the placeholder; run with -g"),
// because a half-configured service that starts anyway fails later in a
// place that no longer says why. Values containing CHANGE_ME or
// example.com are placeholders from config.example.yaml.
//
// Writing the generated tokens back (-g) edits the YAML node tree rather
// than re-marshalling the struct, so the operator's comments and key order
// survive.
package config
