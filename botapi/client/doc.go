// Package client is a small Go client of the mls-appservice bot API
// (package botapi, docs/bots.md): puppets, rooms and messages, the event
// stream with resume, and verification of signed webhooks. It depends on
// the standard library only and on nothing else of the service, so that
// a bot can import it without the service's dependencies.
//
//	c := client.New("http://localhost:29341", os.Getenv("MLS_BOT_TOKEN"))
//	p, _ := c.CreatePuppet(ctx, client.CreatePuppet{Name: "echo"})
//	err := c.Listen(ctx, "", func(ev client.Event) error { ... })
package client
