package group

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Protect encrypts an application message from us with the given
// authenticated data, as a PrivateMessage (§6.3). It consumes the next
// generation of our application ratchet in the shared secret tree.
func (g *Group) Protect(plaintext, authData []byte) ([]byte, error) {
	if err := g.requireMember(); err != nil {
		return nil, err
	}
	c := g.content(message.ContentApplication, authData)
	c.ApplicationData = plaintext
	m, _, err := g.frame(&c, message.WireFormatPrivateMessage)
	if err != nil {
		return nil, fmt.Errorf("protect: %w", err)
	}
	return codec.Marshal(m), nil
}
