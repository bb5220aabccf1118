package testenv

import "syscall"

// sysProcAttr makes the kernel kill a homeserver whose test process dies
// without running its cleanup (a panic, a go test -timeout), so that no
// Synapse outlives the test run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
