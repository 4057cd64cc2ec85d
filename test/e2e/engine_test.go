package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// serverInfo is INFO server of a member's server, read by the admin user:
// server_name and the version (valkey_version, else redis_version).
func serverInfo(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, address string) (name, version string) {
	t.Helper()
	c := adminRedis(t, f, address)
	defer c.Close()
	info, err := c.InfoMap(context.Background(), "server").Result()
	if err != nil {
		t.Fatalf("INFO server on %s: %v", address, err)
	}
	fields := info["Server"]
	name = fields["server_name"]
	if name == "" {
		name = "redis" // Redis 7.0 has no server_name
	}
	if v := fields["valkey_version"]; v != "" {
		return name, v
	}
	return name, fields["redis_version"]
}

// assertEngine checks every member's status and its server's INFO.
func assertEngine(t *testing.T, cur *redisv1alpha1.RedisSentinelFormation, want redisv1alpha1.Engine, versionPrefix string) {
	t.Helper()
	for _, m := range cur.Status.Members {
		name, version := serverInfo(t, cur, m.Address)
		if m.Engine != want || name != string(want) || !strings.HasPrefix(version, versionPrefix) {
			t.Errorf("member %s: status engine %q, INFO server %s %s; want %s %s*", m.Name, m.Engine, name, version, want, versionPrefix)
		}
	}
}

// TestValkeyFormation: a Valkey formation comes up Ready on Valkey 8,
// go-redis (the connection Secret's FailoverClient) and redis-py (Sentinel
// discovery) read and write through Sentinel, and the failover drill loses
// no acknowledged write.
func TestValkeyFormation(t *testing.T) {
	t.Parallel()
	f := newFormation(t, "valkey", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Engine = redisv1alpha1.EngineValkey
	}})
	start := time.Now()
	cur := waitReady(t, f, 3*time.Minute)
	t.Logf("apply -> Ready in %s", time.Since(start).Round(10*time.Millisecond))
	assertEngine(t, cur, redisv1alpha1.EngineValkey, "8.")

	ctx := context.Background()
	data := connectionData(t, f)
	backend, err := redisclient.FromSecretData(data, redisclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	if err := backend.Set(ctx, "valkey:go", "v-go", 0).Err(); err != nil {
		t.Fatalf("go-redis SET through Sentinel: %v", err)
	}
	if v, err := backend.Get(ctx, "valkey:go").Result(); err != nil || v != "v-go" {
		t.Fatalf("go-redis GET through Sentinel = %q, %v", v, err)
	}
	res, err := runPythonProbes(ctx, data, "valkey:py:", "SENTINEL discovery", "SET", "GET")
	if err != nil {
		t.Fatal(err)
	}
	for _, probe := range []string{"SENTINEL discovery", "SET", "GET"} {
		if r := res[probe]; !r.OK {
			t.Errorf("redis-py %s: %s %s", probe, r.ErrorClass, r.Error)
		}
	}

	failoverDrill(t, f)
	assertEngine(t, get(t, f), redisv1alpha1.EngineValkey, "8.")
}

