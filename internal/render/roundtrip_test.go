package render

import (
	"bytes"
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The round-trip property, shared by the unit tests and the fuzzers:
//
//   - rendering is deterministic;
//   - the output is printable ASCII plus '\n' only, and every line parses;
//   - the parsed file equals the parsed rendering of the same input with
//     placeholder secrets, with the placeholders replaced by the real values.
//     So requirepass/masterauth/auth-pass/sentinel-pass carry exactly the
//     password, the password changes nothing else, the line count does not
//     depend on it, and each directive appears on its one intended line;
//   - errors are *FieldError and do not depend on the password's content.

// placeholder returns a secret stand-in that differs from every other value
// in the input (a master name could otherwise collide with it).
func placeholder(base string, avoid ...string) string {
	for {
		clash := false
		for _, a := range avoid {
			clash = clash || a == base
		}
		if !clash {
			return base
		}
		base += "X"
	}
}

func checkOutputBytes(t *testing.T, out []byte) {
	t.Helper()
	if len(out) == 0 || out[len(out)-1] != '\n' {
		t.Fatalf("output does not end with a newline")
	}
	for i, c := range out {
		if c != '\n' && (c < 0x20 || c > 0x7e) {
			t.Fatalf("output byte %d is %#x, want printable ASCII or newline", i, c)
		}
	}
}

func mustParse(t *testing.T, out []byte) []Line {
	t.Helper()
	lines, err := ParseConf(out)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, out)
	}
	return lines
}

// substitute replaces every argument equal to a key of repl (placeholders).
func substitute(lines []Line, repl map[string]string) []Line {
	out := make([]Line, len(lines))
	for i, l := range lines {
		args := make([]string, len(l.Args))
		for j, a := range l.Args {
			if v, ok := repl[a]; ok && j > 0 {
				a = v
			}
			args[j] = a
		}
		out[i] = Line{Num: l.Num, Args: args}
	}
	return out
}

func compareLines(t *testing.T, got, want []Line) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d directives, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("directive %d: got %q (line %d), want %q (line %d)", i, got[i].Args, got[i].Num, want[i].Args, want[i].Num)
		}
	}
}

func expectOnce(t *testing.T, lines []Line, key string, want ...string) {
	t.Helper()
	found := linesFor(lines, key)
	if len(found) != 1 {
		t.Fatalf("%q appears on %d lines, want exactly 1", key, len(found))
	}
	if !reflect.DeepEqual(found[0], want) {
		t.Fatalf("%q line is %q, want %q", key, found[0], want)
	}
}

// twinBytes maps every byte to a different byte of the same validity class
// (class(b) == class(twin(b))). Bytes that are alone in their class stay.
func twinBytes(s string, class func(byte) bool) string {
	b := []byte(s)
	for i, c := range b {
		for d := c + 1; d != c; d++ {
			if class(d) == class(c) {
				b[i] = d
				break
			}
		}
	}
	return string(b)
}

func checkFieldError(t *testing.T, err error) *FieldError {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Field == "" || !strings.Contains(err.Error(), fe.Field) {
		t.Fatalf("error %q does not name its field", err)
	}
	return fe
}

func checkRedisRoundTrip(t *testing.T, r Redis) {
	t.Helper()
	out, err := RedisConf(r)
	if err != nil {
		checkFieldError(t, err)
		// The message must not depend on the password beyond its validity.
		tw := r
		tw.Password = twinBytes(r.Password, func(c byte) bool { return c != 0 })
		_, err2 := RedisConf(tw)
		if err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("error depends on the password's content: %q vs %v", err, err2)
		}
		return
	}
	again, _ := RedisConf(r)
	if !bytes.Equal(out, again) {
		t.Fatalf("RedisConf is not deterministic")
	}
	checkOutputBytes(t, out)
	lines := mustParse(t, out)

	phPassword := placeholder("PLACEHOLDER-PASSWORD")
	base := r
	base.Password = phPassword
	baseOut, err := RedisConf(base)
	if err != nil {
		t.Fatalf("placeholder render failed: %v", err)
	}
	if bytes.Count(out, []byte("\n")) != bytes.Count(baseOut, []byte("\n")) {
		t.Fatalf("line count depends on the password")
	}
	compareLines(t, lines, substitute(mustParse(t, baseOut), map[string]string{phPassword: r.Password}))

	addr := net.ParseIP(r.Address).String()
	expectOnce(t, lines, "requirepass", "requirepass", r.Password)
	expectOnce(t, lines, "masterauth", "masterauth", r.Password)
	expectOnce(t, lines, "maxmemory", "maxmemory", r.Maxmemory)
	expectOnce(t, lines, "replica-announce-ip", "replica-announce-ip", addr)
	bind := linesFor(lines, "bind")
	if len(bind) != 1 || bind[0][1] != addr {
		t.Fatalf("bind lines %q, want one starting with %q", bind, addr)
	}
	if n := len(linesFor(lines, "replicaof")); (r.ReplicaOf != nil) != (n == 1) || n > 1 {
		t.Fatalf("%d replicaof lines for ReplicaOf=%v", n, r.ReplicaOf)
	}
}

