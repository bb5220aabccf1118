package groups

import (
	"github.com/mls-appservice/mls-appservice/inbound"
)

// ownCommitEcho reports whether a room event is the homeserver's echo of
// a commit our service made: a commit sent by one of our puppets. The
// namespace is exclusive, so only this service (any of its instances,
// which share the database) sends as our puppets, and it applies each of
// its commits in the transaction that puts it in the outbox; the commit's
// event id reaches the graph through the outbox hook. The echo changes
// nothing, so it is skipped before the room is loaded: a busy committer's
// queue would otherwise pay a full load, membership view and refusal for
// each of its own commits (in a 480-member room that was 0.5 to 1 s each,
// and once retention had dropped the parent, each ended as a refusal
// anyway).
func (s *Service) ownCommitEcho(ev inbound.RoomEvent) bool {
	if !s.cfg.Puppets.Owns(ev.Sender) || ev.Sender == s.cfg.Puppets.BotID() {
		return false
	}
	e, err := ParseEncrypted(ev.Content)
	if err != nil || e.Commit == nil || e.Commit.Sender.UserID != string(ev.Sender) {
		return false
	}
	s.metrics.OwnCommitEchoes.Inc()
	return true
}