// TestEngineMigration: a Redis 7 formation under a WAIT 1 writer is
// switched to valkey. A Valkey image named with the Redis engine is
// refused first, nothing replaced; started while a sentinel is down, the
// migration waits and says so; then every member is rebuilt on Valkey 8,
// replicas first, with exactly one master switch and no acknowledged write
// lost, and redis-sentinel and valkey-sentinel keep the quorum together.
func TestEngineMigration(t *testing.T) {
	t.Parallel()
	f := newFormation(t, "migrate", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Engine = redisv1alpha1.EngineRedis
	}})
	cur := waitReady(t, f, 3*time.Minute)
	assertEngine(t, cur, redisv1alpha1.EngineRedis, "7.0")
	failovers := cur.Status.Failovers
	created := map[string]metav1.Time{}
	for _, m := range cur.Status.Members {
		inst, err := incusSrv.GetInstance(context.Background(), m.Instance)
		if err != nil {
			t.Fatal(err)
		}
		created[m.Name] = metav1.NewTime(inst.CreatedAt)
	}

	// The Valkey engine on the Redis image: the image's own engine
	// property refuses it.
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) {
		s.Engine, s.Incus.Image = redisv1alpha1.EngineValkey, "rsf-redis7-bookworm-v1"
	})
	refused := waitCondition(t, f, time.Minute, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, controllers.ReasonImageEngineMismatch)
	if msg := conditionMessage(refused, redisv1alpha1.ConditionDegraded); !strings.Contains(msg, `image "rsf-redis7-bookworm-v1" runs redis`) {
		t.Fatalf("Degraded says %q; want it to name the image and its engine", msg)
	}
	for _, m := range refused.Status.Members {
		inst, err := incusSrv.GetInstance(context.Background(), m.Instance)
		if err != nil || !inst.CreatedAt.Equal(created[m.Name].Time) {
			t.Fatalf("member %s was replaced while its image was refused (%v)", m.Name, err)
		}
	}

	w, cache := startWriter(t, f)
	time.Sleep(time.Second)

	// Started while a replica's sentinel is down, the migration waits
	// and says so; it goes on once the sentinel is back.
	var victim redisv1alpha1.MemberStatus
	for _, m := range refused.Status.Members {
		if m.Role == redisv1alpha1.RoleReplica {
			victim = m
		}
	}
	sentinelUnit := engine.MustOf(engine.Redis).SentinelUnit
	runIn(t, victim.Instance, "systemctl mask --runtime "+sentinelUnit+" && systemctl stop "+sentinelUnit)
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Incus.Image = "" })
	eventually(t, time.Minute, "the migration waiting for the sentinel", func() (bool, string) {
		msg := conditionMessage(get(t, f), redisv1alpha1.ConditionProgressing)
		return strings.Contains(msg, "migrating to valkey (3 of 3 members still run another engine); the next member is replaced once the formation is healthy"), msg
	})
	for _, m := range get(t, f).Status.Members {
		if inst, err := incusSrv.GetInstance(context.Background(), m.Instance); err != nil || !inst.CreatedAt.Equal(created[m.Name].Time) {
			t.Fatalf("member %s was replaced while a sentinel was down (%v)", m.Name, err)
		}
	}
	runIn(t, victim.Instance, "systemctl unmask --runtime "+sentinelUnit)
	start := time.Now()
	gossip := map[string]bool{} // "valkey->redis" when a sentinel of the first kind knows one of the second as a healthy peer
	eventually(t, 8*time.Minute, "every member on valkey and the formation Ready", func() (bool, string) {
		cur = get(t, f)
		engines := map[redisv1alpha1.Engine]int{}
		for _, m := range cur.Status.Members {
			engines[m.Engine]++
		}
		for _, m := range cur.Status.Members {
			if m.SentinelUp {
				for peer, kind := range healthyPeers(t, cur, m.Address) {
					if kind != m.Engine && peer != "" {
						gossip[string(m.Engine)+"->"+string(kind)] = true
					}
				}
			}
		}
		ready := meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionReady) && cur.Status.Sentinels.QuorumOK && cur.Status.Sentinels.Reachable == 3
		return engines[redisv1alpha1.EngineValkey] == 3 && ready && cur.Status.ObservedGeneration == cur.Generation,
			fmt.Sprintf("engines %v, phase %s: %s", engines, cur.Status.Phase, conditionMessage(cur, redisv1alpha1.ConditionProgressing))
	})
	took := time.Since(start)
	st := finishWriter(t, f, w, cache)
	t.Logf("migration: %s, longest write gap %s", took.Round(100*time.Millisecond), st.LongestGap)

	cur = get(t, f)
	assertEngine(t, cur, redisv1alpha1.EngineValkey, "8.")
	if cur.Status.Failovers != failovers+1 {
		t.Errorf("%d master switches during the migration, want exactly one (lastFailover %+v)", cur.Status.Failovers-failovers, cur.Status.LastFailover)
	}
	if !gossip["valkey->redis"] || !gossip["redis->valkey"] {
		t.Errorf("mixed Sentinel gossip seen %v; want valkey-sentinel and redis-sentinel each knowing the other as a healthy peer with quorum", gossip)
	}
}

// healthyPeers are the sentinels the sentinel at address knows as healthy
// peers (no s_down, o_down or disconnected flag) while its CKQUORUM is OK,
// by address, with the engine of their member; nil when it does not
// answer or has no quorum.
func healthyPeers(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, address string) map[string]redisv1alpha1.Engine {
	t.Helper()
	ctx := context.Background()
	s := adminSentinel(t, f, address)
	defer s.Close()
	if ok, err := s.CkQuorum(ctx, masterName(f)).Result(); err != nil || !strings.HasPrefix(ok, "OK") {
		return nil
	}
	peers, err := s.Sentinels(ctx, masterName(f)).Result()
	if err != nil {
		return nil
	}
	out := map[string]redisv1alpha1.Engine{}
	for _, p := range peers {
		if strings.ContainsAny(p["flags"], "_") || strings.Contains(p["flags"], "disconnected") {
			continue // s_down, o_down
		}
		for _, m := range f.Status.Members {
			if m.Address == p["ip"] {
				out[m.Address] = m.Engine
			}
		}
	}
	return out
}
