package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// nastyStrings are values that would break a naive renderer. They seed the
// fuzzers too.
var nastyStrings = []string{
	"a\nrequirepass x",
	"\"",
	"\\",
	"\x00",
	"pw\" \"x",
	"pw\"\nsentinel monitor evil 6.6.6.6 6379 1",
	"'",
	"it's",
	"\\x41",
	"\\\"",
	"\"\"",
	"trailing\\",
	" leading and trailing ",
	"\t\r\n\v\f\a\b",
	"\x01\x02\x7f\x80\xff",
	"#not-a-comment",
	"# comment",
	"密码🔑ünïcødé",
	"\xc3\x28 invalid utf-8",
	strings.Repeat("x", 512),
	strings.Repeat("\"\n\\", 171),
	"plain-Password_123",
	"p\\a$s#w{o}r|d;x`~!@%^&*()[]<>?,./:=+",
}

// typicalCreds are a formation's credentials, mid-rotation for the
// replication user (two passwords accepted).
func typicalCreds() acl.Set {
	return acl.Set{
		acl.BackendPassword:         {Current: "backend-Passw0rd"},
		acl.BackendSentinelPassword: {Current: "backend-sentinel-Passw0rd"},
		acl.Admin:                   {Current: "admin-Passw0rd"},
		acl.Replication:             {Current: "replication-Passw0rd", Previous: "old-replication-Passw0rd"},
		acl.Monitoring:              {Current: "monitoring-Passw0rd"},
		acl.Peer:                    {Current: "peer-Passw0rd"},
	}
}

var typicalBackend = acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}

func typicalRedis() Redis {
	creds := typicalCreds()
	return Redis{
		Address:            "10.42.0.11",
		Port:               6379,
		Users:              acl.ServerUsers(creds, typicalBackend),
		MasterUser:         acl.ReplicationUser,
		MasterAuth:         creds[acl.Replication].Current,
		Maxmemory:          "1gb",
		MaxmemoryPolicy:    "allkeys-lru",
		AppendOnly:         true,
		AppendFsync:        "everysec",
		SavePoints:         []SavePoint{{Seconds: 3600, Changes: 1}, {Seconds: 300, Changes: 100}},
		MinReplicasToWrite: 1,
		MinReplicasMaxLag:  10,
	}
}

func typicalSentinel() Sentinel {
	creds := typicalCreds()
	return Sentinel{
		Address:           "10.42.0.11",
		Port:              26379,
		Users:             acl.SentinelUsers(creds, typicalBackend, engine.Engine{}),
		PeerUser:          acl.PeerUser,
		PeerPassword:      creds[acl.Peer].Current,
		MasterName:        "mymaster",
		Master:            endpoint.Endpoint{Host: "10.42.0.10", Port: 6379},
		Quorum:            2,
		DownAfterMs:       5000,
		FailoverTimeoutMs: 60000,
		ParallelSyncs:     1,
		AuthUser:          acl.MonitoringUser,
		AuthPass:          creds[acl.Monitoring].Current,
		KnownReplicas:     []endpoint.Endpoint{{Host: "10.42.0.11", Port: 6379}, {Host: "10.42.0.12", Port: 6380}},
		ID:                "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a01",
		KnownSentinels: []KnownSentinel{
			{Address: endpoint.Endpoint{Host: "10.42.0.10", Port: 26379}, ID: "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a00"},
			{Address: endpoint.Endpoint{Host: "10.42.0.12", Port: 26380}, ID: "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a02"},
		},
	}
}

// sha is a password as ACL stores it, computed here independently of
// acl.User.Hashes.
func sha(pw string) string {
	sum := sha256.Sum256([]byte(pw))
	return "#" + hex.EncodeToString(sum[:])
}

