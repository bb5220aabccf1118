//go:build !amd64 || purego

package suite

// Without AVX-512 IFMA (ladder8_amd64.go), every ladder runs alone.
const useIFMA = false

func ladder8IFMA(s *ladder8State) { panic("suite: no eight-lane ladder on this platform") }

func field8OpIFMA(op int, s *ladder8State) { panic("suite: no eight-lane ladder on this platform") }
