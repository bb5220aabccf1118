//go:build !purego

package suite

import "golang.org/x/sys/cpu"

// useIFMA says whether eight ladders run at once in AVX-512 IFMA
// (ladder8_amd64.s): 52-bit multiply-adds on eight 64-bit lanes.
var useIFMA = cpu.X86.HasAVX512F && cpu.X86.HasAVX512IFMA

//go:noescape
func ladder8IFMA(s *ladder8State)

//go:noescape
func field8OpIFMA(op int, s *ladder8State)