// userLines are the `user` lines users must render to: the default user
// off first, then each other user on (off without passwords) with its
// passwords' hashes and its rules.
func userLines(users []acl.User) [][]string {
	out := [][]string{{"user", "default", "off", "resetpass"}}
	for _, u := range users {
		if u.Name == "default" {
			continue
		}
		l := []string{"user", u.Name, "on"}
		if len(u.Passwords) == 0 {
			l = []string{"user", u.Name, "off", "resetpass"}
		}
		for _, p := range u.Passwords {
			l = append(l, sha(p))
		}
		out = append(out, append(l, u.Rules...))
	}
	return out
}

func parsedArgs(t *testing.T, out []byte) [][]string {
	t.Helper()
	var all [][]string
	for _, l := range mustParse(t, out) {
		all = append(all, l.Args)
	}
	return all
}

func TestRedisConfDirectives(t *testing.T) {
	common := [][]string{
		{"bind", "10.42.0.11", "127.0.0.1"},
		{"port", "6379"},
		{"protected-mode", "yes"},
		{"tcp-keepalive", "60"},
		{"daemonize", "no"},
		{"pidfile", "/run/redis/redis-server.pid"},
		{"logfile", "/var/log/redis/redis-server.log"},
		{"dir", "/var/lib/redis"},
		{"user", "default", "off", "resetpass"},
		{"user", "rsf-admin", "on", sha("admin-Passw0rd"), "~*", "&*", "+@all"},
		{"user", "rsf-replication", "on", sha("replication-Passw0rd"), sha("old-replication-Passw0rd"), "-@all", "+psync", "+replconf", "+ping"},
		append([]string{"user", "rsf-sentinel", "on", sha("monitoring-Passw0rd")}, typicalRedis().Users[3].Rules...),
		{"user", "backend", "on", sha("backend-Passw0rd"), "~*", "&*", "+@all", "-@admin", "-@dangerous"},
		{"masteruser", "rsf-replication"},
		{"masterauth", "replication-Passw0rd"},
		{"maxmemory", "1gb"},
		{"maxmemory-policy", "allkeys-lru"},
		{"appendonly", "yes"},
		{"appendfsync", "everysec"},
		{"appendfilename", "appendonly.aof"},
		{"appenddirname", "appendonlydir"},
		{"save", "3600", "1", "300", "100"},
		{"dbfilename", "dump.rdb"},
		{"replica-announce-ip", "10.42.0.11"},
		{"replica-announce-port", "6379"},
		{"min-replicas-to-write", "1"},
		{"min-replicas-max-lag", "10"},
		{"replica-serve-stale-data", "yes"},
		{"replica-read-only", "yes"},
		{"repl-diskless-sync", "yes"}, {"repl-diskless-sync-delay", "0"},
		{"replica-priority", "100"},
	}
	replica := typicalRedis()
	replica.ReplicaOf = &endpoint.Endpoint{Host: "10.42.0.10", Port: 6380}

	noPersistence := typicalRedis()
	noPersistence.AppendOnly = false
	noPersistence.AppendFsync = "no"
	noPersistence.SavePoints = nil
	noPersistence.Address = "127.0.0.1"
	noPersistence.MaxmemoryPolicy = "noeviction"
	noPersistence.Maxmemory = "0"

	// Users as a caller may pass them: no default entry, one user without
	// passwords (off), one with no rules at all.
	otherUsers := typicalRedis()
	otherUsers.Users = []acl.User{
		{Name: "app.reader", Passwords: []string{"x"}, Rules: []string{"resetkeys", "%R~app:*", "&news:*", "+get", "+client|setname"}},
		{Name: "locked", Rules: []string{"+ping"}},
		{Name: "Bare9"},
		{Name: "rsf-replication", Passwords: []string{"replication-Passw0rd"}},
	}

	with := func(base [][]string, edits map[string][]string, extra ...[]string) [][]string {
		var out [][]string
		for _, l := range base {
			if e, ok := edits[l[0]]; ok {
				l = e
			}
			out = append(out, l)
		}
		return append(out, extra...)
	}
	var otherUserLines [][]string
	for _, l := range common {
		if l[0] == "user" {
			continue
		}
		if l[0] == "masteruser" {
			otherUserLines = append(otherUserLines,
				[]string{"user", "default", "off", "resetpass"},
				[]string{"user", "app.reader", "on", sha("x"), "resetkeys", "%R~app:*", "&news:*", "+get", "+client|setname"},
				[]string{"user", "locked", "off", "resetpass", "+ping"},
				[]string{"user", "Bare9", "off", "resetpass"},
				[]string{"user", "rsf-replication", "on", sha("replication-Passw0rd")})
		}
		otherUserLines = append(otherUserLines, l)
	}

	tests := []struct {
		name string
		in   Redis
		want [][]string
	}{
		{"master", typicalRedis(), common},
		{"replica", replica, with(common, nil, []string{"replicaof", "10.42.0.10", "6380"})},
		{"no persistence on loopback", noPersistence, with(common, map[string][]string{
			"bind":                {"bind", "127.0.0.1"}, // loopback bound once, not twice
			"appendonly":          {"appendonly", "no"},
			"appendfsync":         {"appendfsync", "no"},
			"save":                {"save", ""},
			"replica-announce-ip": {"replica-announce-ip", "127.0.0.1"},
			"maxmemory-policy":    {"maxmemory-policy", "noeviction"},
			"maxmemory":           {"maxmemory", "0"},
		})},
		{"other users", otherUsers, otherUserLines},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RedisConf(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := parsedArgs(t, out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("directives:\n got %q\nwant %q\n%s", got, tt.want, out)
			}
			if !bytes.HasPrefix(out, []byte("# Rendered by redis-sentinel-operator")) ||
				!bytes.Contains(out, []byte("CONFIG SET")) || !bytes.Contains(out, []byte("CONFIG REWRITE")) {
				t.Errorf("missing header comment:\n%s", out)
			}
			if bytes.Contains(out, []byte("\nsupervised")) {
				t.Errorf("supervised must come from the systemd unit's command line")
			}
			checkRedisRoundTrip(t, tt.in)
		})
	}
}

