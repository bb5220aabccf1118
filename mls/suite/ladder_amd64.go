//go:build !purego

package suite

import (
	"golang.org/x/sys/cpu"
)

// The X25519 ladder in four 64-bit limbs with MULX, ADCX and ADOX
// (ladder_amd64.s), where the CPU has BMI2 and ADX.
//
// A sparse tree's commit makes a seal per member, and a seal is a ladder
// and a fixed-base multiplication; the ladder is nine field
// multiplications a bit. edwards25519/field multiplies five 51-bit limbs
// with MULQ; four 64-bit limbs take 16 multiplications instead of 25, and
// MULX with the two carry chains of ADCX and ADOX adds their halves
// without serialising on one flag. The whole step is one assembly call,
// so its 18 field operations pay no call each.
var useADX = cpu.X86.HasBMI2 && cpu.X86.HasADX

//go:noescape
func ladderStepADX(s *ladderState)

//go:noescape
func fieldOpADX(op int, s *ladderState)
