// Command mls-bench-compare runs the same group workloads in our
// implementation (mls/group, in process) and in ts-mls (through
// interop/tsmls/bench.js, run by node) on this machine, one after the
// other, and prints a table of the medians with the ratio ts-mls/ours.
//
// Workloads, for a group of N members built by the creator adding N-1
// members in one commit (not timed), cipher suite 1, PublicMessage:
//
//	add_commit      the creator commits an Add of one more member (with a
//	                Welcome carrying the ratchet tree)
//	join_welcome    that member joins from the Welcome
//	create_commit   the creator commits with a path and no proposals
//	process_commit  the joined member processes that commit
//
// Usage: go run ./interop/cmd/mls-bench-compare [-sizes 100,1000,10000]
// [-tsmls interop/tsmls] [-budget 5m] [-tsmls-max 10000]. A size that
// ts-mls cannot set up within the budget, or above -tsmls-max, is
// reported as skipped. Run it on an otherwise idle machine: both sides
// are timed one after the other, so load shifts the ratio.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

var workloads = []string{"add_commit", "join_welcome", "create_commit", "process_commit"}

func main() {
	sizesFlag := flag.String("sizes", "100,1000,10000", "comma-separated group sizes")
	tsDir := flag.String("tsmls", "interop/tsmls", "directory of the ts-mls driver (with node_modules)")
	budget := flag.Duration("budget", 5*time.Minute, "time ts-mls may take per group size")
	maxTS := flag.Int("tsmls-max", 10000, "largest group size to run in ts-mls; larger ones are reported as skipped")
	flag.Parse()

	var sizes []int
	for _, f := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("bad size %q", f)
		}
		sizes = append(sizes, n)
	}
	ours := map[int]map[string]time.Duration{}
	theirs := map[int]map[string]time.Duration{}
	skipped := map[int]string{}
	for _, n := range sizes {
		r := reps(n)
		fmt.Fprintf(os.Stderr, "ours: %d members, %d reps\n", n, r)
		m, err := runOurs(n, r)
		if err != nil {
			log.Fatalf("ours, %d members: %v", n, err)
		}
		ours[n] = m
		if n > *maxTS {
			skipped[n] = fmt.Sprintf("above -tsmls-max %d", *maxTS)
			continue
		}
		fmt.Fprintf(os.Stderr, "ts-mls: %d members, %d reps\n", n, r)
		t, why, err := runTSMLS(*tsDir, n, r, *budget)
		if err != nil {
			log.Fatalf("ts-mls, %d members: %v", n, err)
		}
		theirs[n], skipped[n] = t, why
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tmembers\tours ms\tts-mls ms\tts-mls/ours\t")
	for _, w := range workloads {
		for _, n := range sizes {
			o := ours[n][w]
			t, ok := theirs[n][w]
			if !ok {
				why := skipped[n]
				if why == "" {
					why = "no result"
				}
				fmt.Fprintf(tw, "%s\t%d\t%.2f\t—\t— (%s)\t\n", w, n, ms(o), why)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.1fx\t\n", w, n, ms(o), ms(t), float64(t)/float64(o))
		}
	}
	tw.Flush()
}

// reps keeps the large groups to a single run each: a ts-mls commit in a
// 10,000-member group takes tens of seconds.
func reps(n int) int {
	switch {
	case n <= 100:
		return 5
	case n <= 1000:
		return 3
	}
	return 1
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median runs fn r times and returns the median duration and the last
// result.
func median[T any](r int, fn func() (T, error)) (time.Duration, T, error) {
	var out T
	ds := make([]time.Duration, 0, r)
	for range r {
		start := time.Now()
		v, err := fn()
		if err != nil {
			return 0, out, err
		}
		ds = append(ds, time.Since(start))
		out = v
	}
	slices.Sort(ds)
	return ds[len(ds)/2], out, nil
}

func newMember(s suite.ID, name string) (*group.KeyPackageBundle, error) {
	su, err := suite.Lookup(s)
	if err != nil {
		return nil, err
	}
	priv, err := su.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	return group.NewKeyPackage(message.BasicCredential([]byte(name)), priv, nil)
}

func runOurs(n, r int) (map[string]time.Duration, error) {
	const cs = suite.X25519AES128GCMSHA256Ed25519
	creator, err := newMember(cs, "member-0")
	if err != nil {
		return nil, err
	}
	g, err := group.Create(creator, []byte(fmt.Sprintf("bench-%d", n)), nil, group.Config{})
	if err != nil {
		return nil, err
	}
	var adds []*message.Proposal
	for i := 1; i < n; i++ {
		kp, err := newMember(cs, fmt.Sprintf("member-%d", i))
		if err != nil {
			return nil, err
		}
		adds = append(adds, group.AddProposal(&kp.KeyPackage))
	}
	if len(adds) > 0 {
		pc, err := g.Commit(group.CommitOptions{Proposals: adds, OmitRatchetTree: true})
		if err != nil {
			return nil, fmt.Errorf("setup commit: %w", err)
		}
		if g, err = g.HandlePendingCommit(pc); err != nil {
			return nil, err
		}
	}
	joiner, err := newMember(cs, "joiner")
	if err != nil {
		return nil, err
	}
	res := map[string]time.Duration{}
	res["add_commit"], err = timed(r, func() (*group.PendingCommit, error) {
		return g.Commit(group.CommitOptions{Proposals: []*message.Proposal{group.AddProposal(&joiner.KeyPackage)}})
	}, func(pc *group.PendingCommit) error {
		var joined *group.Group
		res["join_welcome"], joined, err = median(r, func() (*group.Group, error) { return group.Join(pc.Welcome, joiner, nil) })
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		g2, err := g.HandlePendingCommit(pc)
		if err != nil {
			return err
		}
		var commit *group.PendingCommit
		res["create_commit"], commit, err = median(r, func() (*group.PendingCommit, error) { return g2.Commit(group.CommitOptions{ForcePath: true}) })
		if err != nil {
			return fmt.Errorf("empty commit: %w", err)
		}
		res["process_commit"], _, err = median(r, func() (*group.Received, error) {
			got, err := joined.Handle(commit.Commit)
			if err == nil && (got.Next == nil || got.Next.Epoch() != joined.Epoch()+1) {
				err = fmt.Errorf("commit did not advance the joined member's epoch")
			}
			return got, err
		})
		if err != nil {
			return fmt.Errorf("process commit: %w", err)
		}
		return nil
	})
	return res, err
}

// timed measures fn and hands its last result to then.
func timed[T any](r int, fn func() (T, error), then func(T) error) (time.Duration, error) {
	d, v, err := median(r, fn)
	if err != nil {
		return 0, err
	}
	return d, then(v)
}

// runTSMLS runs bench.js for one size; why is set when ts-mls could not
// set the group up within the budget.
func runTSMLS(dir string, n, r int, budget time.Duration) (map[string]time.Duration, string, error) {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ts-mls")); err != nil {
		return nil, "", fmt.Errorf("%s/node_modules is missing: run `npm ci --prefix %s`", dir, dir)
	}
	cmd := exec.Command("node", filepath.Join(dir, "bench.js"), "--sizes", strconv.Itoa(n), "--reps", strconv.Itoa(r), "--budget-ms", strconv.FormatInt(budget.Milliseconds(), 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s", err, stderr.String())
	}
	res := map[string]time.Duration{}
	why := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			Workload string  `json:"workload"`
			MS       float64 `json:"ms"`
			Skipped  string  `json:"skipped"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, "", fmt.Errorf("bench.js output %q: %w", sc.Text(), err)
		}
		if line.Skipped != "" {
			why = line.Skipped
			continue
		}
		res[line.Workload] = time.Duration(line.MS * float64(time.Millisecond))
	}
	return res, why, nil
}