func TestRedisConfIPv6(t *testing.T) {
	r := typicalRedis()
	r.Address = "fd42:0:0::11"
	r.ReplicaOf = &endpoint.Endpoint{Host: "::ffff:10.42.0.10", Port: 6379}
	out, err := RedisConf(r)
	if err != nil {
		t.Fatal(err)
	}
	lines := mustParse(t, out)
	expectOnce(t, lines, "bind", "bind", "fd42::11", "127.0.0.1")
	expectOnce(t, lines, "replicaof", "replicaof", "10.42.0.10", "6379")
	checkRedisRoundTrip(t, r)
}

func TestSentinelConfDirectives(t *testing.T) {
	want := [][]string{
		{"bind", "10.42.0.11", "127.0.0.1"},
		{"port", "26379"},
		{"protected-mode", "yes"},
		{"daemonize", "no"},
		{"pidfile", "/run/sentinel/redis-sentinel.pid"},
		{"logfile", "/var/log/redis/redis-sentinel.log"},
		{"dir", "/var/lib/redis"},
		{"user", "default", "off", "resetpass"},
		{"user", "rsf-admin", "on", sha("admin-Passw0rd"), "&*", "+@all"},
		append([]string{"user", "rsf-peer", "on", sha("peer-Passw0rd")}, typicalSentinel().Users[2].Rules...),
		append([]string{"user", "backend", "on", sha("backend-sentinel-Passw0rd")}, acl.DiscoveryRules...),
		{"sentinel", "sentinel-user", "rsf-peer"},
		{"sentinel", "sentinel-pass", "peer-Passw0rd"},
		{"sentinel", "myid", "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a01"},
		{"sentinel", "announce-ip", "10.42.0.11"},
		{"sentinel", "announce-port", "26379"},
		{"sentinel", "resolve-hostnames", "no"},
		{"sentinel", "deny-scripts-reconfig", "yes"},
		{"sentinel", "monitor", "mymaster", "10.42.0.10", "6379", "2"},
		{"sentinel", "auth-user", "mymaster", "rsf-sentinel"},
		{"sentinel", "auth-pass", "mymaster", "monitoring-Passw0rd"},
		{"sentinel", "down-after-milliseconds", "mymaster", "5000"},
		{"sentinel", "failover-timeout", "mymaster", "60000"},
		{"sentinel", "parallel-syncs", "mymaster", "1"},
		{"sentinel", "known-replica", "mymaster", "10.42.0.11", "6379"},
		{"sentinel", "known-replica", "mymaster", "10.42.0.12", "6380"},
		{"sentinel", "known-sentinel", "mymaster", "10.42.0.10", "26379", "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a00"},
		{"sentinel", "known-sentinel", "mymaster", "10.42.0.12", "26380", "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a02"},
	}
	s := typicalSentinel()
	out, err := SentinelConf(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := parsedArgs(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("directives:\n got %q\nwant %q\n%s", got, want, out)
	}
	if !bytes.HasPrefix(out, []byte("# Rendered by redis-sentinel-operator")) {
		t.Errorf("missing header comment:\n%s", out)
	}
	checkSentinelRoundTrip(t, s)
}

// secretMarker is part of every password in the error tables below: no error
// text may contain it.
const secretMarker = "Distinctive-Secret-7f3a"

func TestRedisConfErrors(t *testing.T) {
	tests := []struct {
		field string
		edit  func(*Redis)
	}{
		{"Address", func(r *Redis) { r.Address = "" }},
		{"Address", func(r *Redis) { r.Address = "redis-0.example" }},
		{"Address", func(r *Redis) { r.Address = "10.0.0" }},
		{"Address", func(r *Redis) { r.Address = "10.0.0.1\nrequirepass x" }},
		{"Address", func(r *Redis) { r.Address = "fe80::1%eth0" }},
		{"Port", func(r *Redis) { r.Port = 0 }},
		{"Port", func(r *Redis) { r.Port = 65536 }},
		{"MasterAuth", func(r *Redis) { r.MasterAuth = "" }},
		{"MasterAuth", func(r *Redis) { r.MasterAuth = secretMarker + "\x00" + secretMarker }},
		{"MasterUser", func(r *Redis) { r.MasterUser = "" }},
		{"MasterUser", func(r *Redis) { r.MasterUser = "rsf-replication\nrequirepass x" }},
		{"MasterUser", func(r *Redis) { r.MasterUser = "a b" }},
		{"Users[1].Name", func(r *Redis) { r.Users[1].Name = "" }},
		{"Users[1].Name", func(r *Redis) { r.Users[1].Name = "admin\"x" }},
		{"Users[1].Name", func(r *Redis) { r.Users[1].Name = "-admin" }},
		{"Users[1].Name", func(r *Redis) { r.Users[1].Name = "ad min" }},
		{"Users[1].Name", func(r *Redis) { r.Users[1].Name = "admin\nuser evil on nopass +@all" }},
		{"Users[1].Name", func(r *Redis) { r.Users[1].Name = strings.Repeat("a", 129) }},
		{"Users[4].Name", func(r *Redis) { r.Users[4].Name = r.Users[1].Name }},
		{"Users[0]", func(r *Redis) { r.Users[0].Passwords = []string{secretMarker} }},
		{"Users[0]", func(r *Redis) { r.Users[0].Rules = []string{"+@all"} }},
		{"Users[2].Passwords[1]", func(r *Redis) { r.Users[2].Passwords[1] = "" }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{">" + secretMarker} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"<" + secretMarker} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"#" + secretMarker} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"!" + secretMarker} }},
		{"Users[4].Rules[1]", func(r *Redis) { r.Users[4].Rules = []string{"+get", "nopass"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"resetpass"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"on"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"off"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"reset"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"clearselectors"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"(+get ~x)"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{""} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"~a b"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"~a\"b"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"&it's"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"~a\nuser evil on nopass"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"%~x"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"+GET"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"+get +set"} }},
		{"Users[4].Rules[0]", func(r *Redis) { r.Users[4].Rules = []string{"~é"} }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "1tb" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "1 gb" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "1gb\n" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "-1" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "1234567890123456" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "999999999999999gb" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "17179869184GB" }},
		{"Maxmemory", func(r *Redis) { r.Maxmemory = "18446744073710m" }},
		{"MaxmemoryPolicy", func(r *Redis) { r.MaxmemoryPolicy = "lru" }},
		{"MaxmemoryPolicy", func(r *Redis) { r.MaxmemoryPolicy = "" }},
		{"AppendFsync", func(r *Redis) { r.AppendFsync = "sometimes" }},
		{"AppendFsync", func(r *Redis) { r.AppendFsync = "" }},
		{"SavePoints[0].Seconds", func(r *Redis) { r.SavePoints = []SavePoint{{0, 1}} }},
		{"SavePoints[1].Changes", func(r *Redis) { r.SavePoints = []SavePoint{{60, 1}, {60, 0}} }},
		{"SavePoints[0].Seconds", func(r *Redis) { r.SavePoints = []SavePoint{{math.MaxInt32 + 1, 1}} }},
		{"MinReplicasToWrite", func(r *Redis) { r.MinReplicasToWrite = -1 }},
		{"MinReplicasMaxLag", func(r *Redis) { r.MinReplicasMaxLag = -1 }},
		{"ReplicaOf.Host", func(r *Redis) { r.ReplicaOf = &endpoint.Endpoint{Host: "redis-0", Port: 6379} }},
		{"ReplicaOf.Port", func(r *Redis) { r.ReplicaOf = &endpoint.Endpoint{Host: "10.42.0.10", Port: -1} }},
		{"ReplicaOf", func(r *Redis) { r.ReplicaOf = &endpoint.Endpoint{Host: "10.42.0.11", Port: 6379} }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			r := typicalRedis()
			r.MasterAuth = secretMarker + "\n" + secretMarker
			for i := range r.Users {
				for j := range r.Users[i].Passwords {
					r.Users[i].Passwords[j] = fmt.Sprintf("%s-%d-%d", secretMarker, i, j)
				}
			}
			tt.edit(&r)
			out, err := RedisConf(r)
			if err == nil {
				t.Fatalf("no error; rendered:\n%s", out)
			}
			fe := checkFieldError(t, err)
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (error %q)", fe.Field, tt.field, err)
			}
			if strings.Contains(err.Error(), secretMarker) || strings.Contains(err.Error(), "7f3a") {
				t.Errorf("error leaks the password: %q", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
			checkRedisRoundTrip(t, r)
		})
	}
}

