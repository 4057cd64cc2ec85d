package render

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
)

// The round-trip property, shared by the unit tests and the fuzzers:
//
//   - rendering is deterministic;
//   - the output is printable ASCII plus '\n' only, and every line parses;
//   - the parsed file equals the parsed rendering of the same input with
//     placeholder secrets, with the placeholders (and their hashes) replaced
//     by the real values. So masterauth/auth-pass/sentinel-pass carry
//     exactly their password, user lines exactly the hashes, a password
//     changes nothing else (no user password ever appears in clear text),
//     the line count does not depend on it, and each directive appears on
//     its one intended line;
//   - user lines are the default user off, then every user with its hashes
//     and rules, and survive Redis's own unquoted rewrite of them;
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

// twinUsers is users with every password replaced by its twin (any
// non-empty password is valid, so every byte has a twin).
func twinUsers(users []acl.User) []acl.User {
	out := make([]acl.User, len(users))
	for i, u := range users {
		out[i] = u
		out[i].Passwords = make([]string, len(u.Passwords))
		for j, p := range u.Passwords {
			out[i].Passwords[j] = twinBytes(p, func(byte) bool { return true })
		}
	}
	return out
}

// placeholderUsers is users with every password replaced by a placeholder,
// and the substitutions that turn the placeholders' hashes back into the
// real passwords' hashes.
func placeholderUsers(users []acl.User, repl map[string]string) []acl.User {
	out := make([]acl.User, len(users))
	for i, u := range users {
		out[i] = u
		out[i].Passwords = make([]string, len(u.Passwords))
		for j, p := range u.Passwords {
			ph := fmt.Sprintf("PLACEHOLDER-USER-%d-%d", i, j)
			out[i].Passwords[j] = ph
			repl[sha(ph)] = sha(p)
		}
	}
	return out
}

// nonSecrets are the input strings placeholders must not collide with.
func nonSecrets(users []acl.User, more ...string) []string {
	out := more
	for _, u := range users {
		out = append(out, u.Name)
		out = append(out, u.Rules...)
	}
	return out
}

// checkUserLines: the user lines are exactly userLines(users) (hashes, no
// clear text, the default user off), and they survive Redis's own
// unquoted rewrite (CONFIG REWRITE, SENTINEL FLUSHCONFIG write "user <name>
// <rules>" with the rules space-separated and unquoted).
func checkUserLines(t *testing.T, lines []Line, users []acl.User) {
	t.Helper()
	got := linesFor(lines, "user")
	if want := userLines(users); !reflect.DeepEqual(got, want) {
		t.Fatalf("user lines:\n got %q\nwant %q", got, want)
	}
	for _, l := range got {
		for _, a := range l[2:] {
			if strings.HasPrefix(a, ">") || strings.HasPrefix(a, "<") || a == "nopass" {
				t.Fatalf("user line %q sets a password in clear text or nopass", l)
			}
		}
		rewritten, err := ParseConf([]byte(strings.Join(l, " ") + "\n"))
		if err != nil || len(rewritten) != 1 || !reflect.DeepEqual(rewritten[0].Args, l) {
			t.Fatalf("Redis's own unquoted rewrite of %q would not round-trip: %v %v", l, rewritten, err)
		}
	}
}

func checkRedisRoundTrip(t *testing.T, r Redis) {
	t.Helper()
	out, err := RedisConf(r)
	if err != nil {
		checkFieldError(t, err)
		// The message must not depend on the passwords beyond their validity.
		tw := r
		tw.MasterAuth = twinBytes(r.MasterAuth, func(c byte) bool { return c != 0 })
		tw.Users = twinUsers(r.Users)
		_, err2 := RedisConf(tw)
		if err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("error depends on a password's content: %q vs %v", err, err2)
		}
		return
	}
	again, _ := RedisConf(r)
	if !bytes.Equal(out, again) {
		t.Fatalf("RedisConf is not deterministic")
	}
	checkOutputBytes(t, out)
	lines := mustParse(t, out)

	// Rendered with placeholder passwords, the file differs only where the
	// passwords (masterauth) and their hashes (user lines) are: so no
	// password reaches any other line, in clear text or otherwise.
	phMasterAuth := placeholder("PLACEHOLDER-MASTERAUTH", nonSecrets(r.Users, r.MasterUser)...)
	repl := map[string]string{phMasterAuth: r.MasterAuth}
	base := r
	base.MasterAuth = phMasterAuth
	base.Users = placeholderUsers(r.Users, repl)
	baseOut, err := RedisConf(base)
	if err != nil {
		t.Fatalf("placeholder render failed: %v", err)
	}
	if bytes.Count(out, []byte("\n")) != bytes.Count(baseOut, []byte("\n")) {
		t.Fatalf("line count depends on the passwords")
	}
	compareLines(t, lines, substitute(mustParse(t, baseOut), repl))

	addr := net.ParseIP(r.Address).String()
	checkUserLines(t, lines, r.Users)
	expectOnce(t, lines, "masteruser", "masteruser", r.MasterUser)
	expectOnce(t, lines, "masterauth", "masterauth", r.MasterAuth)
	if n := len(linesFor(lines, "requirepass")); n != 0 {
		t.Fatalf("%d requirepass lines: the users replace it", n)
	}
	expectOnce(t, lines, "maxmemory", "maxmemory", r.Maxmemory)
	expectOnce(t, lines, "replica-announce-ip", "replica-announce-ip", addr)
	bind := linesFor(lines, "bind")
	if len(bind) != 1 || bind[0][1] != addr {
		t.Fatalf("bind lines %q, want one starting with %q", bind, addr)
	}
	if n := len(linesFor(lines, "replicaof")); (r.ReplicaOf != nil) != (n == 1) || n > 1 {
		t.Fatalf("%d replicaof lines for ReplicaOf=%v", n, r.ReplicaOf)
	}
	checkListen(t, lines, r.Port, r.TLS)
}