func sentinelClass(c byte) bool { return bareSafe(c) }

func checkSentinelRoundTrip(t *testing.T, s Sentinel) {
	t.Helper()
	out, err := SentinelConf(s)
	if err != nil {
		checkFieldError(t, err)
		tw := s
		tw.Password = twinBytes(s.Password, sentinelClass)
		tw.RedisPassword = twinBytes(s.RedisPassword, sentinelClass)
		_, err2 := SentinelConf(tw)
		if err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("error depends on a password's content: %q vs %v", err, err2)
		}
		return
	}
	again, _ := SentinelConf(s)
	if !bytes.Equal(out, again) {
		t.Fatalf("SentinelConf is not deterministic")
	}
	checkOutputBytes(t, out)
	lines := mustParse(t, out)

	phPassword := placeholder("PLACEHOLDER-PASSWORD", s.MasterName)
	phRedisPassword := placeholder("PLACEHOLDER-REDIS-PASSWORD", s.MasterName, phPassword)
	base := s
	base.Password = phPassword
	base.RedisPassword = phRedisPassword
	baseOut, err := SentinelConf(base)
	if err != nil {
		t.Fatalf("placeholder render failed: %v", err)
	}
	if bytes.Count(out, []byte("\n")) != bytes.Count(baseOut, []byte("\n")) {
		t.Fatalf("line count depends on the passwords")
	}
	compareLines(t, lines, substitute(mustParse(t, baseOut), map[string]string{
		phPassword: s.Password, phRedisPassword: s.RedisPassword,
	}))

	addr := net.ParseIP(s.Address).String()
	master := net.ParseIP(s.Master.Host).String()
	expectOnce(t, lines, "requirepass", "requirepass", s.Password)
	expectOnce(t, lines, "sentinel sentinel-pass", "sentinel", "sentinel-pass", s.Password)
	expectOnce(t, lines, "sentinel auth-pass", "sentinel", "auth-pass", s.MasterName, s.RedisPassword)
	expectOnce(t, lines, "sentinel announce-ip", "sentinel", "announce-ip", addr)
	mon := linesFor(lines, "sentinel monitor")
	if len(mon) != 1 || mon[0][2] != s.MasterName || mon[0][3] != master {
		t.Fatalf("monitor lines %q", mon)
	}
	// 'monitor' precedes every per-master option.
	seenMonitor := false
	for _, l := range lines {
		switch directiveKey(l.Args) {
		case "sentinel monitor":
			seenMonitor = true
		case "sentinel auth-pass", "sentinel down-after-milliseconds", "sentinel failover-timeout", "sentinel parallel-syncs", "sentinel known-replica":
			if !seenMonitor {
				t.Fatalf("%q before sentinel monitor", l.Args)
			}
		}
	}
	var wantReplicas [][]string
	for _, r := range s.KnownReplicas {
		wantReplicas = append(wantReplicas, []string{"sentinel", "known-replica", s.MasterName, net.ParseIP(r.Host).String(), strconv.Itoa(r.Port)})
	}
	if got := linesFor(lines, "sentinel known-replica"); !reflect.DeepEqual(got, wantReplicas) {
		t.Fatalf("known-replica lines %q, want %q", got, wantReplicas)
	}

	// Sentinel 7.0 later rewrites these lines itself with printf("%s"),
	// unquoted. Whatever SentinelConf accepts must survive that too.
	for _, rewritten := range []struct {
		line string
		want []string
	}{
		{"sentinel sentinel-pass " + s.Password, []string{"sentinel", "sentinel-pass", s.Password}},
		{"sentinel auth-pass " + s.MasterName + " " + s.RedisPassword, []string{"sentinel", "auth-pass", s.MasterName, s.RedisPassword}},
		{"sentinel monitor " + s.MasterName + " " + master + " 6379 2", []string{"sentinel", "monitor", s.MasterName, master, "6379", "2"}},
	} {
		got, err := ParseConf([]byte(rewritten.line + "\n"))
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0].Args, rewritten.want) {
			t.Fatalf("Sentinel's own unquoted rewrite would not round-trip: %q -> %v %v", rewritten.line, got, err)
		}
	}
}
