package redisfake_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin/redisfake"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

const (
	password         = "redis-pw-\"quoted\""
	sentinelPassword = "sentinel-pw"
	masterName       = "mymaster"
)

// configureScript is the operator's configure step (controllers/heal.go).
const configureScript = "set -e; chown redis:redis /etc/redis/redis.conf /etc/redis/sentinel.conf" +
	" && systemctl enable --now redis-sentinel && systemctl start --no-block redis-server && touch /etc/redis/rsf-configured"

var probe = []string{"sh", "-c", `printf '%s %s %s\n' "$(test -f /etc/redis/rsf-configured && echo yes || echo no)" ` +
	`"$(systemctl is-active redis-server)" "$(systemctl is-active redis-sentinel)"`}

// formation creates three running instances and configures them the way
// the operator does: member 1 master, 2 and 3 its replicas, every sentinel
// monitoring member 1.
func formation(t *testing.T) (*incusfake.Fake, *redisfake.World, []endpoint.Endpoint) {
	t.Helper()
	ctx := context.Background()
	f := incusfake.New()
	w := redisfake.New()
	w.Attach(f)
	var hosts []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("f-%d", i)
		if err := f.CreateInstance(ctx, incus.InstanceSpec{Name: name, Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}}); err != nil {
			t.Fatal(err)
		}
		inst, err := f.GetInstance(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, inst.IPv4)
	}
	master := endpoint.Endpoint{Host: hosts[0], Port: 6379}
	var redises []endpoint.Endpoint
	for i, host := range hosts {
		name := fmt.Sprintf("f-%d", i+1)
		if res, _ := f.Exec(ctx, name, probe); res.Stdout != "no inactive inactive\n" {
			t.Fatalf("probe of a new member: %q", res.Stdout)
		}
		r := render.Redis{Address: host, Port: 6379, Password: password, Maxmemory: "1gb", MaxmemoryPolicy: "allkeys-lru", AppendFsync: "everysec"}
		if i > 0 {
			r.ReplicaOf = &master
		}
		conf, err := render.RedisConf(r)
		if err != nil {
			t.Fatal(err)
		}
		sconf, err := render.SentinelConf(render.Sentinel{Address: host, Port: 26379, Password: sentinelPassword, MasterName: masterName,
			Master: master, Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 30000, ParallelSyncs: 1, RedisPassword: "redis-pw-quoted"})
		if err != nil {
			t.Fatal(err)
		}
		// Before the files exist, chown fails like in the container.
		if res, _ := f.Exec(ctx, name, []string{"sh", "-c", configureScript}); res.ExitCode == 0 {
			t.Fatal("configure without files succeeded")
		}
		_ = f.WriteFile(ctx, name, "/etc/redis/redis.conf", conf, 0o640, 0, 0)
		_ = f.WriteFile(ctx, name, "/etc/redis/sentinel.conf", sconf, 0o640, 0, 0)
		if res, err := f.Exec(ctx, name, []string{"sh", "-c", configureScript}); err != nil || res.ExitCode != 0 {
			t.Fatalf("configure %s: %+v %v", name, res, err)
		}
		if res, _ := f.Exec(ctx, name, probe); res.Stdout != "yes active active\n" {
			t.Fatalf("probe of a configured member: %q", res.Stdout)
		}
		redises = append(redises, endpoint.Endpoint{Host: host, Port: 6379})
	}
	if p := w.Problems(); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}
	return f, w, redises
}

func sentinelOf(e endpoint.Endpoint) endpoint.Endpoint {
	return endpoint.Endpoint{Host: e.Host, Port: 26379}
}

