package bots

import (
	"context"
	"errors"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
)

func open(t *testing.T) (*Registry, *database.DB) {
	t.Helper()
	db := testdb.Open(t, 4)
	return New(db), db
}

func TestBotTokens(t *testing.T) {
	r, db := open(t)
	ctx := context.Background()
	token, err := r.Add(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "mlsbot_") {
		t.Fatalf("token %q", token)
	}
	if name, err := r.Authenticate(ctx, token); err != nil || name != "echo" {
		t.Fatalf("authenticate: %q %v", name, err)
	}
	// The token is not stored, only its hash.
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM bot WHERE position($1::bytea IN token_hash) > 0 OR token_hash = $1::bytea`,
		[]byte(token)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("token stored in the clear (%d, %v)", n, err)
	}
	if _, err := r.Add(ctx, "echo"); !errors.Is(err, ErrBotExists) {
		t.Fatalf("second add: %v", err)
	}
	for _, bad := range []string{"", "Echo", "-x", strings.Repeat("a", 65), "a b"} {
		if _, err := r.Add(ctx, bad); !errors.Is(err, ErrBadName) {
			t.Errorf("add %q: %v", bad, err)
		}
	}
	// Wrong secret, wrong id, malformed, other kind: all unauthorized.
	wrongSecret := token[:len(token)-2] + "AA"
	if wrongSecret == token {
		wrongSecret = token[:len(token)-2] + "BB"
	}
	wrongID := "mlsbot_0000000000000000" + token[len("mlsbot_")+16:]
	for _, bad := range []string{wrongSecret, wrongID, "", "mlsbot_", "mlsbot_zz_zz", strings.Replace(token, "mlsbot_", "mlsat_", 1)} {
		if _, err := r.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("authenticate %q: %v", bad, err)
		}
	}
	if err := r.Revoke(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(ctx, token); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("revoked token accepted: %v", err)
	}
	if err := r.Revoke(ctx, "nobody"); !errors.Is(err, ErrNoBot) {
		t.Fatalf("revoke unknown: %v", err)
	}
	list, err := r.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "echo" || list[0].RevokedAt.IsZero() {
		t.Fatalf("list %+v %v", list, err)
	}
}

func TestOwnershipAndAccessTokens(t *testing.T) {
	r, db := open(t)
	ctx := context.Background()
	for _, b := range []string{"a", "b"} {
		if _, err := r.Add(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	pa := id.UserID("@mls_pa:hs")
	if err := r.Claim(ctx, "a", pa); err != nil {
		t.Fatal(err)
	}
	if err := r.Claim(ctx, "a", pa); err != nil {
		t.Fatalf("claim again: %v", err)
	}
	if err := r.Claim(ctx, "b", pa); !errors.Is(err, ErrOtherBot) {
		t.Fatalf("b claims a's puppet: %v", err)
	}
	if err := r.Check(ctx, "b", pa); !errors.Is(err, ErrOtherBot) {
		t.Fatalf("b checks a's puppet: %v", err)
	}
	if err := r.Check(ctx, "a", "@mls_nobody:hs"); !errors.Is(err, ErrNoPuppet) {
		t.Fatalf("unknown puppet: %v", err)
	}
	if err := r.Claim(ctx, "nobot", "@mls_x:hs"); !errors.Is(err, ErrNoBot) {
		t.Fatalf("claim by unknown bot: %v", err)
	}
	// A puppet the service made outside any bot cannot be claimed.
	if err := database.SavePuppet(ctx, db, "@mls_operator:hs"); err != nil {
		t.Fatal(err)
	}
	if err := r.Claim(ctx, "a", "@mls_operator:hs"); !errors.Is(err, ErrOtherBot) {
		t.Fatalf("claim of the service's puppet: %v", err)
	}
	if owner, err := r.Owner(ctx, pa); err != nil || owner != "a" {
		t.Fatalf("owner %q %v", owner, err)
	}

	tok, err := r.IssueAccessToken(ctx, "a", pa, "DEV1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.IssueAccessToken(ctx, "b", pa, "DEV1"); !errors.Is(err, ErrOtherBot) {
		t.Fatalf("b issues a token for a's puppet: %v", err)
	}
	got, err := r.AuthenticateAccess(ctx, tok)
	if err != nil || got != (AccessToken{Bot: "a", UserID: pa, DeviceID: "DEV1"}) {
		t.Fatalf("access %+v %v", got, err)
	}
	if _, err := r.Authenticate(ctx, tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("an access token works as a bot token")
	}
	if err := r.RevokeAccessToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AuthenticateAccess(ctx, tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("revoked access token: %v", err)
	}
	tok2, _ := r.IssueAccessToken(ctx, "a", pa, "DEV2")
	if err := r.RevokeDeviceTokens(ctx, pa, "DEV2"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AuthenticateAccess(ctx, tok2); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("token of a removed device accepted")
	}
	tok3, _ := r.IssueAccessToken(ctx, "a", pa, "DEV3")
	if err := r.Delete(ctx, "a", pa); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AuthenticateAccess(ctx, tok3); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("token of a deleted puppet accepted")
	}
	if err := r.Check(ctx, "a", pa); !errors.Is(err, ErrNoPuppet) {
		t.Fatalf("deleted puppet: %v", err)
	}
	if err := r.Claim(ctx, "b", pa); !errors.Is(err, ErrOtherBot) {
		t.Fatal("a deleted puppet went to another bot")
	}
	if err := r.Claim(ctx, "a", pa); err != nil || r.Check(ctx, "a", pa) != nil {
		t.Fatalf("re-create: %v", err)
	}
	tok4, _ := r.IssueAccessToken(ctx, "a", pa, "DEV4")
	if err := r.Revoke(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AuthenticateAccess(ctx, tok4); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("token of a revoked bot accepted")
	}
	ps, err := r.Puppets(ctx, "a")
	if err != nil || len(ps) != 1 || ps[0] != pa {
		t.Fatalf("puppets %v %v", ps, err)
	}
}

func FuzzParseToken(f *testing.F) {
	tok, _, _, _ := newToken(botPrefix)
	f.Add(tok)
	f.Add("mlsbot_0011223344556677_")
	f.Add("mlsat_zz")
	f.Fuzz(func(t *testing.T, s string) {
		idb, hash, ok := parseToken(botPrefix, s)
		if ok && (len(idb) != idBytes || len(hash) != 32) {
			t.Fatalf("accepted %q with id %x hash %x", s, idb, hash)
		}
	})
}
