package config

import (
	"net"
	"strings"
	"testing"
)

// FuzzFromMap: any REDIS_* values either parse into a usable config or give
// an error that names a variable and never quotes a password.
func FuzzFromMap(f *testing.F) {
	f.Add("redis://:pw-123@dummy:6379/0", "10.0.0.1:26379, 10.0.0.2:26379,", "mymaster", "spw-456")
	f.Add("redis://:p%40ss@host:6379/2", "", "", "")
	f.Add("redis://:\n@x:1/0", "a:b:c", "m y", "s\"pw")
	f.Add("rediss://user:secret@[::1]:6380/15", "[::1]:26379", "m-1.x", "")
	f.Fuzz(func(t *testing.T, url, addrs, master, sentinelPassword string) {
		cfg, err := FromMap(map[string]string{EnvURL: url, EnvSentinelAddrs: addrs, EnvMasterName: master, EnvSentinelPassword: sentinelPassword})
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "REDIS_") {
				t.Fatalf("error names no variable: %q", msg)
			}
			for _, secret := range []string{sentinelPassword, passwordOf(url)} {
				if len(secret) >= 4 && strings.Contains(msg, secret) {
					t.Fatalf("error quotes a password: %q", msg)
				}
			}
			return
		}
		for _, a := range cfg.SentinelAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil || strings.TrimSpace(a) != a || a == "" {
				t.Fatalf("accepted a bad sentinel address %q", a)
			}
		}
		if cfg.SentinelMode() && cfg.MasterName == "" {
			t.Fatal("sentinel mode without a master name")
		}
		if s := cfg.String(); cfg.Password != "" && len(cfg.Password) >= 4 && strings.Contains(s, cfg.Password) {
			t.Fatalf("String() shows the password: %q", s)
		}
	})
}

// passwordOf is the password part of a redis URL, as written.
func passwordOf(url string) string {
	at := strings.LastIndex(url, "@")
	colon := strings.Index(url, "://")
	if at < 0 || colon < 0 || at < colon+3 {
		return ""
	}
	userinfo := url[colon+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return userinfo[i+1:]
	}
	return ""
}