func TestFormationComesUp(t *testing.T) {
	ctx := context.Background()
	_, w, redises := formation(t)
	a := w.Admin("test", redisadmin.Credentials{Password: password, SentinelPassword: sentinelPassword})

	m, err := a.Replication(ctx, redises[0])
	if err != nil || !m.IsMaster() || m.ConnectedReplicas != 2 || m.Offset == 0 || m.Maxmemory != 1<<30 {
		t.Fatalf("master INFO: %+v %v", m, err)
	}
	for _, e := range redises[1:] {
		r, err := a.Replication(ctx, e)
		if err != nil || r.IsMaster() || r.Master != redises[0] || !r.LinkUp || r.Offset != m.Offset {
			t.Fatalf("replica %s INFO: %+v %v", e, r, err)
		}
	}
	// The password the sentinel.conf carried is wrong: the sentinels see
	// the master down until auth-pass is fixed.
	st, err := a.SentinelMaster(ctx, sentinelOf(redises[0]), masterName)
	if err != nil || !st.HasFlag("s_down") || st.NumReplicas != 0 {
		t.Fatalf("SENTINEL MASTER with a wrong auth-pass: %+v %v", st, err)
	}
	for _, e := range redises {
		if err := a.SentinelSet(ctx, sentinelOf(e), masterName, map[string]string{"auth-pass": password}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range redises {
		st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName)
		if err != nil || st.Address != redises[0] || st.HasFlag("s_down") || st.NumReplicas != 2 || st.NumOtherSentinels != 2 ||
			st.Quorum != 2 || st.DownAfterMs != 5000 || st.FailoverTimeoutMs != 30000 || st.ParallelSyncs != 1 {
			t.Fatalf("SENTINEL MASTER on %s: %+v %v", e, st, err)
		}
		if err := a.SentinelCKQuorum(ctx, sentinelOf(e), masterName); err != nil {
			t.Fatalf("CKQUORUM: %v", err)
		}
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[0]), "other"); !errors.Is(err, redisadmin.ErrNoSuchMaster) {
		t.Fatalf("unknown master name: %v", err)
	}
	bad := w.Admin("test", redisadmin.Credentials{Password: "nope", SentinelPassword: "nope"})
	if _, err := bad.Replication(ctx, redises[0]); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := bad.SentinelMaster(ctx, sentinelOf(redises[0]), masterName); err == nil {
		t.Fatal("wrong sentinel password accepted")
	}
}