func TestSentinelConfErrors(t *testing.T) {
	tests := []struct {
		field string
		edit  func(*Sentinel)
	}{
		{"Address", func(s *Sentinel) { s.Address = "sentinel-0" }},
		{"Port", func(s *Sentinel) { s.Port = 70000 }},
		{"PeerPassword", func(s *Sentinel) { s.PeerPassword = "" }},
		{"PeerPassword", func(s *Sentinel) { s.PeerPassword = secretMarker + " " + secretMarker }},
		{"PeerPassword", func(s *Sentinel) { s.PeerPassword = secretMarker + "\n" }},
		{"PeerPassword", func(s *Sentinel) { s.PeerPassword = secretMarker + "\"" }},
		{"PeerPassword", func(s *Sentinel) { s.PeerPassword = secretMarker + "'" }},
		{"PeerPassword", func(s *Sentinel) { s.PeerPassword = secretMarker + "é" }},
		{"PeerUser", func(s *Sentinel) { s.PeerUser = "" }},
		{"PeerUser", func(s *Sentinel) { s.PeerUser = "rsf peer" }},
		{"AuthUser", func(s *Sentinel) { s.AuthUser = "rsf-sentinel\nsentinel monitor x 1.2.3.4 6379 1" }},
		{"AuthUser", func(s *Sentinel) { s.AuthUser = "'rsf'" }},
		{"Users[3].Name", func(s *Sentinel) { s.Users[3].Name = "back end" }},
		{"Users[2].Name", func(s *Sentinel) { s.Users[2].Name = "rsf-admin" }},
		{"Users[0]", func(s *Sentinel) { s.Users[0].Passwords = []string{secretMarker} }},
		{"Users[1].Passwords[0]", func(s *Sentinel) { s.Users[1].Passwords = []string{""} }},
		{"Users[3].Rules[2]", func(s *Sentinel) { s.Users[3].Rules = []string{"-@all", "+ping", ">" + secretMarker} }},
		{"Users[3].Rules[0]", func(s *Sentinel) { s.Users[3].Rules = []string{"&a b"} }},
		{"MasterName", func(s *Sentinel) { s.MasterName = "" }},
		{"MasterName", func(s *Sentinel) { s.MasterName = "my master" }},
		{"MasterName", func(s *Sentinel) { s.MasterName = "-flag" }},
		{"MasterName", func(s *Sentinel) { s.MasterName = "m\nsentinel monitor x 1.2.3.4 6379 1" }},
		{"MasterName", func(s *Sentinel) { s.MasterName = "\"m\"" }},
		{"Master.Host", func(s *Sentinel) { s.Master.Host = "redis-0" }},
		{"Master.Port", func(s *Sentinel) { s.Master.Port = 0 }},
		{"Quorum", func(s *Sentinel) { s.Quorum = 0 }},
		{"DownAfterMs", func(s *Sentinel) { s.DownAfterMs = 0 }},
		{"DownAfterMs", func(s *Sentinel) { s.DownAfterMs = 1 << 40 }},
		{"FailoverTimeoutMs", func(s *Sentinel) { s.FailoverTimeoutMs = -5 }},
		{"ParallelSyncs", func(s *Sentinel) { s.ParallelSyncs = 0 }},
		{"AuthPass", func(s *Sentinel) { s.AuthPass = "" }},
		{"AuthPass", func(s *Sentinel) { s.AuthPass = secretMarker + "\nrequirepass x" }},
		{"AuthPass", func(s *Sentinel) { s.AuthPass = secretMarker + "\x00" }},
		{"AuthPass", func(s *Sentinel) { s.AuthPass = secretMarker + "\t" }},
		{"KnownReplicas[1].Host", func(s *Sentinel) { s.KnownReplicas[1].Host = "10.42.0.12\nsentinel monitor x 1.2.3.4 6379 1" }},
		{"KnownReplicas[0].Port", func(s *Sentinel) { s.KnownReplicas[0].Port = 0 }},
		{"ID", func(s *Sentinel) { s.ID = "not-a-run-id" }},
		{"ID", func(s *Sentinel) { s.ID = strings.ToUpper(s.ID) }},
		{"KnownSentinels[1].Address.Host", func(s *Sentinel) { s.KnownSentinels[1].Address.Host = "sentinel.example" }},
		{"KnownSentinels[0].Address.Port", func(s *Sentinel) { s.KnownSentinels[0].Address.Port = 70000 }},
		{"KnownSentinels[1].ID", func(s *Sentinel) {
			s.KnownSentinels[1].ID = s.KnownSentinels[1].ID + "\nsentinel monitor x 1.2.3.4 6379 1"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			s := typicalSentinel()
			s.PeerPassword = "S-" + secretMarker
			s.AuthPass = "R-" + secretMarker
			for i := range s.Users {
				for j := range s.Users[i].Passwords {
					s.Users[i].Passwords[j] = fmt.Sprintf("%s-%d-%d", secretMarker, i, j)
				}
			}
			tt.edit(&s)
			out, err := SentinelConf(s)
			if err == nil {
				t.Fatalf("no error; rendered:\n%s", out)
			}
			fe := checkFieldError(t, err)
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (error %q)", fe.Field, tt.field, err)
			}
			if strings.Contains(err.Error(), secretMarker) || strings.Contains(err.Error(), "7f3a") {
				t.Errorf("error leaks a password: %q", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
			checkSentinelRoundTrip(t, s)
		})
	}
}

func TestFieldErrorAs(t *testing.T) {
	_, err := RedisConf(Redis{})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Address" {
		t.Fatalf("got %v", err)
	}
}

