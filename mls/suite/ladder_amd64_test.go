//go:build !purego

package suite

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestAssemblySelected: on a CPU whose flags (as Linux lists them)
// include BMI2 and ADX, the assembly ladder is the one in use, and with
// AVX-512F and IFMA the eight-lane one, so that the tests of them that
// skip elsewhere run wherever they can.
func TestAssemblySelected(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the CPU's flags are read from Linux's /proc/cpuinfo; %s has none", runtime.GOOS)
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for line := range strings.Lines(string(info)) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "flags" {
			flags = strings.Fields(value)
			break
		}
	}
	for _, c := range []struct {
		name  string
		used  bool
		flags []string
	}{
		{"useADX", useADX, []string{"bmi2", "adx"}},
		{"useIFMA", useIFMA, []string{"avx512f", "avx512ifma"}},
	} {
		want := true
		for _, f := range c.flags {
			want = want && slices.Contains(flags, f)
		}
		if c.used != want {
			t.Errorf("%s %v, but the CPU's flags say %v: %v (flags %d)", c.name, c.used, c.flags, want, len(flags))
		}
	}
}