func TestCrashFailoverAndReset(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", redisadmin.Credentials{Password: password, SentinelPassword: sentinelPassword})
	for _, e := range redises {
		_ = a.SentinelSet(ctx, sentinelOf(e), masterName, map[string]string{"auth-pass": password})
		_, _ = a.SentinelMaster(ctx, sentinelOf(e), masterName)
	}

	// A replica's processes die: it stays counted, quorum holds (2 of 3).
	w.Crash("f-3")
	if _, err := a.Replication(ctx, redises[2]); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("crashed redis answers: %v", err)
	}
	if res, _ := f.Exec(ctx, "f-3", probe); res.Stdout != "yes inactive inactive\n" {
		t.Fatalf("probe of a crashed member: %q", res.Stdout)
	}
	st, _ := a.SentinelMaster(ctx, sentinelOf(redises[0]), masterName)
	if st.NumReplicas != 2 || st.NumOtherSentinels != 2 {
		t.Fatalf("departed peers forgotten without RESET: %+v", st)
	}
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatalf("CKQUORUM with 2 of 3: %v", err)
	}
	w.Crash("f-2")
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[0]), masterName); err == nil {
		t.Fatal("CKQUORUM OK with 1 of 3 sentinels")
	}
	// Restarted: the sentinel comes back with its state.
	for _, name := range []string{"f-2", "f-3"} {
		if res, _ := f.Exec(ctx, name, []string{"sh", "-c", "set -e; systemctl start --no-block redis-sentinel"}); res.ExitCode != 0 {
			t.Fatal(res.Stderr)
		}
		if res, _ := f.Exec(ctx, name, []string{"sh", "-c", "set -e; chown redis:redis /etc/redis/redis.conf && systemctl start --no-block redis-server"}); res.ExitCode != 0 {
			t.Fatal(res.Stderr)
		}
	}
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[1]), masterName); err != nil {
		t.Fatalf("CKQUORUM after restart: %v", err)
	}

	// Failover: member 2 promoted, 1 and 3 follow it, sentinels move.
	if err := a.SentinelFailover(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Replication(ctx, redises[1]); !r.IsMaster() {
		t.Fatalf("promoted: %+v", r)
	}
	for _, e := range []endpoint.Endpoint{redises[0], redises[2]} {
		if r, _ := a.Replication(ctx, e); r.IsMaster() || r.Master != redises[1] || !r.LinkUp {
			t.Fatalf("%s after failover: %+v", e, r)
		}
	}
	for _, e := range redises {
		st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName)
		if err != nil || st.Address != redises[1] || st.ConfigEpoch != 1 || st.NumReplicas != 2 || st.NumOtherSentinels != 2 {
			t.Fatalf("sentinel %s after failover: %+v %v", e, st, err)
		}
	}

	// REMOVE + MONITOR, RESET.
	s := sentinelOf(redises[2])
	if err := a.SentinelMonitor(ctx, s, masterName, redises[1], 2); err == nil {
		t.Fatal("duplicate MONITOR accepted")
	}
	if err := a.SentinelRemove(ctx, s, masterName); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SentinelMaster(ctx, s, masterName); !errors.Is(err, redisadmin.ErrNoSuchMaster) {
		t.Fatalf("after REMOVE: %v", err)
	}
	if err := a.SentinelMonitor(ctx, s, masterName, redises[1], 2); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.SentinelMaster(ctx, s, masterName); st.DownAfterMs != 30000 || !st.HasFlag("s_down") {
		t.Fatalf("a fresh MONITOR has Sentinel's defaults and no auth-pass: %+v", st)
	}
	if err := a.SentinelReset(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatal(err)
	}
	if err := a.ReplicaOf(ctx, redises[0], redises[0]); err == nil {
		t.Fatal("REPLICAOF itself accepted")
	}
}

