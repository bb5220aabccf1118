package runner

import (
	"errors"
	"fmt"
	"testing"
)

func TestResultLine(t *testing.T) {
	res := Result{Suite: 3, Outcomes: []Outcome{
		{Scenario: "a"},
		{Scenario: "b", Err: fmt.Errorf("x: %w", ErrUnsupported)},
		{Scenario: "c", Err: fmt.Errorf("y: %w", ErrDisagreement)},
	}}
	if got, want := res.Line("ts-mls 1.6.4"), "interop: ts-mls 1.6.4 suite=3 scenarios=1/3"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	if got, want := res.HarnessLine("openmls"), "harness: openmls against itself suite=3 scenarios=1/3"; got != want {
		t.Errorf("HarnessLine = %q, want %q", got, want)
	}
	if !res.Outcomes[1].Unsupported() || res.Outcomes[2].Unsupported() {
		t.Error("only the UNIMPLEMENTED outcome is unsupported")
	}
	if !errors.Is(res.Outcomes[2].Err, ErrDisagreement) {
		t.Error("disagreement lost")
	}
}
