package bots

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"
)

// AccessToken is what an access token stands for: one device of one
// puppet, on behalf of its bot.
type AccessToken struct {
	Bot      string
	UserID   id.UserID
	DeviceID id.DeviceID
}

// IssueAccessToken returns a new access token for the bot's puppet's
// device (for the client-server façade). It is shown once and stored
// only as a hash. The caller checks that the device exists.
func (r *Registry) IssueAccessToken(ctx context.Context, bot string, puppet id.UserID, device id.DeviceID) (string, error) {
	if err := r.Check(ctx, bot, puppet); err != nil {
		return "", err
	}
	if device == "" {
		return "", errors.New("issue access token: empty device id")
	}
	token, tokenID, hash, err := newToken(accessPrefix)
	if err != nil {
		return "", err
	}
	if _, err := r.db.Exec(ctx, `INSERT INTO bot_access_token (token_id, token_hash, bot, user_id, device_id)
		VALUES ($1, $2, $3, $4, $5)`, tokenID, hash, bot, puppet, device); err != nil {
		return "", fmt.Errorf("issue access token for %s/%s: %w", puppet, device, err)
	}
	return token, nil
}

// AuthenticateAccess returns what an access token stands for. Tokens of
// revoked bots, deleted puppets and revoked tokens are refused.
func (r *Registry) AuthenticateAccess(ctx context.Context, token string) (AccessToken, error) {
	tokenID, hash, ok := parseToken(accessPrefix, token)
	if !ok {
		return AccessToken{}, ErrUnauthorized
	}
	var a AccessToken
	var stored []byte
	var revoked, botRevoked, deleted *time.Time
	err := r.db.QueryRow(ctx, `SELECT t.bot, t.user_id, t.device_id, t.token_hash, t.revoked_at, b.revoked_at, p.deleted_at
		FROM bot_access_token t JOIN bot b ON b.name = t.bot JOIN bot_puppet p ON p.user_id = t.user_id
		WHERE t.token_id = $1`, tokenID).Scan(&a.Bot, &a.UserID, &a.DeviceID, &stored, &revoked, &botRevoked, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		sameHash(hash, make([]byte, sha256.Size))
		return AccessToken{}, ErrUnauthorized
	}
	if err != nil {
		return AccessToken{}, fmt.Errorf("authenticate access token: %w", err)
	}
	if !sameHash(hash, stored) || revoked != nil || botRevoked != nil || deleted != nil {
		return AccessToken{}, ErrUnauthorized
	}
	return a, nil
}

// RevokeAccessToken revokes one access token (a logout). Revoking a token
// that is not valid is not an error.
func (r *Registry) RevokeAccessToken(ctx context.Context, token string) error {
	tokenID, hash, ok := parseToken(accessPrefix, token)
	if !ok {
		return nil
	}
	var stored []byte
	err := r.db.QueryRow(ctx, `SELECT token_hash FROM bot_access_token WHERE token_id = $1`, tokenID).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("revoke access token: %w", err)
	}
	if !sameHash(hash, stored) {
		return nil
	}
	if _, err := r.db.Exec(ctx, `UPDATE bot_access_token SET revoked_at = coalesce(revoked_at, now()) WHERE token_id = $1`, tokenID); err != nil {
		return fmt.Errorf("revoke access token: %w", err)
	}
	return nil
}

// RevokeDeviceTokens revokes every access token of a puppet's device (the
// device was removed).
func (r *Registry) RevokeDeviceTokens(ctx context.Context, puppet id.UserID, device id.DeviceID) error {
	if _, err := r.db.Exec(ctx, `UPDATE bot_access_token SET revoked_at = now()
		WHERE user_id = $1 AND device_id = $2 AND revoked_at IS NULL`, puppet, device); err != nil {
		return fmt.Errorf("revoke tokens of %s/%s: %w", puppet, device, err)
	}
	return nil
}
