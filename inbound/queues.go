package inbound

import "maunium.net/go/mautrix/id"

// Kinds of work items, as stored in work_item.kind.
const (
	KindRoomEvent  = "room_event"
	KindEphemeral  = "ephemeral"
	KindToDevice   = "to_device"
	KindKeyCounts  = "key_counts"
	KindDeviceList = "device_list"
)

// Queue names. A room's events are applied in the homeserver's order on
// the room's queue; a device's to-device messages and key counts on the
// device's queue; a user's device-list changes on the user's queue.
// Ephemeral events go with their room, or on one queue if they have none
// (presence).

// RoomQueue is the inbound queue of a room.
func RoomQueue(room id.RoomID) string { return "in:room:" + string(room) }

// DeviceQueue is the inbound queue of one of our devices.
func DeviceQueue(user id.UserID, device id.DeviceID) string {
	return "in:device:" + string(user) + "|" + string(device)
}

// UserQueue is the inbound queue of a user's device-list changes.
func UserQueue(user id.UserID) string { return "in:user:" + string(user) }

// EphemeralQueue orders ephemeral events that name no room.
const EphemeralQueue = "in:ephemeral"
