package controllers

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// monitoredNames is what every sentinel of the formation monitors, by
// member: master name -> address.
func (e *env) monitoredNames(f *redisv1alpha1.RedisSentinelFormation, sentinelPort int) map[string]map[string]endpoint.Endpoint {
	e.t.Helper()
	out := map[string]map[string]endpoint.Endpoint{}
	for name, inst := range e.instances(f) {
		masters, err := e.admin().SentinelMasters(context.Background(), endpoint.Endpoint{Host: inst.IPv4, Port: sentinelPort})
		if err != nil {
			e.t.Fatalf("SENTINEL MASTERS on %s: %v", name, err)
		}
		out[name] = map[string]endpoint.Endpoint{}
		for n, st := range masters {
			out[name][n] = st.Address
		}
	}
	return out
}

// TestMasterNameChange: a new spec.masterName reaches every sentinel in the
// pass that sees it (the old name removed everywhere, the new one monitored
// at the master with its settings), the connection Secret and status carry
// it, no failover happens, the watcher's earlier switches are not counted
// again, and a later failover under the new name is.
func TestMasterNameChange(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	f := e.formation(testKey)

	// An earlier failover, still in the watcher's history.
	oldMaster, _ := e.masterOfWorld(f)
	if err := e.admin().SentinelFailover(context.Background(), sentinelEndpoint(oldMaster.Host), f.Spec.MasterName); err != nil {
		t.Fatal(err)
	}
	master, epoch := e.masterOfWorld(f)
	e.watcher.setSwitches(testKey, sentinel.Switch{Time: e.clock.Now(), From: hostPort(oldMaster), To: hostPort(master), Epoch: epoch})
	e.converge(r, testKey, 40)
	f = e.formation(testKey)
	if f.Status.Failovers != 1 {
		t.Fatalf("failovers %d after the first switch", f.Status.Failovers)
	}

	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.MasterName = "orders" })
	if _, err := e.reconcile(r, testKey); err != nil {
		t.Fatal(err)
	}
	f = e.formation(testKey)
	for member, names := range e.monitoredNames(f, 26379) {
		if len(names) != 1 || names["orders"] != master {
			t.Fatalf("after one pass, sentinel %s monitors %v; want only orders at %s", member, names, master)
		}
		st, err := e.admin().SentinelMaster(context.Background(), sentinelEndpoint(e.instances(f)[member].IPv4), "orders")
		if err != nil || st.Quorum != 2 || st.DownAfterMs != 5000 || st.FailoverTimeoutMs != 30000 || st.ParallelSyncs != 1 {
			t.Fatalf("sentinel %s monitors orders with %+v (%v)", member, st, err)
		}
	}
	if got := string(e.secret(connectionSecretName(f)).Data[config.EnvMasterName]); got != "orders" {
		t.Fatalf("connection Secret names %q", got)
	}
	if f.Status.Connection == nil || f.Status.Connection.MasterName != "orders" {
		t.Fatalf("status.connection %+v", f.Status.Connection)
	}

	e.converge(r, testKey, 40)
	for range 5 {
		res, err := e.reconcile(e.newReconciler(), testKey)
		e.advanceFor(res, err)
	}
	f = e.formation(testKey)
	if f.Status.Failovers != 1 || f.Status.Master.Address != master.Host || !isReady(f) {
		t.Fatalf("after the rename: failovers %d master %+v phase %s\n%s", f.Status.Failovers, f.Status.Master, f.Status.Phase, describe(f))
	}

	// A failover under the new name is recorded from the watcher.
	if err := e.admin().SentinelFailover(context.Background(), sentinelEndpoint(master.Host), "orders"); err != nil {
		t.Fatal(err)
	}
	newMaster, newEpoch := e.masterOfWorld(f)
	if newEpoch <= epoch {
		t.Fatalf("the failover after the rename took epoch %d, not above the earlier %d", newEpoch, epoch)
	}
	e.watcher.setSwitches(testKey,
		sentinel.Switch{Time: e.clock.Now(), From: hostPort(oldMaster), To: hostPort(master), Epoch: epoch},
		sentinel.Switch{Time: e.clock.Now(), From: hostPort(master), To: hostPort(newMaster), Epoch: newEpoch})
	if _, err := e.reconcile(r, testKey); err != nil {
		t.Fatal(err)
	}
	f = e.formation(testKey)
	if f.Status.Failovers != 2 || f.Status.Master.Address != newMaster.Host || f.Status.Master.ConfigEpoch != newEpoch {
		t.Fatalf("after a failover under the new name: failovers %d master %+v", f.Status.Failovers, f.Status.Master)
	}
	e.converge(r, testKey, 40)
	if f := e.formation(testKey); f.Status.Failovers != 2 {
		t.Fatalf("failovers %d", f.Status.Failovers)
	}
}

