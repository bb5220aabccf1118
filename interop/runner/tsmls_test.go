package runner

import (
	"context"
	"fmt"
	"testing"
)

// Scenarios ts-mls 1.6 cannot take part in, with the reason; every other
// scenario must pass between two ts-mls processes, which proves the runner
// and the Node driver before our own client exists.
var tsmlsUnsupported = map[string]string{
	"update_proposal": "ts-mls has no API to create an Update proposal",
	// ts-mls reads external_senders as one ExternalSender per extension,
	// not the RFC 9420 vector<ExternalSender>.
	"external_signer_proposal": "ts-mls external_senders encoding differs from RFC 9420",
}

func TestTSMLSAgainstTSMLS(t *testing.T) {
	ctx := context.Background()
	var clients []*Client
	for range 2 {
		d, err := StartTSMLS(ctx, "../tsmls")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Stop)
		c, err := Dial(ctx, d.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	for _, suite := range []uint16{1, 2, 3} {
		res, err := Run(ctx, clients[0], clients[1], suite, Scenarios)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(res.HarnessLine(clients[1].Name))
		for _, o := range res.Outcomes {
			switch {
			case o.Passed():
			case o.Unsupported() && tsmlsUnsupported[o.Scenario] != "":
				t.Logf("unsupported: %v", o)
			default:
				t.Errorf("suite %d: %v", suite, o)
			}
		}
	}
}
