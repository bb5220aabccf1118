package groups

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
)

// Additions for the bot API (package botapi), which names puppets before
// it makes them (to record which bot owns one) and answers "which rooms
// is this puppet in" without loading any room's MLS state.

// PuppetID returns the user ID of the puppet that CreatePuppet makes
// for name.
func (s *Service) PuppetID(name string) id.UserID { return s.cfg.Puppets.PuppetID(name) }

// Membership is a user's latest membership in a room, as the room's
// m.room.member events told us.
type Membership struct {
	RoomID     id.RoomID `json:"room_id"`
	Membership string    `json:"membership"`
	// DMLS says whether the room is a DMLS room of this service.
	DMLS bool `json:"dmls"`
}

// membershipsSQL lists a user's rooms, found by the index room_member_user.
const membershipsSQL = `SELECT m.room_id, m.membership, r.room_id IS NOT NULL
	FROM room_member m LEFT JOIN dmls_room r USING (room_id) WHERE m.user_id = $1 ORDER BY m.room_id`

// Memberships returns user's membership in every room we saw it in,
// ordered by room.
func (s *Service) Memberships(ctx context.Context, user id.UserID) ([]Membership, error) {
	rows, err := s.cfg.DB.Query(ctx, membershipsSQL, user)
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", user, err)
	}
	var out []Membership
	var m Membership
	if _, err := pgx.ForEachRow(rows, []any{&m.RoomID, &m.Membership, &m.DMLS}, func() error {
		out = append(out, m)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", user, err)
	}
	return out, nil
}

// MembershipIn returns user's latest membership in room ("" if we saw
// none) and whether room is a DMLS room of this service.
func (s *Service) MembershipIn(ctx context.Context, room id.RoomID, user id.UserID) (string, bool, error) {
	var membership string
	var dmls bool
	err := s.cfg.DB.QueryRow(ctx, `SELECT coalesce((SELECT membership FROM room_member WHERE room_id = $1 AND user_id = $2), ''),
		EXISTS (SELECT 1 FROM dmls_room WHERE room_id = $1)`, room, user).Scan(&membership, &dmls)
	if err != nil {
		return "", false, fmt.Errorf("membership of %s in %s: %w", user, room, err)
	}
	return membership, dmls, nil
}

// LogRef names one entry of a puppet's log, without its content.
type LogRef struct {
	Puppet      id.UserID
	Seq         int64
	DeliveredAt time.Time
}

// LogAfter returns up to limit entries (without content) of the logs of
// several puppets, each after its position in after, for a reader that
// merges them into one log of its own (the bot API). Each puppet's
// entries come in Seq order and form a prefix of what follows its
// position, so that the reader may record the last Seq it took of each
// as its new position; entries of different puppets are interleaved by
// delivery time. Because Seq is given under the puppet's row lock and
// in commit order, what LogAfter sees after a position never has a gap
// that a later commit fills. q may be the reader's own transaction.
func LogAfter(ctx context.Context, q database.Querier, after map[id.UserID]int64, limit int) ([]LogRef, error) {
	if len(after) == 0 {
		return nil, nil
	}
	users := make([]string, 0, len(after))
	seqs := make([]int64, 0, len(after))
	for u, s := range after {
		users = append(users, string(u))
		seqs = append(seqs, s)
	}
	// A log's entries are its own rows and its spans' numbers (logread.go),
	// a span's each at its room entry's time (a span grows across
	// transactions: roomlog.go). The spans after a number are those that
	// begin after it and the one before them.
	rows, err := q.Query(ctx, `WITH c AS (SELECT c.user_id, c.log_no, f.after
			FROM unnest($1::text[], $2::bigint[]) AS f (user_id, after)
			JOIN delivery_cursor c ON c.user_id = f.user_id AND c.last_seq > f.after),
		d AS (SELECT c.user_id, c.log_no, d.seq, d.created_at FROM c JOIN delivery d ON d.log_no = c.log_no AND d.seq > c.after
			UNION ALL
			SELECT c.user_id, c.log_no, g.seq, coalesce(e.created_at, s.created_at) FROM c
			CROSS JOIN LATERAL ((SELECT * FROM delivery_span s WHERE s.log_no = c.log_no AND s.first_seq <= c.after
					ORDER BY s.first_seq DESC LIMIT 1)
				UNION ALL (SELECT * FROM delivery_span s WHERE s.log_no = c.log_no AND s.first_seq > c.after)) s
			CROSS JOIN LATERAL generate_series(greatest(s.first_seq, c.after + 1), s.first_seq + s.n - 1) AS g (seq)
			LEFT JOIN room_entry e ON e.room_no = s.room_no AND e.no = s.first_no + g.seq - s.first_seq)
		SELECT user_id, seq, created_at, max(created_at) OVER (PARTITION BY log_no ORDER BY seq) AS t
		FROM d ORDER BY t, user_id, seq LIMIT $3`, users, seqs, limit)
	if err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	var out []LogRef
	var r LogRef
	var t time.Time
	if _, err := pgx.ForEachRow(rows, []any{&r.Puppet, &r.Seq, &r.DeliveredAt, &t}, func() error {
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	return out, nil
}
