//go:build !purego

package suite

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestADXSelected: on a CPU whose flags (as Linux lists them) include
// BMI2 and ADX, the assembly ladder is the one in use, so that the tests
// of it that skip elsewhere run wherever they can.
func TestADXSelected(t *testing.T) {
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
	if want := slices.Contains(flags, "bmi2") && slices.Contains(flags, "adx"); useADX != want {
		t.Fatalf("useADX %v, but the CPU's flags say BMI2 and ADX: %v (flags %d)", useADX, want, len(flags))
	}
}