func TestPasswordRotation(t *testing.T) {
	ctx := context.Background()
	_, w, redises := formation(t)
	old := w.Admin("test", redisadmin.Credentials{Password: password, SentinelPassword: sentinelPassword})
	for _, e := range redises {
		if err := old.AddPassword(ctx, e, "next-pw"); err != nil {
			t.Fatal(err)
		}
	}
	next := w.Admin("test", redisadmin.Credentials{Password: "next-pw", SentinelPassword: sentinelPassword})
	for _, a := range []redisadmin.Admin{old, next} {
		if r, err := a.Replication(ctx, redises[1]); err != nil || !r.LinkUp {
			t.Fatalf("both passwords accepted, replicas linked with the new masterauth: %+v %v", r, err)
		}
	}
	for _, e := range redises {
		if err := next.OnlyPassword(ctx, e, "next-pw"); err != nil {
			t.Fatal(err)
		}
		if err := next.PauseWrites(ctx, e, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := next.ResumeWrites(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.Replication(ctx, redises[0]); err == nil {
		t.Fatal("the old password is still accepted after OnlyPassword")
	}
	if r, err := next.Replication(ctx, redises[2]); err != nil || !r.LinkUp {
		t.Fatalf("after rotation: %+v %v", r, err)
	}
}

func TestUnknownCommandsFail(t *testing.T) {
	f, _, _ := formation(t)
	res, err := f.Exec(context.Background(), "f-1", []string{"sh", "-c", "set -e; rm -rf /var/lib/redis"})
	if err != nil || res.ExitCode == 0 {
		t.Fatalf("unknown script: %+v %v", res, err)
	}
}

func TestProcessesFollowTheContainer(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", redisadmin.Credentials{Password: password, SentinelPassword: sentinelPassword})
	probeOf := func(name string) string {
		t.Helper()
		res, err := f.Exec(ctx, name, probe)
		if err != nil {
			t.Fatal(err)
		}
		return res.Stdout
	}

	// A stopped container runs nothing.
	if err := f.StopInstance(ctx, "f-2", false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Replication(ctx, redises[1]); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("redis-server of a stopped container answers: %v", err)
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[1]), masterName); err == nil {
		t.Fatal("sentinel of a stopped container answers")
	}
	// Started again: the enabled sentinel comes back with its state,
	// redis-server (not enabled) stays down.
	if err := f.StartInstance(ctx, "f-2"); err != nil {
		t.Fatal(err)
	}
	if got := probeOf("f-2"); got != "yes inactive active\n" {
		t.Fatalf("probe after a container restart: %q", got)
	}
	if st, err := a.SentinelMaster(ctx, sentinelOf(redises[1]), masterName); err != nil || st.Address != redises[0] {
		t.Fatalf("sentinel after a container restart: %+v %v", st, err)
	}
	if _, err := a.Replication(ctx, redises[1]); err == nil {
		t.Fatal("redis-server started with the container")
	}

	// Deleted and rebuilt under the same name and address: unconfigured,
	// nothing runs until the operator configures it again.
	if err := f.DeleteInstance(ctx, "f-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Replication(ctx, redises[2]); err == nil {
		t.Fatal("redis-server of a deleted container answers")
	}
	spec := incus.InstanceSpec{Name: "f-3", Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"},
		Devices: map[string]map[string]string{"eth0": {"type": "nic", "network": "rsfbr0", "name": "eth0", "ipv4.address": redises[2].Host}}}
	if err := f.CreateInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := probeOf("f-3"); got != "no inactive inactive\n" {
		t.Fatalf("probe of a rebuilt member: %q", got)
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[2]), masterName); err == nil {
		t.Fatal("sentinel of a rebuilt container answers")
	}
}

func TestFailoverToAChosenReplica(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", redisadmin.Credentials{Password: password, SentinelPassword: sentinelPassword})
	for _, e := range redises {
		_ = a.SentinelSet(ctx, sentinelOf(e), masterName, map[string]string{"auth-pass": password})
	}
	if _, err := w.Failover(masterName, "f-1"); err == nil {
		t.Fatal("the master itself was promoted")
	}
	if _, err := w.Failover(masterName, "nope"); err == nil {
		t.Fatal("an unknown instance was promoted")
	}
	epoch, err := w.Failover(masterName, "f-3")
	if err != nil || epoch != 1 {
		t.Fatalf("failover to f-3: epoch %d, %v", epoch, err)
	}
	if r, _ := a.Replication(ctx, redises[2]); !r.IsMaster() {
		t.Fatalf("f-3 not promoted: %+v", r)
	}
	for _, e := range redises[:2] {
		if r, _ := a.Replication(ctx, e); r.IsMaster() || r.Master != redises[2] || !r.LinkUp {
			t.Fatalf("%s after failover: %+v", e, r)
		}
		if st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName); err != nil || st.Address != redises[2] || st.ConfigEpoch != 1 {
			t.Fatalf("sentinel %s after failover: %+v %v", e, st, err)
		}
	}
	// The master's container stops: a replica is promoted all the same;
	// the stopped sentinel keeps the old master, also after it starts.
	if err := f.StopInstance(ctx, "f-3", false); err != nil {
		t.Fatal(err)
	}
	if epoch, err := w.Failover(masterName, "f-1"); err != nil || epoch != 2 {
		t.Fatalf("failover from a stopped master: epoch %d, %v", epoch, err)
	}
	if r, _ := a.Replication(ctx, redises[1]); r.Master != redises[0] || !r.LinkUp {
		t.Fatalf("f-2 after the failover: %+v", r)
	}
	if err := f.StartInstance(ctx, "f-3"); err != nil {
		t.Fatal(err)
	}
	if st, err := a.SentinelMaster(ctx, sentinelOf(redises[2]), masterName); err != nil || st.Address != redises[2] || st.ConfigEpoch != 1 {
		t.Fatalf("the sentinel that missed the failover: %+v %v", st, err)
	}
}
