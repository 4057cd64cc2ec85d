package testredis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// A missing binary is reported with the package that ships it.
func TestBinaryNamesThePackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, c := range []struct {
		n        engine.Name
		sentinel bool
		want     []string
	}{
		{"", false, []string{"redis-server not installed", "package redis-server", "make test-deps"}},
		{engine.Redis, true, []string{"redis-sentinel not installed", "package redis-sentinel"}},
		{engine.Valkey, false, []string{"valkey-server not installed", "package valkey-server", "bookworm-backports", "make test-deps-backports", "make lab-host"}},
		{engine.Valkey, true, []string{"valkey-sentinel not installed", "package valkey-sentinel"}},
	} {
		_, err := Binary(c.n, c.sentinel)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Binary(%q, %v) = %v, want an error with %q", c.n, c.sentinel, err, w)
			}
		}
	}
	if _, err := Binary("keydb", false); err == nil {
		t.Error("Binary(keydb) found something")
	}
}

// Each engine's programs are what they claim: the server and the sentinel
// of that engine, in the right mode.
func TestEnginesRunTheirOwnPrograms(t *testing.T) {
	ForEach(t, func(t *testing.T, e engine.Engine) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, sentinel := range []bool{false, true} {
			port, err := testenv.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			conf := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\n", port, t.TempDir())
			if sentinel {
				conf += fmt.Sprintf("sentinel monitor m 127.0.0.1 %d 1\n", port+1)
			} else {
				conf += "save \"\"\nappendonly no\n"
			}
			p, err := Start(t.TempDir(), port, []byte(conf), Spec{Engine: e.Name, Sentinel: sentinel})
			if err != nil {
				t.Fatal(err)
			}
			p.StopAtCleanup(t)
			c := redis.NewClient(&redis.Options{Addr: p.Addr(), DisableIdentity: true})
			info, err := c.Info(ctx, "server").Result()
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			mode := "standalone"
			if sentinel {
				mode = "sentinel"
			}
			// Valkey 8 answers as Redis 7.2 and names itself apart.
			want := map[engine.Name][]string{
				engine.Redis:  {"redis_version:7.", "redis_mode:" + mode},
				engine.Valkey: {"redis_version:7.2.", "server_name:valkey", "valkey_version:8.", "server_mode:" + mode},
			}[e.Name]
			for _, w := range want {
				if !strings.Contains(info, w) {
					t.Errorf("%s (sentinel %v): INFO server lacks %q:\n%s", e.Name, sentinel, w, info)
				}
			}
			if e.Name == engine.Redis && strings.Contains(info, "valkey") {
				t.Errorf("redis-server says valkey:\n%s", info)
			}
		}
	})
}