func TestRoundTripNastyPasswords(t *testing.T) {
	for _, pw := range nastyStrings {
		r := typicalRedis()
		r.MasterAuth = pw
		checkRedisRoundTrip(t, r)
		r.Users[4].Passwords = []string{pw, pw + "2"}
		r.ReplicaOf = &endpoint.Endpoint{Host: "10.42.0.10", Port: 6379}
		checkRedisRoundTrip(t, r)

		// Nasty names and rules: refused or rendered as exactly themselves.
		r = typicalRedis()
		r.Users[4].Name = pw
		r.MasterUser = pw
		r.Users[4].Rules = append(r.Users[4].Rules, pw, "~"+pw, "&"+pw)
		checkRedisRoundTrip(t, r)

		s := typicalSentinel()
		s.PeerPassword = pw
		s.AuthPass = pw + "2"
		s.Users[2].Passwords = []string{pw}
		checkSentinelRoundTrip(t, s)

		s = typicalSentinel()
		s.PeerUser = pw
		s.AuthUser = pw
		s.Users[3].Name = pw
		s.Users[3].Rules = []string{"+" + pw}
		checkSentinelRoundTrip(t, s)

		s = typicalSentinel()
		s.MasterName = pw
		checkSentinelRoundTrip(t, s)

		r = typicalRedis()
		r.Maxmemory = pw
		r.Address = pw
		checkRedisRoundTrip(t, r)
	}
}

