package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// TestLiveMasterNameAndPorts: under a writer that waits for a replica's
// acknowledgement and reloads the connection Secret as a backend does, a new
// spec.masterName is applied live (every sentinel monitors the master under
// the new name only, no failover), then new redis and sentinel ports roll
// through the members with one master switch; after each the formation is
// Ready, the servers themselves say so, and no acknowledged write is lost.
func TestLiveMasterNameAndPorts(t *testing.T) {
	t.Parallel()
	f := newFormation(t, "livechange", formationOpts{})
	cur := waitReady(t, f, 3*time.Minute)
	w := startReloadingWriter(t, f, "livechange:")
	time.Sleep(2 * time.Second)
	writerPhase(t, w, "before the changes")

	// Placement cannot change: the API server refuses it, the formation
	// stays as it is.
	for _, tc := range []struct {
		field  string
		change func(*redisv1alpha1.IncusSpec)
	}{
		{"spec.incus.hostRef", func(s *redisv1alpha1.IncusSpec) { s.HostRef = "elsewhere" }},
		{"spec.incus.project", func(s *redisv1alpha1.IncusSpec) { s.Project = "other" }},
		{"spec.incus.network", func(s *redisv1alpha1.IncusSpec) { s.Network = "otherbr0" }},
	} {
		changed := get(t, f)
		tc.change(&changed.Spec.Incus)
		if err := k8s.Update(context.Background(), changed); err == nil || !strings.Contains(err.Error(), tc.field+" cannot be changed") {
			t.Fatalf("changing %s: got %v, want the API server to refuse it", tc.field, err)
		}
	}
	if after := get(t, f); after.Generation != cur.Generation {
		t.Fatalf("a refused change moved the generation %d -> %d", cur.Generation, after.Generation)
	}

	// masterName: live, in place.
	failovers := cur.Status.Failovers
	start := time.Now()
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.MasterName = "orders" })
	cur = readyAfter(t, f, 2*time.Minute)
	t.Logf("masterName change: Ready after %s", time.Since(start).Round(time.Millisecond))
	eventually(t, time.Minute, "every sentinel monitors the master as orders only, knowing its peers", func() (bool, string) {
		return sentinelsMonitorOnly(t, get(t, f), "orders")
	})
	cur = get(t, f)
	if cur.Status.Connection == nil || cur.Status.Connection.MasterName != "orders" || string(connectionData(t, f)[config.EnvMasterName]) != "orders" {
		t.Fatalf("connection after the rename: status %+v, Secret names %q", cur.Status.Connection, connectionData(t, f)[config.EnvMasterName])
	}
	if cur.Status.Failovers != failovers {
		t.Fatalf("the rename switched the master %d times", cur.Status.Failovers-failovers)
	}
	eventually(t, 30*time.Second, "the writer succeeds through the renamed master set", func() (bool, string) {
		st := w.Stats()
		return st.OK > 0 && st.Reloads > 0, fmt.Sprintf("%d ok, %d reloads", st.OK, st.Reloads)
	})
	writerPhase(t, w, "masterName change")

	// Ports: rolled, the master last.
	const redisPortNew, sentinelPortNew = 6390, 26390
	oldRedis, oldSentinel := redisPort(cur), sentinelPort(cur)
	start = time.Now()
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) {
		s.Redis.Port, s.Redis.SentinelPort = redisPortNew, sentinelPortNew
	})
	cur = readyAfter(t, f, 10*time.Minute)
	t.Logf("ports change: Ready after %s", time.Since(start).Round(time.Millisecond))
	eventually(t, time.Minute, "every sentinel monitors the master at the new port as orders only, knowing its peers", func() (bool, string) {
		return sentinelsMonitorOnly(t, get(t, f), "orders")
	})
	cur = get(t, f)
	admin := adminCreds(t, cur)
	var addrs []string
	for _, m := range cur.Status.Members {
		if m.RedisPort != redisPortNew || m.SentinelPort != sentinelPortNew {
			t.Errorf("status member %s ports %d/%d", m.Name, m.RedisPort, m.SentinelPort)
		}
		for _, tc := range []struct {
			port   int32
			serves bool
		}{{redisPortNew, true}, {sentinelPortNew, true}, {oldRedis, false}, {oldSentinel, false}} {
			c := redisAs(m.Address, tc.port, admin.Username, admin.Password, admin.TLS.Config())
			err := c.Ping(context.Background()).Err()
			_ = c.Close()
			if (err == nil) != tc.serves {
				t.Errorf("%s port %d: ping %v, want serving %v", m.Name, tc.port, err, tc.serves)
			}
		}
		addrs = append(addrs, net.JoinHostPort(m.Address, strconv.Itoa(sentinelPortNew)))
	}
	if got := string(connectionData(t, f)[config.EnvSentinelAddrs]); got != strings.Join(addrs, ",") {
		t.Errorf("connection Secret sentinel addresses %q, want %q", got, strings.Join(addrs, ","))
	}
	if !slices.Equal(cur.Status.Connection.SentinelAddresses, addrs) {
		t.Errorf("status.connection sentinel addresses %v, want %v", cur.Status.Connection.SentinelAddresses, addrs)
	}
	if switches := cur.Status.Failovers - failovers; switches != 1 {
		t.Errorf("the port roll switched the master %d times, want exactly 1", switches)
	}
	writerPhase(t, w, "ports change")
	finishWriter(t, f, w, nil)
	t.Logf("all %d acknowledged writes of the test read back", len(w.Acknowledged()))
}

// sentinelsMonitorOnly checks, on every member's sentinel at the port
// status records, that SENTINEL MASTERS holds name alone, at the master's
// address and port, counting exactly the other members.
func sentinelsMonitorOnly(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, name string) (bool, string) {
	t.Helper()
	if f.Status.Master == nil {
		return false, "no master in status"
	}
	master := endpoint.Endpoint{Host: f.Status.Master.Address, Port: int(f.Status.Master.Port)}
	dialer := redisadmin.NewGoRedisDialer(2 * time.Second)
	defer dialer.Close()
	admin := dialer.Admin("e2e", adminCreds(t, f))
	peers := int(f.Spec.Members - 1)
	for _, m := range f.Status.Members {
		masters, err := admin.SentinelMasters(context.Background(), endpoint.Endpoint{Host: m.Address, Port: int(m.SentinelPort)})
		if err != nil {
			return false, fmt.Sprintf("%s: %v", m.Name, err)
		}
		got, ok := masters[name]
		if len(masters) != 1 || !ok || got.Address != master || got.NumReplicas != peers || got.NumOtherSentinels != peers {
			return false, fmt.Sprintf("%s monitors %+v; want only %s at %s with %d replicas and %d other sentinels", m.Name, masters, name, master, peers, peers)
		}
	}
	return true, ""
}
