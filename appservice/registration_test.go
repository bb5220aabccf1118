package appservice

import (
	"regexp"
	"testing"

	"github.com/mls-appservice/mls-appservice/config"
)

func TestNewRegistration(t *testing.T) {
	cfg := &config.Config{
		Homeserver: config.Homeserver{Address: "http://hs:8008", Domain: "my.hs"},
		AppService: config.AppService{Address: "http://as:29340", ID: "mls", BotUsername: "mlsbot", UserPrefix: "mls_"},
	}
	reg, err := NewRegistration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	token := regexp.MustCompile(`^[A-Za-z0-9]{64}$`)
	if !token.MatchString(reg.AppToken) || !token.MatchString(reg.ServerToken) || reg.AppToken == reg.ServerToken {
		t.Errorf("tokens %q %q are not two different random 64-character tokens", reg.AppToken, reg.ServerToken)
	}
	if reg.ID != "mls" || reg.URL != "http://as:29340" || reg.SenderLocalpart != "mlsbot" ||
		reg.RateLimited == nil || *reg.RateLimited {
		t.Errorf("registration %+v", reg)
	}
	if !reg.EphemeralEvents || !reg.SoruEphemeralEvents || !reg.MSC3202 || !reg.MSC4190 {
		t.Errorf("extensions not all enabled: %+v", reg)
	}
	users := reg.Namespaces.UserIDs
	if len(users) == 0 {
		t.Fatal("no user namespace")
	}
	for _, ns := range users {
		if !ns.Exclusive {
			t.Errorf("namespace %s is not exclusive", ns.Regex)
		}
	}
	matches := func(user string) bool {
		for _, ns := range users {
			if regexp.MustCompile(ns.Regex).MatchString(user) {
				return true
			}
		}
		return false
	}
	for user, want := range map[string]bool{
		"@mlsbot:my.hs": true, "@mls_alice:my.hs": true, "@alice:my.hs": false,
		"@mls_alice:myxhs": false, "@mls_alice:other.hs": false, "@mlsbot2:my.hs": false,
	} {
		if matches(user) != want {
			t.Errorf("namespace matches %s = %v, want %v", user, !want, want)
		}
	}
	yaml, err := reg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"receive_ephemeral: true", "de.sorunome.msc2409.push_ephemeral: true",
		"org.matrix.msc3202: true", "io.element.msc4190: true", "rate_limited: false", "exclusive: true"} {
		if !regexp.MustCompile(regexp.QuoteMeta(key)).MatchString(yaml) {
			t.Errorf("registration YAML lacks %q:\n%s", key, yaml)
		}
	}
	again, _ := NewRegistration(cfg)
	if again.AppToken == reg.AppToken {
		t.Error("tokens repeat between registrations")
	}
}
