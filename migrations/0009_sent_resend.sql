-- Package groups: a message of ours sent in an epoch that our device then
-- withdrew (its commit refused by the room, epochs.Member.Withdraw)
-- reached no one else, and is sent again in the current epoch. The copy's
-- row names the event it re-sends, so that its echo is not delivered a
-- second time to our puppets, which had the original.
ALTER TABLE dmls_sent ADD COLUMN resend_of text;
