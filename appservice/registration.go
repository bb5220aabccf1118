package appservice

import (
	"crypto/rand"
	"fmt"
	"regexp"

	mauappservice "maunium.net/go/mautrix/appservice"

	"github.com/mls-appservice/mls-appservice/config"
)

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewToken returns a random 64-character token from crypto/rand.
func NewToken() (string, error) {
	out := make([]byte, 0, 64)
	buf := make([]byte, 96)
	for len(out) < 64 {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generate token: %w", err)
		}
		for _, b := range buf {
			// Reject the top of the byte range so every letter is
			// equally likely (248 = 4 * 62).
			if b < 248 && len(out) < 64 {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(out), nil
}

// NewRegistration builds the appservice registration for cfg with fresh
// tokens. The user namespace is exclusive: nobody else may create users
// in it, which is what makes the puppets' keys ours alone.
func NewRegistration(cfg *config.Config) (*mauappservice.Registration, error) {
	asToken, err := NewToken()
	if err != nil {
		return nil, err
	}
	hsToken, err := NewToken()
	if err != nil {
		return nil, err
	}
	rateLimited := false
	domain := regexp.QuoteMeta(cfg.Homeserver.Domain)
	reg := &mauappservice.Registration{
		ID:              cfg.AppService.ID,
		URL:             cfg.AppService.Address,
		AppToken:        asToken,
		ServerToken:     hsToken,
		SenderLocalpart: cfg.AppService.BotUsername,
		RateLimited:     &rateLimited,
		Namespaces: mauappservice.Namespaces{UserIDs: mauappservice.NamespaceList{
			{Regex: "^@" + regexp.QuoteMeta(cfg.AppService.BotUsername) + ":" + domain + "$", Exclusive: true},
			{Regex: "^@" + regexp.QuoteMeta(cfg.AppService.UserPrefix) + ".*:" + domain + "$", Exclusive: true},
		}},
		// Synapse before 1.156 reads only the unstable key (DESIGN 7).
		EphemeralEvents:     true,
		SoruEphemeralEvents: true,
		MSC3202:             true,
		MSC4190:             true,
	}
	return reg, nil
}
