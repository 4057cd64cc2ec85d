package acl_test

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

func TestAccepted(t *testing.T) {
	tests := []struct {
		p    acl.Passwords
		want []string
	}{
		{acl.Passwords{Current: "new"}, []string{"new"}},
		{acl.Passwords{Current: "new", Previous: "old"}, []string{"new", "old"}},
		{acl.Passwords{Current: "same", Previous: "same"}, []string{"same"}},
	}
	for _, tc := range tests {
		if got := tc.p.Accepted(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v.Accepted() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestSetUserArgs(t *testing.T) {
	tests := []struct {
		name string
		u    acl.User
		want []string
	}{
		{"no password: off", acl.User{Name: "default"}, []string{"default", "reset", "off"}},
		{"one password", acl.User{Name: "u", Passwords: []string{"p"}, Rules: []string{"-@all", "+ping"}},
			[]string{"u", "reset", "on", ">p", "-@all", "+ping"}},
		{"grace period: two passwords", acl.User{Name: "u", Passwords: []string{"new", "old"}, Rules: []string{"+@all"}},
			[]string{"u", "reset", "on", ">new", ">old", "+@all"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.u.SetUserArgs(); !slices.Equal(got, tc.want) {
				t.Errorf("SetUserArgs() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHashes(t *testing.T) {
	u := acl.User{Name: "u", Passwords: []string{"new", "old"}}
	got := u.Hashes()
	for i, p := range u.Passwords {
		sum := sha256.Sum256([]byte(p))
		if got[i] != hex.EncodeToString(sum[:]) {
			t.Errorf("Hashes()[%d] = %s", i, got[i])
		}
	}
	// ACL's own example: SHA-256 of "foo".
	if h := (acl.User{Passwords: []string{"foo"}}).Hashes()[0]; h != "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae" {
		t.Errorf("hash of foo = %s", h)
	}
}

func TestUsers(t *testing.T) {
	creds := acl.Set{}
	for i, c := range acl.All {
		creds[c] = acl.Passwords{Current: string(c) + "-now"}
		if i == 0 {
			creds[c] = acl.Passwords{Current: string(c) + "-now", Previous: string(c) + "-before"}
		}
	}
	rules := []string{"~app:*", "+get"}
	backend := acl.Backend{Name: "app", Rules: rules}

	byName := func(users []acl.User) map[string]acl.User {
		m := map[string]acl.User{}
		for _, u := range users {
			if _, dup := m[u.Name]; dup {
				t.Errorf("user %s twice", u.Name)
			}
			m[u.Name] = u
		}
		return m
	}
	server := byName(acl.ServerUsers(creds, backend))
	sentinel := byName(acl.SentinelUsers(creds, backend, engine.Engine{}))

	for where, users := range map[string]map[string]acl.User{"server": server, "sentinel": sentinel} {
		if d, ok := users[acl.DefaultUser]; !ok || len(d.Passwords) != 0 || d.SetUserArgs()[2] != "off" {
			t.Errorf("%s: the default user is not disabled: %+v", where, d)
		}
		if a := users[acl.AdminUser]; !slices.Equal(a.Passwords, []string{"admin-now"}) {
			t.Errorf("%s: admin passwords %q", where, a.Passwords)
		}
	}
	if b := server["app"]; !slices.Equal(b.Passwords, []string{"backend-now", "backend-before"}) || !slices.Equal(b.Rules, rules) {
		t.Errorf("server backend user %+v", b)
	}
	// The server user's rules are a copy: changing them leaves the spec's alone.
	server["app"].Rules[0] = "~*"
	if rules[0] != "~app:*" {
		t.Error("ServerUsers shares the backend's rule slice")
	}
	if b := sentinel["app"]; !slices.Equal(b.Passwords, []string{"backend-sentinel-now"}) || !slices.Equal(b.Rules, acl.DiscoveryRules) {
		t.Errorf("sentinel backend user %+v, want discovery rules", b)
	}
	// Per engine: CLIENT SETINFO only where the sentinel knows it.
	for _, c := range []struct {
		e    engine.Engine
		want []string
	}{
		{engine.MustOf(engine.Redis), acl.DiscoveryRules},
		{engine.MustOf(engine.Valkey), append(slices.Clone(acl.DiscoveryRules), "+client|setinfo")},
	} {
		got := byName(acl.SentinelUsers(creds, backend, c.e))["app"].Rules
		if !slices.Equal(got, c.want) {
			t.Errorf("%s sentinel: backend rules %q, want %q", c.e.Name, got, c.want)
		}
		got[0] = "+@all"
		if acl.DiscoveryRules[0] != "-@all" {
			t.Fatal("SentinelUsers shares DiscoveryRules' slice")
		}
	}
	for _, name := range []string{acl.ReplicationUser, acl.MonitoringUser} {
		if _, ok := server[name]; !ok {
			t.Errorf("server users lack %s", name)
		}
		if _, ok := sentinel[name]; ok {
			t.Errorf("sentinel users hold %s", name)
		}
	}
	if _, ok := sentinel[acl.PeerUser]; !ok {
		t.Errorf("sentinel users lack %s", acl.PeerUser)
	}
}
