package botapi

import (
	"context"
	"testing"

	"github.com/mls-appservice/mls-appservice/internal/reseal"
	"github.com/mls-appservice/mls-appservice/seal"
)

// TestResealWebhookSecrets: `keys reseal` over SealedColumns re-seals a
// webhook's secret, which then opens under the new key alone where the
// package binds it (webhookRow).
func TestResealWebhookSecrets(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	k0, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s0, err := seal.NewSealer(k0)
	if err != nil {
		t.Fatal(err)
	}
	bots := []string{"alpha", "o'brien"}
	for i, bot := range bots {
		sealed, err := s0.Seal(purposeWebhook, webhookRow(bot), []byte("whsec_"+bot))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO bot (name, token_id, token_hash) VALUES ($1, $2, '\x00')`, bot, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO bot_webhook (bot, url, secret) VALUES ($1, 'https://hook.test/', $2)`, bot, sealed); err != nil {
			t.Fatal(err)
		}
	}
	k1, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rotating, err := seal.NewSealer(k1, k0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := reseal.Run(ctx, db, rotating, SealedColumns()); err != nil || n != len(bots) {
		t.Fatalf("reseal: %d values, %v; want %d", n, err, len(bots))
	}
	only, err := seal.NewSealer(k1)
	if err != nil {
		t.Fatal(err)
	}
	for _, bot := range bots {
		var sealed []byte
		if err := db.QueryRow(ctx, `SELECT secret FROM bot_webhook WHERE bot = $1`, bot).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		plain, err := only.Open(purposeWebhook, webhookRow(bot), sealed)
		if err != nil || string(plain) != "whsec_"+bot {
			t.Fatalf("%s's secret after reseal: %q, %v", bot, plain, err)
		}
	}
}
