package groups

import (
	"context"
	"fmt"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// ownCommitEcho reports whether a room event is the homeserver's echo of
// a commit one of our devices made: its claimed new epoch is one that
// dmls_commit_event records as ours. Our commit was applied when it was
// made and its event id reaches the graph through the outbox hook, so the
// echo changes nothing, and skipping it before the room is loaded keeps
// a busy committer's queue from paying a full load, membership view and
// refusal for each of its own commits (in a 480-member room that was
// about 0.7 s each, and a room forming by one join per commit echoes
// every one of them). A content that merely copies our commit's fields
// is skipped too: applied, it would be a duplicate.
func (s *Service) ownCommitEcho(ctx context.Context, q database.Querier, ev inbound.RoomEvent) (bool, error) {
	e, err := ParseEncrypted(ev.Content)
	if err != nil || e.Commit == nil || !s.cfg.Puppets.Owns(ev.Sender) {
		return false, nil
	}
	var ours bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM dmls_commit_event WHERE room_id = $1 AND epoch_id = $2)`,
		ev.RoomID, []byte(e.Commit.Next)).Scan(&ours); err != nil {
		return false, fmt.Errorf("%s: own commit echo of %s: %w", ev.RoomID, ev.EventID, err)
	}
	return ours, nil
}
