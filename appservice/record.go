package appservice

import (
	"context"
	"slices"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Recorder is the handler that records what arrived: every room,
// ephemeral and to-device event as received, membership per event and
// the latest per user, device-list changes, and key counts. groups reads
// membership from it (the membership authority, DESIGN 5); operators and
// tests read the rest.
type Recorder struct{}

var (
	_ inbound.RoomRunHandler    = Recorder{}
	_ inbound.EphemeralHandler  = Recorder{}
	_ inbound.ToDeviceHandler   = Recorder{}
	_ inbound.DeviceListHandler = Recorder{}
	_ inbound.KeyCountHandler   = Recorder{}
)

// Handlers returns a Handlers with the recorder in every slot.
func (r Recorder) Handlers() inbound.Handlers {
	return inbound.Handlers{Room: []inbound.RoomHandler{r}, Ephemeral: []inbound.EphemeralHandler{r},
		ToDevice: []inbound.ToDeviceHandler{r}, DeviceList: []inbound.DeviceListHandler{r},
		KeyCounts: []inbound.KeyCountHandler{r}, Timers: map[string]inbound.TimerHandler{}}
}

func (Recorder) RoomEvent(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	err := database.RecordEvent(ctx, w.Q, w.Item.TxnSeq, roomRecord(ev))
	if err != nil {
		return err
	}
	if ev.Type == "m.room.member" {
		return database.SetMembership(ctx, w.Q, database.MemberEvent{RoomID: string(ev.RoomID), EventID: string(ev.EventID),
			UserID: *ev.StateKey, Membership: ev.Membership})
	}
	return nil
}

// Runnable lets every event but a membership change into a run: groups
// reads the membership the recorder writes.
func (Recorder) Runnable(ev inbound.RoomEvent) bool { return ev.Type != "m.room.member" }

// RoomEvents records a run of events in one statement.
func (Recorder) RoomEvents(ctx context.Context, w *inbound.Work, items []database.Item, evs []inbound.RoomEvent) error {
	txns := make([]int64, len(items))
	recs := make([]database.InboundEvent, len(evs))
	for i, ev := range evs {
		txns[i] = items[i].TxnSeq
		recs[i] = roomRecord(ev)
	}
	return database.RecordEvents(ctx, w.Q, txns, recs)
}

func roomRecord(ev inbound.RoomEvent) database.InboundEvent {
	return database.InboundEvent{Kind: "room", Type: ev.Type, RoomID: string(ev.RoomID), EventID: string(ev.EventID),
		Sender: string(ev.Sender), Raw: ev.Raw}
}

func (Recorder) Ephemeral(ctx context.Context, w *inbound.Work, ev inbound.EphemeralEvent) error {
	return database.RecordEvent(ctx, w.Q, w.Item.TxnSeq, database.InboundEvent{Kind: "ephemeral", Type: ev.Type,
		RoomID: string(ev.RoomID), Raw: ev.Raw})
}

func (Recorder) ToDevice(ctx context.Context, w *inbound.Work, ev inbound.ToDeviceEvent) error {
	return database.RecordEvent(ctx, w.Q, w.Item.TxnSeq, database.InboundEvent{Kind: "to_device", Type: ev.Type,
		Sender: string(ev.Sender), ToUserID: string(ev.ToUserID), ToDeviceID: string(ev.ToDeviceID), Raw: ev.Raw})
}

func (Recorder) DeviceList(ctx context.Context, w *inbound.Work, c inbound.DeviceListChange) error {
	change := "changed"
	if c.Left {
		change = "left"
	}
	return database.RecordDeviceListChange(ctx, w.Q, w.Item.TxnSeq, string(c.UserID), change)
}

func (Recorder) KeyCounts(ctx context.Context, w *inbound.Work, k inbound.KeyCounts) error {
	for _, alg := range sortedKeys(k.OneTimeKeys) {
		if err := database.SetKeyCount(ctx, w.Q, w.Item.TxnSeq, string(k.UserID), string(k.DeviceID), alg, k.OneTimeKeys[alg]); err != nil {
			return err
		}
	}
	if k.HasFallback {
		return database.SetUnusedFallbackKeyTypes(ctx, w.Q, w.Item.TxnSeq, string(k.UserID), string(k.DeviceID), k.UnusedFallback)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
