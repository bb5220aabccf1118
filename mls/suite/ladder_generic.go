//go:build !amd64 || purego

package suite

// Without the assembly ladder (ladder_amd64.go), x25519Ladder uses
// edwards25519/field's arithmetic alone.
const useADX = false

func ladderStepADX(s *ladderState) { panic("suite: no assembly ladder on this platform") }

func fieldOpADX(op int, s *ladderState) { panic("suite: no assembly ladder on this platform") }
