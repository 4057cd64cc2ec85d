package testenv

import (
	"os"
	"syscall"
	"time"
)

// Terminate stops a process a test started: SIGTERM, then SIGKILL when it
// has not exited within grace. exited is closed by whoever waits for the
// process (its cmd.Wait); Terminate returns once it is.
func Terminate(p *os.Process, exited <-chan struct{}, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
	}
}
