package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// runTSMLS runs bench.js for one size (sparse tree); why is set when
// ts-mls could not set the group up within the budget.
func runTSMLS(dir string, n, r int, budget time.Duration) (results, string, error) {
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
	res := results{}
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
