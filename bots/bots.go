package bots

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
)

// Errors of the registry. Callers map them to answers.
var (
	// ErrUnauthorized: the token is malformed, unknown or revoked.
	ErrUnauthorized = errors.New("unknown or revoked token")
	// ErrBotExists: a bot of that name was registered before (revoked
	// bots keep their names).
	ErrBotExists = errors.New("a bot of that name exists")
	// ErrNoBot: no bot of that name.
	ErrNoBot = errors.New("no such bot")
	// ErrBadName: not a valid bot name.
	ErrBadName = errors.New("a bot name is 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
	// ErrOtherBot: the puppet belongs to another bot, or to the service
	// itself (made outside any bot).
	ErrOtherBot = errors.New("puppet belongs to another bot")
	// ErrNoPuppet: the bot has no such puppet (never claimed, or deleted).
	ErrNoPuppet = errors.New("no such puppet of this bot")
)

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Bot is a registered bot.
type Bot struct {
	Name      string
	CreatedAt time.Time
	// RevokedAt is when the bot was revoked (zero if it is not).
	RevokedAt time.Time
	// Puppets counts the puppets it owns (deleted ones included).
	Puppets int
}

// Registry is the bots, their tokens and their puppets, in the service's
// database.
type Registry struct {
	db *database.DB
}

// New returns the registry over db (migrated).
func New(db *database.DB) *Registry { return &Registry{db: db} }

// Token kinds: the prefix of each kind of token.
const (
	botPrefix    = "mlsbot_"
	accessPrefix = "mlsat_"
	idBytes      = 8
	secretBytes  = 32
)

// newToken returns a token of the kind prefix, its id and the hash of its
// secret.
func newToken(prefix string) (token string, tokenID, hash []byte, err error) {
	buf := make([]byte, idBytes+secretBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", nil, nil, fmt.Errorf("generate token: %w", err)
	}
	tokenID, secret := buf[:idBytes], buf[idBytes:]
	sum := sha256.Sum256(secret)
	return prefix + hex.EncodeToString(tokenID) + "_" + base64.RawURLEncoding.EncodeToString(secret), tokenID, sum[:], nil
}

// parseToken splits a token of the kind prefix into its id and the hash
// of its secret; ok is false for anything else.
func parseToken(prefix, token string) (tokenID, hash []byte, ok bool) {
	rest, found := strings.CutPrefix(token, prefix)
	if !found {
		return nil, nil, false
	}
	idPart, secretPart, found := strings.Cut(rest, "_")
	if !found || len(idPart) != 2*idBytes {
		return nil, nil, false
	}
	tokenID, err := hex.DecodeString(idPart)
	if err != nil {
		return nil, nil, false
	}
	secret, err := base64.RawURLEncoding.DecodeString(secretPart)
	if err != nil || len(secret) != secretBytes {
		return nil, nil, false
	}
	sum := sha256.Sum256(secret)
	return tokenID, sum[:], true
}

// sameHash compares two hashes in constant time.
func sameHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Add registers a bot and returns its token, which is shown once and
// stored only as a hash.
func (r *Registry) Add(ctx context.Context, name string) (string, error) {
	if !namePattern.MatchString(name) {
		return "", fmt.Errorf("bot %q: %w", name, ErrBadName)
	}
	token, tokenID, hash, err := newToken(botPrefix)
	if err != nil {
		return "", err
	}
	_, err = r.db.Exec(ctx, `INSERT INTO bot (name, token_id, token_hash) VALUES ($1, $2, $3)`, name, tokenID, hash)
	if database.IsUniqueViolation(err) {
		return "", fmt.Errorf("bot %q: %w", name, ErrBotExists)
	}
	if err != nil {
		return "", fmt.Errorf("add bot %q: %w", name, err)
	}
	return token, nil
}

// List returns every bot, by name.
func (r *Registry) List(ctx context.Context) ([]Bot, error) {
	rows, err := r.db.Query(ctx, `SELECT b.name, b.created_at, b.revoked_at,
		(SELECT count(*) FROM bot_puppet p WHERE p.bot = b.name) FROM bot b ORDER BY b.name`)
	if err != nil {
		return nil, fmt.Errorf("list bots: %w", err)
	}
	var out []Bot
	var b Bot
	var revoked *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&b.Name, &b.CreatedAt, &revoked, &b.Puppets}, func() error {
		b.RevokedAt = time.Time{}
		if revoked != nil {
			b.RevokedAt = *revoked
		}
		out = append(out, b)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list bots: %w", err)
	}
	return out, nil
}

