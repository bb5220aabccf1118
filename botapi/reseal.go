package botapi

import "github.com/mls-appservice/mls-appservice/internal/reseal"

// SealedColumns are the columns of sealed values this package keeps (the
// webhooks' signing secrets, webhookRow), for `mls-appservice keys
// reseal` (package reseal).
func SealedColumns() []reseal.Column {
	return []reseal.Column{{Table: "bot_webhook", Column: "secret", Purpose: purposeWebhook, Binding: "bot_webhook",
		Parts: []string{"t.bot"}}}
}
