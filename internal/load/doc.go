// Package load measures what the whole service carries: it drives a
// running mls-appservice and reports sustained messages per second,
// end-to-end latency, memory, CPU and PostgreSQL bytes per member.
//
// Two modes:
//
//   - Synapse: puppets and rooms are created through the bot API, the
//     service's real Synapse and PostgreSQL carry everything, messages are
//     sent through the bot API at a set rate and timed from the send
//     request to their arrival on the bot's event stream, for every other
//     member of the room. Membership churn (a member leaves and is invited
//     back) runs alongside if asked, and commits per second are read from
//     the service's metrics.
//   - Intake: homeserver transactions, as Synapse would send them, carrying
//     messages that a peer group encrypted beforehand, are put straight
//     into the service's intake (PUT /_matrix/app/v1/transactions) as fast
//     as it takes them; a message counts as delivered once its delivery
//     rows are committed in PostgreSQL. This measures the service's own
//     capacity (intake, splitter, decryption, delivery) without Synapse's.
//
// The service's peak RSS (VmHWM) and CPU time come from /proc of its
// process; PostgreSQL sizes from pg_total_relation_size over the tables
// that hold room state shared by all our devices (per member) and state
// kept per device of ours (per own device).
package load