// checkListen checks the listening directives: the port in plaintext, or
// TLS only (port 0) with the TLS files and settings.
func checkListen(t *testing.T, lines []Line, port int, tls *TLS) {
	t.Helper()
	if tls == nil {
		expectOnce(t, lines, "port", "port", strconv.Itoa(port))
		if n := len(linesFor(lines, "tls-port")); n != 0 {
			t.Fatalf("%d tls-port lines without TLS", n)
		}
		return
	}
	expectOnce(t, lines, "port", "port", "0")
	expectOnce(t, lines, "tls-port", "tls-port", strconv.Itoa(port))
	expectOnce(t, lines, "tls-cert-file", "tls-cert-file", tls.MemberFile)
	expectOnce(t, lines, "tls-key-file", "tls-key-file", tls.MemberFile)
	expectOnce(t, lines, "tls-ca-cert-file", "tls-ca-cert-file", tls.CAFile)
	expectOnce(t, lines, "tls-replication", "tls-replication", "yes")
	auth := "no"
	if tls.AuthClients {
		auth = "yes"
	}
	expectOnce(t, lines, "tls-auth-clients", "tls-auth-clients", auth)
}

func sentinelClass(c byte) bool { return bareSafe(c) }

func checkSentinelRoundTrip(t *testing.T, s Sentinel) {
	t.Helper()
	out, err := SentinelConf(s)
	if err != nil {
		checkFieldError(t, err)
		tw := s
		tw.PeerPassword = twinBytes(s.PeerPassword, sentinelClass)
		tw.AuthPass = twinBytes(s.AuthPass, sentinelClass)
		tw.Users = twinUsers(s.Users)
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

	avoid := nonSecrets(s.Users, s.MasterName, s.PeerUser, s.AuthUser)
	phPeer := placeholder("PLACEHOLDER-PEER-PASSWORD", avoid...)
	phAuth := placeholder("PLACEHOLDER-AUTH-PASS", append(avoid, phPeer)...)
	repl := map[string]string{phPeer: s.PeerPassword, phAuth: s.AuthPass}
	base := s
	base.PeerPassword = phPeer
	base.AuthPass = phAuth
	base.Users = placeholderUsers(s.Users, repl)
	baseOut, err := SentinelConf(base)
	if err != nil {
		t.Fatalf("placeholder render failed: %v", err)
	}
	if bytes.Count(out, []byte("\n")) != bytes.Count(baseOut, []byte("\n")) {
		t.Fatalf("line count depends on the passwords")
	}
	compareLines(t, lines, substitute(mustParse(t, baseOut), repl))

	addr := net.ParseIP(s.Address).String()
	master := net.ParseIP(s.Master.Host).String()
	checkUserLines(t, lines, s.Users)
	if n := len(linesFor(lines, "requirepass")); n != 0 {
		t.Fatalf("%d requirepass lines: the users replace it", n)
	}
	expectOnce(t, lines, "sentinel sentinel-user", "sentinel", "sentinel-user", s.PeerUser)
	expectOnce(t, lines, "sentinel sentinel-pass", "sentinel", "sentinel-pass", s.PeerPassword)
	expectOnce(t, lines, "sentinel auth-user", "sentinel", "auth-user", s.MasterName, s.AuthUser)
	expectOnce(t, lines, "sentinel auth-pass", "sentinel", "auth-pass", s.MasterName, s.AuthPass)
	expectOnce(t, lines, "sentinel announce-ip", "sentinel", "announce-ip", addr)
	checkListen(t, lines, s.Port, s.TLS)
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
		case "sentinel auth-user", "sentinel auth-pass", "sentinel down-after-milliseconds", "sentinel failover-timeout", "sentinel parallel-syncs", "sentinel known-replica", "sentinel known-sentinel":
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
	var wantSentinels [][]string
	for _, k := range s.KnownSentinels {
		wantSentinels = append(wantSentinels, []string{"sentinel", "known-sentinel", s.MasterName, net.ParseIP(k.Address.Host).String(), strconv.Itoa(k.Address.Port), k.ID})
	}
	if got := linesFor(lines, "sentinel known-sentinel"); !reflect.DeepEqual(got, wantSentinels) {
		t.Fatalf("known-sentinel lines %q, want %q", got, wantSentinels)
	}
	if s.ID != "" {
		expectOnce(t, lines, "sentinel myid", "sentinel", "myid", s.ID)
	}

	// Sentinel 7.0 later rewrites these lines itself with printf("%s"),
	// unquoted. Whatever SentinelConf accepts must survive that too.
	for _, rewritten := range []struct {
		line string
		want []string
	}{
		{"sentinel sentinel-user " + s.PeerUser, []string{"sentinel", "sentinel-user", s.PeerUser}},
		{"sentinel sentinel-pass " + s.PeerPassword, []string{"sentinel", "sentinel-pass", s.PeerPassword}},
		{"sentinel auth-user " + s.MasterName + " " + s.AuthUser, []string{"sentinel", "auth-user", s.MasterName, s.AuthUser}},
		{"sentinel auth-pass " + s.MasterName + " " + s.AuthPass, []string{"sentinel", "auth-pass", s.MasterName, s.AuthPass}},
		{"sentinel monitor " + s.MasterName + " " + master + " 6379 2", []string{"sentinel", "monitor", s.MasterName, master, "6379", "2"}},
	} {
		got, err := ParseConf([]byte(rewritten.line + "\n"))
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0].Args, rewritten.want) {
			t.Fatalf("Sentinel's own unquoted rewrite would not round-trip: %q -> %v %v", rewritten.line, got, err)
		}
	}
}