// Every byte value, alone and between others, survives quoteToken +
// sdssplitargs, and the token only contains printable ASCII.
func TestQuoteTokenAllBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), "a" + string([]byte{byte(c)}) + "b", string([]byte{byte(c), byte(c)})} {
			q := quoteToken(s)
			for i := 0; i < len(q); i++ {
				if q[i] < 0x20 || q[i] > 0x7e {
					t.Fatalf("quoteToken(%q) = %q contains %#x", s, q, q[i])
				}
			}
			args, ok := SplitArgs("masterauth " + q)
			if !ok || len(args) != 2 || args[1] != s {
				t.Fatalf("quoteToken(%q) = %q parses as %q, %v", s, q, args, ok)
			}
		}
	}
}

func TestQuoteTokenExamples(t *testing.T) {
	for in, want := range map[string]string{
		"":           `""`,
		"plain":      `"plain"`,
		`a"b`:        `"a\"b"`,
		`a\b`:        `"a\\b"`,
		"a\nb":       `"a\nb"`,
		"\r\t\a\b":   `"\r\t\a\b"`,
		"\x00\x01":   `"\x00\x01"`,
		"\x7f\xff":   `"\x7f\xff"`,
		"é":          `"\xc3\xa9"`,
		"it's a pw ": `"it's a pw "`,
	} {
		if got := quoteToken(in); got != want {
			t.Errorf("quoteToken(%q) = %s, want %s", in, got, want)
		}
	}
}