// TestMasterNameChangeInterrupted: a rename that stopped after some
// sentinels (an action failed, the operator died) is finished by the next
// pass from what the sentinels answer.
func TestMasterNameChangeInterrupted(t *testing.T) {
	e := standardEnv(t)
	e.converge(e.newReconciler(), testKey, 40)
	f := e.formation(testKey)
	master, _ := e.masterOfWorld(f)
	insts := e.instances(f)
	// cache-1's sentinel already dropped the old name; cache-2's already
	// monitors the new one.
	ctx := context.Background()
	if err := e.admin().SentinelRemove(ctx, sentinelEndpoint(insts["cache-1"].IPv4), "mymaster"); err != nil {
		t.Fatal(err)
	}
	if err := e.admin().SentinelRemove(ctx, sentinelEndpoint(insts["cache-2"].IPv4), "mymaster"); err != nil {
		t.Fatal(err)
	}
	if err := e.admin().SentinelMonitor(ctx, sentinelEndpoint(insts["cache-2"].IPv4), "orders", master, 2); err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"auth-user": acl.MonitoringUser, "auth-pass": e.current(acl.Monitoring)}
	if err := e.admin().SentinelSet(ctx, sentinelEndpoint(insts["cache-2"].IPv4), "orders", auth); err != nil {
		t.Fatal(err)
	}
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.MasterName = "orders" })
	e.converge(e.newReconciler(), testKey, 40)
	f = e.formation(testKey)
	for member, names := range e.monitoredNames(f, 26379) {
		if len(names) != 1 || names["orders"] != master {
			t.Fatalf("sentinel %s monitors %v; want only orders at %s", member, names, master)
		}
	}
	if f.Status.Failovers != 0 {
		t.Fatalf("failovers %d", f.Status.Failovers)
	}
}

