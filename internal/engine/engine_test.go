package engine

import "testing"

func TestEngines(t *testing.T) {
	redis, valkey := MustOf(Redis), MustOf(Valkey)
	if e, err := Of(""); err != nil || e.Name != Redis {
		t.Fatalf(`Of("") = %v, %v; want Redis (formations before engines existed)`, e.Name, err)
	}
	if _, err := Of("keydb"); err == nil {
		t.Fatal("Of(keydb) accepted")
	}
	// A name read back from a container: Redis unless it names a known engine.
	for n, want := range map[Name]Name{"": Redis, "keydb": Redis, Redis: Redis, Valkey: Valkey} {
		if got := Lookup(n).Name; got != want {
			t.Errorf("Lookup(%q) = %s, want %s", n, got, want)
		}
	}
	// Debian's layouts, as the units of each package expect them.
	cases := []struct{ got, want string }{
		{redis.ServerConf, "/etc/redis/redis.conf"},
		{redis.SentinelConf, "/etc/redis/sentinel.conf"},
		{redis.ServerUnit + " " + redis.SentinelUnit, "redis-server redis-sentinel"},
		{redis.ServerPid + " " + redis.SentinelPid, "/run/redis/redis-server.pid /run/sentinel/redis-sentinel.pid"},
		{redis.DefaultImage, "rsf-redis7-bookworm-v1"},
		{valkey.ServerConf, "/etc/valkey/valkey.conf"},
		{valkey.SentinelConf, "/etc/valkey/sentinel.conf"},
		{valkey.ServerUnit + " " + valkey.SentinelUnit, "valkey-server valkey-sentinel"},
		{valkey.ServerLog + " " + valkey.DataDir, "/var/log/valkey/valkey-server.log /var/lib/valkey"},
		{valkey.ServerPid + " " + valkey.SentinelPid, "/run/valkey/valkey-server.pid /run/sentinel/valkey-sentinel.pid"},
		{valkey.Chown("/etc/valkey/a", "/etc/valkey/b"), "chown valkey:valkey /etc/valkey/a /etc/valkey/b"},
		{valkey.DefaultImage, "rsf-valkey8-bookworm-v1"},
		// CONFIG REWRITE's names (asserted on real servers in internal/render).
		{redis.RewrittenAs("masterauth") + " " + redis.RewrittenAs("masteruser"), "masterauth masteruser"},
		{valkey.RewrittenAs("masterauth") + " " + valkey.RewrittenAs("masteruser"), "primaryauth primaryuser"},
		{valkey.RewrittenAs("replicaof") + " " + valkey.RewrittenAs("replica-priority"), "replicaof replica-priority"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if redis.ClientSetInfo || !valkey.ClientSetInfo {
		t.Error("CLIENT SETINFO: Redis 7.0 does not know it, Valkey 8 does")
	}
	// Replication goes one way: Redis 7 cannot load Valkey 8's RDB.
	for _, c := range []struct {
		replica, master Engine
		ok              bool
	}{{redis, redis, true}, {valkey, valkey, true}, {valkey, redis, true}, {redis, valkey, false}} {
		if got := c.replica.CanReplicateFrom(c.master); got != c.ok {
			t.Errorf("%s replica of %s master: %v, want %v", c.replica.Name, c.master.Name, got, c.ok)
		}
	}
}
