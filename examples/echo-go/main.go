// Command echo-go is an example bot of the mls-appservice bot API in Go,
// using package botapi/client: it makes one puppet, accepts the rooms it
// is invited to, prints every message its puppet receives, and answers
// each one that is not itself an echo with "echo: <body>".
//
//	MLS_BOTAPI_URL=http://localhost:29341 MLS_BOT_TOKEN=mlsbot_... go run ./examples/echo-go -name echo-go
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mls-appservice/mls-appservice/botapi/client"
)

func main() {
	name := flag.String("name", "echo-go", "the puppet's name")
	flag.Parse()
	c := client.New(os.Getenv("MLS_BOTAPI_URL"), os.Getenv("MLS_BOT_TOKEN"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, *name); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c *client.Client, name string) error {
	me, err := c.CreatePuppet(ctx, client.CreatePuppet{Name: name, DisplayName: "Echo (Go)"})
	if err != nil {
		return err
	}
	// The whole log ("0"): nothing that reached the puppet before the
	// stream opened is missed. A real bot would store the last id it
	// handled and pass it here after a restart.
	fmt.Printf("puppet: %s\n", me.UserID)
	return c.Listen(ctx, "0", func(ev client.Event) error {
		switch {
		case ev.Kind == "membership" && ev.Type == "m.room.member":
			var m struct {
				Membership string `json:"membership"`
			}
			_ = json.Unmarshal(ev.Content, &m)
			if m.Membership == "invite" && ev.Sender != me.UserID {
				// The service may accept same-homeserver invitations by
				// itself (groups.autojoin); joining again is harmless.
				if err := c.Join(ctx, me.UserID, ev.RoomID); err != nil {
					log.Printf("join %s: %v", ev.RoomID, err)
				}
			}
		case ev.Kind == "message" && ev.Type == "m.room.message" && ev.Sender != me.UserID:
			var msg struct {
				Body string `json:"body"`
			}
			_ = json.Unmarshal(ev.Content, &msg)
			fmt.Printf("message from %s in %s: %s\n", ev.Sender, ev.RoomID, msg.Body)
			if strings.HasPrefix(msg.Body, "echo: ") {
				return nil
			}
			// The event id as Idempotency-Key: a retry, or this bot seeing
			// the event again after a restart, never echoes twice.
			for attempt := 0; ; attempt++ {
				_, err := c.Send(ctx, me.UserID, ev.RoomID, "m.room.message",
					map[string]string{"msgtype": "m.text", "body": "echo: " + msg.Body}, "echo-"+ev.EventID)
				var apiErr *client.Error
				if !errors.As(err, &apiErr) || apiErr.Code != "not_in_group" || attempt == 30 {
					return err
				}
				// Our device's Welcome has not arrived yet.
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Second):
				}
			}
		}
		return nil
	}, me.UserID)
}
