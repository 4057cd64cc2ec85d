package sentinel

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// TestMixedEngines is a formation half-way through a change of engine, on
// real servers: a Redis 7 master with a Valkey 8 replica, watched by a
// redis-sentinel and a valkey-sentinel (quorum 2).
//   - The Valkey replica syncs from the Redis master.
//   - The sentinels of both kinds see each other, and both the master and
//     the replica, and agree that the quorum can be reached (CKQUORUM).
//   - SENTINEL FAILOVER on the Redis sentinel promotes the Valkey replica;
//     both sentinels announce +switch-master, which the watcher records as
//     one switch.
//   - A Redis 7 replica of the Valkey master never completes a full sync:
//     Redis 7.0 cannot load Valkey 8's RDB (format version 11), the
//     one-way rule engine.CanReplicateFrom encodes. The old master may
//     continue by partial resynchronization right after the failover (no
//     RDB is sent); restarted, it needs a full sync, and its link stays
//     down.
func TestMixedEngines(t *testing.T) {
	valkey, redisEngine := engine.MustOf(engine.Valkey), engine.MustOf(engine.Redis)
	if !valkey.CanReplicateFrom(redisEngine) || redisEngine.CanReplicateFrom(valkey) {
		t.Fatal("engine.CanReplicateFrom no longer says what this test shows")
	}
	master, replica, sentinels := startFormation(t, 2, engine.Redis, engine.Valkey, engine.Redis, engine.Valkey)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	masterAt := endpoint.Endpoint{Host: "127.0.0.1", Port: master.Port}
	replicaAt := endpoint.Endpoint{Host: "127.0.0.1", Port: replica.Port}
	d := redisadmin.NewGoRedisDialer(2 * time.Second)
	defer d.Close()
	servers := d.Admin("ns/servers", redisadmin.Credentials{Password: password})
	sentinelAdmin := d.Admin("ns/sentinels", redisadmin.Credentials{Password: sentinelPassword})
	sentinelAt := func(i int) endpoint.Endpoint { return endpoint.Endpoint{Host: "127.0.0.1", Port: sentinels[i].Port} }
	names := []string{"redis-sentinel", "valkey-sentinel"}
	poll := func(what string, timeout time.Duration, f func() error) {
		t.Helper()
		for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
			err := f()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}

	rec := &recorder{}
	w := New(logr.Discard(), strictGuard(t), rec.trigger)
	defer w.Stop()
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword},
		[]Target{{Member: names[0], Addr: sentinels[0].Addr()}, {Member: names[1], Addr: sentinels[1].Addr()}})

	poll("the Valkey replica syncs from the Redis master", 10*time.Second, func() error {
		r, err := servers.Replication(ctx, replicaAt)
		if err != nil || r.Role != "slave" || r.Master != masterAt || !r.LinkUp {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})

	// Each sentinel sees the master, its replica and the other sentinel,
	// with its run ID (learnt from the other's hello messages).
	poll("sentinels of both kinds see each other", 15*time.Second, func() error {
		for i := range sentinels {
			m, err := sentinelAdmin.SentinelMaster(ctx, sentinelAt(i), "mymaster")
			if err != nil || m.Address != masterAt || !m.HasFlag("master") || m.NumReplicas != 1 || m.NumOtherSentinels != 1 || m.Quorum != 2 {
				return fmt.Errorf("%s: %+v %v", names[i], m, err)
			}
			sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[i].Addr(), Password: sentinelPassword})
			peers, err := sc.Sentinels(ctx, "mymaster").Result()
			sc.Close()
			other := fmt.Sprint(sentinels[1-i].Port)
			if err != nil || len(peers) != 1 || peers[0]["port"] != other || peers[0]["flags"] != "sentinel" || peers[0]["runid"] == "" {
				return fmt.Errorf("%s: SENTINEL SENTINELS %v %v, want the sentinel on port %s", names[i], peers, err, other)
			}
		}
		return nil
	})
	for i := range sentinels {
		if err := sentinelAdmin.SentinelCKQuorum(ctx, sentinelAt(i), "mymaster"); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
	}

	// The Redis sentinel promotes the Valkey replica.
	rec.waitFor(t, 5*time.Second, "subscribed", "")
	for deadline := time.Now().Add(5 * time.Second); rec.announcers("subscribed", "") < len(sentinels); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not subscribe to both sentinels: %+v", rec.events)
		}
	}
	if err := sentinelAdmin.SentinelFailover(ctx, sentinelAt(0), "mymaster"); err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf("mymaster 127.0.0.1 %d 127.0.0.1 %d", master.Port, replica.Port)
	poll("both sentinels announce +switch-master", 15*time.Second, func() error {
		if n := rec.announcers("+switch-master", payload); n != len(sentinels) {
			return fmt.Errorf("%d of %d announced %q", n, len(sentinels), payload)
		}
		return nil
	})
	if sw := w.Switches(key); len(sw) != 1 || sw[0].From != master.Addr() || sw[0].To != replica.Addr() || sw[0].Epoch <= 0 {
		t.Fatalf("switches %+v, want one %s -> %s with its epoch", sw, master.Addr(), replica.Addr())
	}
	poll("the Valkey replica is the master", 10*time.Second, func() error {
		r, err := servers.Replication(ctx, replicaAt)
		if err != nil || !r.IsMaster() {
			return fmt.Errorf("%+v %v", r, err)
		}
		for i := range sentinels {
			if m, err := sentinelAdmin.SentinelMaster(ctx, sentinelAt(i), "mymaster"); err != nil || m.Address != replicaAt {
				return fmt.Errorf("%s: %+v %v", names[i], m, err)
			}
		}
		return nil
	})

	// The old Redis master, made a replica of the Valkey master (the
	// sentinels would make it one too; REPLICAOF does it now), may
	// continue from the replication history the two share with a partial
	// resynchronization, which sends no RDB: its link is then up. Whether
	// it can depends on whether a sentinel's hello reached it after the
	// promotion (a PUBLISH moves its offset past the new master's). A full
	// sync never succeeds.
	if err := servers.ReplicaOf(ctx, masterAt, replicaAt); err != nil {
		t.Fatal(err)
	}
	const (
		partial  = "Successful partial resynchronization with master"
		fullSync = "MASTER <-> REPLICA sync: Finished with success"
		refused  = "Can't handle RDB format version 11"
	)
	poll("the old master continues or fails", 10*time.Second, func() error {
		r, err := servers.Replication(ctx, masterAt)
		out := master.Output()
		switch {
		case err != nil:
			return err
		case r.Role != "slave" || r.Master != replicaAt:
			return fmt.Errorf("not a replica of the Valkey master yet: %+v", r)
		case strings.Contains(out, fullSync):
			t.Fatalf("a Redis 7.0 replica completed a full sync from Valkey 8:\n%s", out)
		case r.LinkUp && !strings.Contains(out, partial):
			// redis-server logs the partial resync before it reports the
			// link up, but its output reaches us through a pipe a moment
			// later: a link up whose line never comes fails the poll.
			return fmt.Errorf("link up without a partial resynchronization logged: %+v\n%s", r, out)
		case r.LinkUp:
			t.Logf("the old Redis master continued by partial resynchronization (link up, no RDB): %s", lastLine(out, partial))
		case strings.Contains(out, refused):
			t.Logf("the old Redis master needed a full sync, which failed: %s", lastLine(out, refused))
		default:
			return fmt.Errorf("link down, no sync attempt seen yet: %+v", r)
		}
		return nil
	})

	// Restarted, as a member is, it has no replication history (no RDB:
	// save "", and a dir of its own), so it needs a full sync: every one
	// fails on Valkey's RDB, and its link never comes up. (It retries at
	// once, so the Valkey master streams it a full RDB again and again.)
	restarted, err := master.Restart()
	if err != nil {
		t.Fatal(err)
	}
	restarted.StopAtCleanup(t)
	since, checks := time.Now(), 0
	poll("the restarted Redis replica fails its full syncs for a second", 15*time.Second, func() error {
		r, err := servers.Replication(ctx, masterAt)
		if err != nil {
			return err
		}
		checks++
		if r.LinkUp || r.Role != "slave" || r.Master != replicaAt {
			t.Fatalf("a restarted Redis replica of the Valkey master: %+v (want its link down)\n%s", r, restarted.Output())
		}
		if n := strings.Count(restarted.Output(), refused); n < 3 || time.Since(since) < time.Second {
			return fmt.Errorf("%d failed full syncs so far", n)
		}
		return nil
	})
	t.Logf("link down at all %d checks in %s, through %d failed full syncs; redis-server said: %s", checks,
		time.Since(since).Round(time.Millisecond), strings.Count(restarted.Output(), refused), lastLine(restarted.Output(), refused))
}

// lastLine is the last line of out that contains s.
func lastLine(out, s string) string {
	lines := strings.Split(out, "\n")
	for j := len(lines) - 1; j >= 0; j-- {
		if strings.Contains(lines[j], s) {
			return strings.TrimSpace(lines[j])
		}
	}
	return ""
}
