package group

// sideChecks runs signature checks beside the work that follows them.
//
// Receiving a commit costs two signature verifications (its framing and
// its UpdatePath's leaf) and one HPKE decryption, each of about the same
// cost, and nothing but the decision to accept the commit depends on the
// signatures. So they run on goroutines of their own while the path is
// decrypted, and the commit is accepted only once wait reports them
// good: on two cores a commit is received in the time of the decryption
// and the work around it rather than of all three. The zero value is
// ready to use; a sideChecks serves one message.
type sideChecks struct {
	results chan error
	n       int
}

// start runs check on its own goroutine.
func (c *sideChecks) start(check func() error) {
	if c.results == nil {
		c.results = make(chan error, 2)
	}
	c.n++
	go func() { c.results <- check() }()
}

// wait returns once every check started has finished: nil if all passed,
// else the first failure reported.
func (c *sideChecks) wait() error {
	var first error
	for ; c.n > 0; c.n-- {
		if err := <-c.results; err != nil && first == nil {
			first = err
		}
	}
	return first
}
