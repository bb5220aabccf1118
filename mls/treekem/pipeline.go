package treekem

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// pathWork runs the costly part of Generate on every core, in three steps
// that overlap what the committer must do alone:
//
//  1. the path's key derivations (one scalar multiplication each), shared
//     by the committer and the workers;
//  2. the Encap of every path secret encryption (a fresh ephemeral key and
//     one Diffie-Hellman each: nearly all of an HPKE seal), taken in
//     chunks that share their field inversions. It needs only the
//     recipients' keys: the workers run it while the committer,
//     once the derivations are done, merges the path, signs its leaf and
//     hashes the tree;
//  3. the sealing itself, under the group context with that tree hash,
//     once the committer publishes it (seal) and joins in. A seal waits
//     for its own Encap only, so the last Encaps overlap the first seals.
//
// With one core the committer runs all three in turn. Errors are reported
// for the lowest index, as a sequential loop would.
type pathWork struct {
	derive  []func() error
	encs    []encJob
	derived sync.WaitGroup // counts step 1's jobs
	workers sync.WaitGroup
	ready   chan struct{} // closed when context and secrets are set
	context *suite.SealContext
	secrets [][]byte
	abort   atomic.Bool

	nextDerive, nextEnc, nextSeal atomic.Int64
	// chunk is how many Encaps a worker takes at a time, sharing their
	// field inversions (suite.EncapsulateAll): len(encs)/(4 cores), from
	// 1 to 16. A full tree's path of a dozen takes them one by one, so
	// that the last ones still overlap the first seals; a sparse tree's
	// thousands take 16 at a time.
	chunk               int
	deriveErrs, encErrs []error
}

// encJob is one path secret encryption: to a recipient's public key, of
// the path secret of index secret, into out.
type encJob struct {
	node   treemath.NodeIndex
	to     *suite.HPKEPublicKey
	secret int
	out    *message.HPKECiphertext
	enc    *suite.Encapsulation
	done   chan struct{} // closed once enc (or its error) is set
}

// startPathWork starts the workers on steps 1 and 2.
func startPathWork(derive []func() error, encs []encJob) *pathWork {
	w := &pathWork{
		derive:     derive,
		encs:       encs,
		ready:      make(chan struct{}),
		deriveErrs: make([]error, len(derive)),
		encErrs:    make([]error, len(encs)),
		chunk:      max(1, min(16, len(encs)/(4*runtime.GOMAXPROCS(0)))),
	}
	for k := range encs {
		encs[k].done = make(chan struct{})
	}
	w.derived.Add(len(derive))
	for range min(runtime.GOMAXPROCS(0)-1, len(derive)+len(encs)) {
		w.workers.Go(w.work)
	}
	return w
}

// work takes jobs until every step is done or the work is aborted.
func (w *pathWork) work() {
	w.deriveAll()
	keys := make([]*suite.HPKEPublicKey, 0, w.chunk)
	for !w.abort.Load() {
		end := int(w.nextEnc.Add(int64(w.chunk)))
		first := end - w.chunk
		if first >= len(w.encs) {
			break
		}
		jobs := w.encs[first:min(end, len(w.encs))]
		keys = keys[:0]
		for i := range jobs {
			keys = append(keys, jobs[i].to)
		}
		encs, errs := suite.EncapsulateAll(keys)
		for i := range jobs {
			j := &jobs[i]
			if j.enc = encs[i]; errs[i] != nil {
				w.encErrs[first+i] = fmt.Errorf("encrypt path secret to node %d: %w", j.node, errs[i])
			}
			close(j.done)
		}
	}
	<-w.ready
	for !w.abort.Load() {
		k := int(w.nextSeal.Add(1) - 1)
		if k >= len(w.encs) {
			return
		}
		j := &w.encs[k]
		// Another worker may still be encapsulating it, the last few.
		if <-j.done; w.encErrs[k] != nil {
			continue
		}
		kem, ct, err := j.enc.Seal(w.context, w.secrets[j.secret])
		if err != nil {
			w.encErrs[k] = fmt.Errorf("encrypt path secret to node %d: %w", j.node, err)
			continue
		}
		*j.out = message.HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
	}
}

func (w *pathWork) deriveAll() {
	for {
		k := int(w.nextDerive.Add(1) - 1)
		if k >= len(w.derive) {
			return
		}
		w.deriveErrs[k] = w.derive[k]()
		w.derived.Done()
	}
}

// waitDerived takes part in step 1 and returns once all of it is done.
func (w *pathWork) waitDerived() error {
	w.deriveAll()
	w.derived.Wait()
	return firstError(w.deriveErrs)
}

// seal publishes the sealing context and the path secrets, takes part in
// steps 2 and 3, and returns once every encryption is done.
func (w *pathWork) seal(context *suite.SealContext, secrets [][]byte) error {
	w.context, w.secrets = context, secrets
	close(w.ready)
	w.work()
	w.workers.Wait()
	return firstError(w.encErrs)
}

// stop abandons the work (the committer failed) and waits for the workers.
func (w *pathWork) stop() {
	w.abort.Store(true)
	select {
	case <-w.ready:
	default:
		close(w.ready)
	}
	w.workers.Wait()
	for k := range w.encs {
		if e := w.encs[k].enc; e != nil {
			e.Discard()
		}
	}
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
