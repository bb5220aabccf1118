// Package bots is the operator's registry of bot programs: who they are,
// how they prove it, and which puppets each one owns. The bot API
// (package botapi) and the client-server façade (package csapi) both
// authenticate through it, so that a bot is one identity whichever way
// it talks to the service.
//
// # Tokens
//
// A bot token (mls-appservice bots add) and a puppet device's access
// token (bots token, or the bot API) have the form
//
//	mlsbot_<id>_<secret>    a bot
//	mlsat_<id>_<secret>     one device of one puppet
//
// where id is 8 random bytes in hex and secret 32 random bytes in
// unpadded base64url. Only id and the SHA-256 of secret are stored: the
// row is found by id, and the hash of the presented secret is compared
// with the stored one in constant time, so neither a database dump nor
// the timing of a lookup reveals a usable token. Tokens carry 256 random
// bits, so a fast hash is enough: there is nothing to guess.
//
// # Ownership
//
// A bot owns the puppets it creates (Claim, before the puppet is made on
// the homeserver) and may act only as them; Check tells whether it may.
// The first claim wins and is kept for good: a deleted puppet, or a
// revoked bot's puppets, are never handed to another bot, because a
// Matrix user's rooms and history go with its name. A puppet that the
// service made outside any bot (by the operator, by a test) cannot be
// claimed either.
//
// The package holds no state of its own beyond the database.
package bots
