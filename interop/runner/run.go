package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ScenarioTimeout bounds one scenario run; ts-mls on P-256 is slow but
// no flow here needs more than a few seconds.
const ScenarioTimeout = 2 * time.Minute

// Outcome is the result of one scenario run.
type Outcome struct {
	Scenario string
	// Roles says which client played alice/carol and which bob/dave.
	Roles   string
	Encrypt bool
	Err     error
}

// Passed reports whether the run succeeded.
func (o Outcome) Passed() bool { return o.Err == nil }

// Unsupported reports whether the run stopped because a client does not
// implement an operation the flow needs.
func (o Outcome) Unsupported() bool { return errors.Is(o.Err, ErrUnsupported) }

func (o Outcome) String() string {
	wire := "PublicMessage"
	if o.Encrypt {
		wire = "PrivateMessage"
	}
	res := "ok"
	if o.Err != nil {
		res = o.Err.Error()
	}
	return fmt.Sprintf("%s [%s, %s]: %s", o.Scenario, o.Roles, wire, res)
}

// Result collects the outcomes of all scenarios for one suite.
type Result struct {
	Suite    uint16
	Outcomes []Outcome
}

// Passed counts the successful runs.
func (r Result) Passed() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Passed() {
			n++
		}
	}
	return n
}

// Line is the summary line of our client against peer.
func (r Result) Line(peer string) string {
	return fmt.Sprintf("interop: %s suite=%d scenarios=%d/%d", peer, r.Suite, r.Passed(), len(r.Outcomes))
}

// HarnessLine is the summary line of an implementation run against itself.
// Those runs prove the runner and the drivers, not interoperability, so
// they carry another prefix than Line's and cannot be mistaken for it.
func (r Result) HarnessLine(impl string) string {
	return fmt.Sprintf("harness: %s against itself suite=%d scenarios=%d/%d", impl, r.Suite, r.Passed(), len(r.Outcomes))
}

// Run runs every scenario between a and b for suite: each with a playing
// alice/carol and b playing bob/dave, then swapped, each with handshake
// messages as PublicMessage and as PrivateMessage.
func Run(ctx context.Context, a, b *Client, suite uint16, scenarios []Scenario) (Result, error) {
	for _, c := range []*Client{a, b} {
		if !c.Supports(suite) {
			return Result{}, fmt.Errorf("client %s does not support cipher suite %d", c.Name, suite)
		}
	}
	res := Result{Suite: suite}
	for _, sc := range scenarios {
		for _, swap := range []bool{false, true} {
			x, y := a, b
			if swap {
				x, y = b, a
			}
			for _, encrypt := range []bool{false, true} {
				res.Outcomes = append(res.Outcomes, runOne(ctx, sc, x, y, suite, encrypt))
			}
		}
	}
	return res, nil
}

func runOne(ctx context.Context, sc Scenario, x, y *Client, suite uint16, encrypt bool) Outcome {
	ctx, cancel := context.WithTimeout(ctx, ScenarioTimeout)
	defer cancel()
	s := newSession(ctx, suite, encrypt, map[string]*Client{"alice": x, "carol": x, "bob": y, "dave": y})
	err := sc.run(s)
	s.free()
	return Outcome{
		Scenario: sc.Name,
		Roles:    fmt.Sprintf("alice,carol=%s bob,dave=%s", x.Name, y.Name),
		Encrypt:  encrypt,
		Err:      err,
	}
}

func isUnimplemented(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unimplemented
}
