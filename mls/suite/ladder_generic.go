//go:build !amd64 || purego

package suite

// Without the assembly ladder (ladder_amd64.go), x25519Ladder uses
// edwards25519/field's arithmetic alone.
const useADX = false

type ladderState struct {
	x1, x2, z2, x3, z3 fe64
	a, b, c, d         fe64
}

func ladderStepADX(s *ladderState) { panic("suite: no assembly ladder on this platform") }

func fieldOpADX(op int, s *ladderState) { panic("suite: no assembly ladder on this platform") }