// Revoke revokes a bot: its token and every access token of its puppets
// stop working at once. The bot keeps its name and its puppets.
func (r *Registry) Revoke(ctx context.Context, name string) error {
	tag, err := r.db.Exec(ctx, `UPDATE bot SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("revoke bot %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("bot %q: %w", name, ErrNoBot)
	}
	return nil
}

// Authenticate returns the name of the bot whose token this is.
func (r *Registry) Authenticate(ctx context.Context, token string) (string, error) {
	tokenID, hash, ok := parseToken(botPrefix, token)
	if !ok {
		return "", ErrUnauthorized
	}
	var name string
	var stored []byte
	var revoked *time.Time
	err := r.db.QueryRow(ctx, `SELECT name, token_hash, revoked_at FROM bot WHERE token_id = $1`, tokenID).
		Scan(&name, &stored, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		// Compare anyway, so that an unknown id takes as long as a wrong secret.
		sameHash(hash, make([]byte, sha256.Size))
		return "", ErrUnauthorized
	}
	if err != nil {
		return "", fmt.Errorf("authenticate bot: %w", err)
	}
	if !sameHash(hash, stored) || revoked != nil {
		return "", ErrUnauthorized
	}
	return name, nil
}

// Claim makes puppet the bot's: before the bot first creates it, and
// again whenever it creates it again (which undoes a deletion). It fails
// with ErrOtherBot if another bot owns the puppet, or if isPuppet says
// the service made it outside any bot.
func (r *Registry) Claim(ctx context.Context, bot string, puppet id.UserID) error {
	return r.db.InTxRetry(ctx, func(tx pgx.Tx) error {
		var owner string
		err := tx.QueryRow(ctx, `SELECT bot FROM bot_puppet WHERE user_id = $1 FOR UPDATE`, puppet).Scan(&owner)
		switch {
		case err == nil && owner == bot:
			_, err = tx.Exec(ctx, `UPDATE bot_puppet SET deleted_at = NULL WHERE user_id = $1`, puppet)
			return err
		case err == nil:
			return fmt.Errorf("%s: %w", puppet, ErrOtherBot)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("claim %s: %w", puppet, err)
		}
		made, err := database.IsPuppet(ctx, tx, string(puppet))
		if err != nil {
			return err
		}
		if made {
			return fmt.Errorf("%s exists outside any bot: %w", puppet, ErrOtherBot)
		}
		_, err = tx.Exec(ctx, `INSERT INTO bot_puppet (user_id, bot) VALUES ($1, $2)`, puppet, bot)
		if database.IsUniqueViolation(err) {
			return fmt.Errorf("%s: %w", puppet, ErrOtherBot)
		}
		if isForeignKeyViolation(err) {
			return fmt.Errorf("bot %q: %w", bot, ErrNoBot)
		}
		return err
	})
}

// Check tells whether bot may act as puppet: nil if it owns it,
// ErrOtherBot if another bot (or the service) does, ErrNoPuppet if it is
// nobody's or was deleted.
func (r *Registry) Check(ctx context.Context, bot string, puppet id.UserID) error {
	var owner string
	var deleted *time.Time
	err := r.db.QueryRow(ctx, `SELECT bot, deleted_at FROM bot_puppet WHERE user_id = $1`, puppet).Scan(&owner, &deleted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		made, err := database.IsPuppet(ctx, r.db, string(puppet))
		if err != nil {
			return err
		}
		if made {
			return fmt.Errorf("%s: %w", puppet, ErrOtherBot)
		}
		return fmt.Errorf("%s: %w", puppet, ErrNoPuppet)
	case err != nil:
		return fmt.Errorf("look up owner of %s: %w", puppet, err)
	case owner != bot:
		return fmt.Errorf("%s: %w", puppet, ErrOtherBot)
	case deleted != nil:
		return fmt.Errorf("%s was deleted: %w", puppet, ErrNoPuppet)
	}
	return nil
}

// Owner returns the bot that owns puppet ("" if none does).
func (r *Registry) Owner(ctx context.Context, puppet id.UserID) (string, error) {
	var owner string
	err := r.db.QueryRow(ctx, `SELECT bot FROM bot_puppet WHERE user_id = $1`, puppet).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up owner of %s: %w", puppet, err)
	}
	return owner, nil
}

// Puppets returns the bot's puppets that are not deleted, sorted.
func (r *Registry) Puppets(ctx context.Context, bot string) ([]id.UserID, error) {
	rows, err := r.db.Query(ctx, `SELECT user_id FROM bot_puppet WHERE bot = $1 AND deleted_at IS NULL ORDER BY user_id`, bot)
	if err != nil {
		return nil, fmt.Errorf("list puppets of %q: %w", bot, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[id.UserID])
	if err != nil {
		return nil, fmt.Errorf("list puppets of %q: %w", bot, err)
	}
	return out, nil
}

// Delete marks the bot's puppet deleted and revokes its access tokens.
// The puppet stays the bot's (Claim brings it back).
func (r *Registry) Delete(ctx context.Context, bot string, puppet id.UserID) error {
	return r.db.InTxRetry(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE bot_puppet SET deleted_at = coalesce(deleted_at, now()) WHERE user_id = $1 AND bot = $2`, puppet, bot)
		if err != nil {
			return fmt.Errorf("delete %s: %w", puppet, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s: %w", puppet, ErrNoPuppet)
		}
		_, err = tx.Exec(ctx, `UPDATE bot_access_token SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, puppet)
		return err
	})
}

func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