// The port of sdssplitargs itself, on inputs whose Redis results are known.
func TestSdsSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string // nil: Redis returns NULL
	}{
		{``, []string{}},
		{"   \t ", []string{}},
		{`foo bar "newline are supported\n" and "\xff\x00otherstuff"`, []string{"foo", "bar", "newline are supported\n", "and", "\xff\x00otherstuff"}},
		{`"foo"bar`, nil},
		{`"foo`, nil},
		{`'foo`, nil},
		{`'foo'bar`, nil},
		{`'it\'s' "x"`, []string{"it's", "x"}},
		{`'a\nb'`, []string{`a\nb`}},
		{`a"b c" d`, []string{"ab c", "d"}},
		{`"\x4g"`, []string{"x4g"}},
		{`"\x"`, []string{"x"}},
		{`"\q\\\""`, []string{`q\"`}},
		{`"a"` + "\v" + `b`, []string{"a", "b"}},
		{"a\vb", []string{"a\vb"}},
		{"\vleading", []string{"leading"}},
		{`""`, []string{""}},
		{`"" ""`, []string{"", ""}},
		{"a\x00b", []string{"a"}},
		{`back\slash`, []string{`back\slash`}},
	}
	for _, tt := range tests {
		got, ok := SplitArgs(tt.in)
		if tt.want == nil {
			if ok {
				t.Errorf("SplitArgs(%q) = %q, want NULL", tt.in, got)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestParseConf(t *testing.T) {
	got, err := ParseConf([]byte("# comment\n\n  PORT 1 \r\n\t# indented comment\nSentinel Monitor m 1.2.3.4 5 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Line{{Num: 3, Args: []string{"port", "1"}}, {Num: 5, Args: []string{"sentinel", "Monitor", "m", "1.2.3.4", "5", "1"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if _, err := ParseConf([]byte("masterauth \"a\nb\"\n")); err == nil {
		t.Fatal("a raw newline inside quotes must be an unbalanced-quote error")
	}
}

func TestMaxmemoryAccepted(t *testing.T) {
	for _, v := range []string{"0", "1", "100mb", "1GB", "2g", "512K", "999999999999999", "17179869183gb", "18446744073709m"} {
		r := typicalRedis()
		r.Maxmemory = v
		if _, err := RedisConf(r); err != nil {
			t.Errorf("Maxmemory %q: %v", v, err)
		}
	}
}

// TestRuntimeSettingsMatchTheFile: what a running server is told with CONFIG
// SET equals what the rendered file says, parsed back.
func TestRuntimeSettingsMatchTheFile(t *testing.T) {
	in := Redis{
		Address: "10.77.0.11", Port: 6379, Users: typicalRedis().Users, MasterUser: "rsf-replication", MasterAuth: "pw-0123456789abcdef", Maxmemory: "512mb",
		MaxmemoryPolicy: "volatile-lfu", AppendOnly: true, AppendFsync: "always",
		SavePoints: []SavePoint{{Seconds: 900, Changes: 1}, {Seconds: 60, Changes: 1000}}, MinReplicasToWrite: 1, MinReplicasMaxLag: 10,
	}
	settings, err := RuntimeSettings(in)
	if err != nil {
		t.Fatal(err)
	}
	conf, _ := RedisConf(in)
	lines, err := ParseConf(conf)
	if err != nil {
		t.Fatal(err)
	}
	file := map[string][]string{}
	for _, l := range lines {
		file[l.Args[0]] = append(file[l.Args[0]], strings.Join(l.Args[1:], " "))
	}
	for param, value := range settings {
		if param == "user" || param == "masterauth" || param == "masteruser" || param == "requirepass" {
			t.Errorf("RuntimeSettings carries %s: users and passwords are set with ACL SETUSER, not CONFIG SET", param)
		}
		got := strings.Join(file[param], " ")
		if got != value {
			t.Errorf("%s: CONFIG SET %q, file says %q", param, value, got)
		}
	}
	if _, err := RuntimeSettings(Redis{}); err == nil {
		t.Fatal("invalid input accepted")
	}
}
