package harness

import (
	"testing"
	"time"
)

// Eventually polls cond every 250 ms until it holds, or fails t after
// timeout with cond's last detail and, when diagnose is set, what it says
// (e.g. the operator's latest log lines).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string), diagnose func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		time.Sleep(250 * time.Millisecond)
	}
	more := ""
	if diagnose != nil {
		more = "\n" + diagnose()
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s%s", timeout, what, last, more)
}