// TestPortsRoll: a change of spec.redis.port and sentinelPort rebuilds one
// member at a time, replicas first and the master last after a planned
// failover, each operator pass deciding from the API and Incus alone (a
// fresh operator every pass); at the end every member serves on the new
// ports only, the sentinels count exactly the members, and the connection
// Secret lists the new sentinel addresses.
func TestPortsRoll(t *testing.T) {
	e := standardEnv(t)
	e.converge(e.newReconciler(), testKey, 40)
	f := e.formation(testKey)
	initialMaster := f.Status.Master.Member
	failovers0 := f.Status.Failovers

	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Redis.Port, f.Spec.Redis.SentinelPort = 6380, 26380
	})
	var (
		moved    []string // members in the order they got the new ports
		masterAt = map[string]bool{}
		phases   []redisv1alpha1.PlannedFailoverPhase
	)
	check := func(pass int) {
		f := e.formation(testKey)
		insts := e.instances(f)
		changing := 0
		for i := 1; i <= int(f.Spec.Members); i++ {
			name := memberName(f, i)
			inst, ok := insts[name]
			st := findMember(f.Status.Members, name)
			if !ok || (inst.Config[keyRedisPort] == "6380" && (st == nil || st.Health != redisv1alpha1.HealthHealthy)) {
				changing++
			}
			if ok && inst.Config[keyRedisPort] == "6380" && !slices.Contains(moved, name) {
				moved = append(moved, name)
				if st := f.Status.Master; st != nil && st.Member == name && st.Port == 6379 {
					masterAt[name] = true
				}
			}
		}
		if changing > 1 {
			t.Fatalf("pass %d: %d members changing at once\n%s", pass, changing, describe(f))
		}
		if pf := f.Status.PlannedFailover; pf != nil && (len(phases) == 0 || phases[len(phases)-1] != pf.Phase) {
			phases = append(phases, pf.Phase)
		}
	}
	start := e.clock.Now()
	e.convergeWith(e.newReconciler, testKey, 200, check)
	// Each rebuilt member leaves entries at its old ports in the other
	// sentinels; they are reset once the set is whole again, without
	// waiting out the cooldown of an earlier reset.
	if took := e.clock.Now().Sub(start); took >= topology.ResetCooldown {
		t.Fatalf("the roll took %s of the operator's clock: a reset waited for its cooldown", took)
	}

	f = e.formation(testKey)
	if len(moved) != 3 || moved[2] != initialMaster {
		t.Fatalf("members moved in order %v; the master %s must be last", moved, initialMaster)
	}
	if len(masterAt) > 0 {
		t.Fatalf("members rebuilt while master: %v", masterAt)
	}
	if !slices.Contains(phases, redisv1alpha1.PlannedFailoverPromoting) {
		t.Fatalf("planned failover phases %v", phases)
	}
	if f.Status.Failovers != failovers0+1 {
		t.Fatalf("failovers %d, want %d", f.Status.Failovers, failovers0+1)
	}
	ctx := context.Background()
	var sentinels []string
	for _, m := range f.Status.Members {
		if m.RedisPort != 6380 || m.SentinelPort != 26380 {
			t.Errorf("status member %s ports %d/%d", m.Name, m.RedisPort, m.SentinelPort)
		}
		for _, port := range []int{6379, 6380} {
			_, err := e.admin().Replication(ctx, endpoint.Endpoint{Host: m.Address, Port: port})
			if (err == nil) != (port == 6380) {
				t.Errorf("redis-server of %s on port %d: %v", m.Name, port, err)
			}
		}
		if _, err := e.admin().SentinelMaster(ctx, endpoint.Endpoint{Host: m.Address, Port: 26379}, f.Spec.MasterName); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("a sentinel still answers on %s:26379: %v", m.Address, err)
		}
		st, err := e.admin().SentinelMaster(ctx, endpoint.Endpoint{Host: m.Address, Port: 26380}, f.Spec.MasterName)
		if err != nil || st.Address.Port != 6380 || st.NumReplicas != 2 || st.NumOtherSentinels != 2 {
			t.Errorf("sentinel of %s on 26380: %+v %v", m.Name, st, err)
		}
		sentinels = append(sentinels, net.JoinHostPort(m.Address, "26380"))
	}
	if got := string(e.secret(connectionSecretName(f)).Data[config.EnvSentinelAddrs]); got != strings.Join(sentinels, ",") {
		t.Errorf("connection Secret sentinel addresses %q, want %q", got, strings.Join(sentinels, ","))
	}
	if f.Status.Master.Port != 6380 {
		t.Errorf("status.master %+v", f.Status.Master)
	}
	if p := e.world.Problems(); len(p) > 0 {
		t.Errorf("members met configuration problems: %v", p)
	}
}

func TestMemberPorts(t *testing.T) {
	f := newFormation(testName)
	f.Spec.Redis.Port, f.Spec.Redis.SentinelPort = 7000, 27000
	f.Status.Members = []redisv1alpha1.MemberStatus{{Name: "cache-2", RedisPort: 6379, SentinelPort: 26379}}
	withKeys := &incus.Instance{Config: map[string]string{keyRedisPort: "6390", keySentinelPort: "26390"}}
	tests := []struct {
		name string
		m    *memberObs
		want ports
	}{
		{"the container's keys", &memberObs{name: "cache-2", instance: withKeys}, ports{6390, 26390}},
		{"a container built before the keys: what status recorded", &memberObs{name: "cache-2", instance: &incus.Instance{}}, ports{6379, 26379}},
		{"nothing recorded: the spec's", &memberObs{name: "cache-3", instance: &incus.Instance{}}, ports{7000, 27000}},
		{"no container: what status recorded", &memberObs{name: "cache-2"}, ports{6379, 26379}},
	}
	for _, tt := range tests {
		if got := memberPorts(f, tt.m); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if spec := instanceSpec(f, 1, ""); spec.Config[keyRedisPort] != strconv.Itoa(7000) || spec.Config[keySentinelPort] != "27000" {
		t.Errorf("a new container records %v", spec.Config)
	}
}

// TestMasterNameChangeDuringRotation: a password rotation asked for in the
// same change waits for the rename (it sets the monitoring password under
// the new name), and both are applied.
func TestMasterNameChangeDuringRotation(t *testing.T) {
	e := standardEnv(t)
	e.converge(e.newReconciler(), testKey, 40)
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.MasterName = "orders" })
	e.setPassword(redisSecretName, "data-plane-pw-2")
	e.converge(e.newReconciler(), testKey, 60)
	f := e.formation(testKey)
	master, _ := e.masterOfWorld(f)
	for member, names := range e.monitoredNames(f, 26379) {
		if len(names) != 1 || names["orders"] != master {
			t.Fatalf("sentinel %s monitors %v; want only orders at %s", member, names, master)
		}
	}
	if got := string(e.secret(connectionSecretName(f)).Data[config.EnvMasterName]); got != "orders" || e.current(acl.BackendPassword) != "data-plane-pw-2" {
		t.Fatalf("connection Secret names %q; backend password %q", got, e.current(acl.BackendPassword))
	}
}

// failingSetAdmin refuses the first SENTINEL SET under name: a monitor
// whose settings were not applied (a network error after SENTINEL MONITOR).
type failingSetAdmin struct {
	redisadmin.Admin
	name   string
	failed *bool
}

func (a failingSetAdmin) SentinelSet(ctx context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error {
	if name == a.name && !*a.failed {
		*a.failed = true
		return errors.New("i/o timeout")
	}
	return a.Admin.SentinelSet(ctx, sentinel, name, settings)
}

type failingSetDialer struct {
	*forgettingWorld
	name   string
	failed bool
}

func (d *failingSetDialer) Admin(owner string, creds redisadmin.Credentials) redisadmin.Admin {
	return failingSetAdmin{Admin: d.forgettingWorld.Admin(owner, creds), name: d.name, failed: &d.failed}
}

// TestMasterNameChangeMonitorSettingsFail: a sentinel whose SENTINEL SET
// fails right after it monitored the new name is not left monitoring it
// without the monitoring user (it would never reach the master): the next
// pass monitors it afresh, with its settings.
func TestMasterNameChangeMonitorSettingsFail(t *testing.T) {
	e := standardEnv(t)
	e.converge(e.newReconciler(), testKey, 40)
	d := &failingSetDialer{forgettingWorld: e.dialer, name: "orders"}
	r := e.newReconciler()
	r.Redis = d
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.MasterName = "orders" })
	if _, err := e.reconcile(r, testKey); err == nil || !d.failed {
		t.Fatalf("the rename pass: %v (SET failed: %v)", err, d.failed)
	}
	e.converge(r, testKey, 40)
	f := e.formation(testKey)
	master, _ := e.masterOfWorld(f)
	for member, names := range e.monitoredNames(f, 26379) {
		st, err := e.admin().SentinelMaster(context.Background(), sentinelEndpoint(e.instances(f)[member].IPv4), "orders")
		if len(names) != 1 || names["orders"] != master || err != nil || st.HasFlag("s_down") {
			t.Fatalf("sentinel %s monitors %v; orders: %+v %v", member, names, st, err)
		}
	}
}
