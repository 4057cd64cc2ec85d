package controllers

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"k8s.io/apimachinery/pkg/types"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

func addrs(list ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(list))
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestFreeAddresses(t *testing.T) {
	small := incus.Addressing{Gateway: netip.MustParsePrefix("10.0.0.1/29")} // .1 gateway, .2-.6 hosts, .7 broadcast
	withRange := small
	withRange.DHCPRanges = []incus.AddressRange{{First: netip.MustParseAddr("10.0.0.2"), Last: netip.MustParseAddr("10.0.0.4")}}
	tests := []struct {
		name  string
		a     incus.Addressing
		taken []netip.Addr
		n     int
		want  string
	}{
		{name: "lowest free first", a: small, taken: addrs("10.0.0.1"), n: 3, want: "[10.0.0.2 10.0.0.3 10.0.0.4]"},
		{name: "skips taken", a: small, taken: addrs("10.0.0.1", "10.0.0.3"), n: 3, want: "[10.0.0.2 10.0.0.4 10.0.0.5]"},
		{name: "never the broadcast", a: small, taken: addrs("10.0.0.1"), n: 6, want: "[10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6]"},
		{name: "exhausted", a: small, taken: addrs("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"), n: 1, want: "[]"},
		{name: "outside the DHCP range first", a: withRange, taken: addrs("10.0.0.1"), n: 2, want: "[10.0.0.5 10.0.0.6]"},
		{name: "then inside it", a: withRange, taken: addrs("10.0.0.1", "10.0.0.6"), n: 3, want: "[10.0.0.5 10.0.0.2 10.0.0.3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(freeAddresses(tt.a, tt.taken, tt.n)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestAddressChosenBeforeCreate: every member's address is in status
// before its container is created, pinned on the container and written
// into it as its network configuration; no two members share one; a
// rebuilt member gets its address back.
func TestAddressChosenBeforeCreate(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	recorded := map[string]string{} // member -> address status had before the pass
	check := func(int) {
		f := e.formation(testKey)
		for name, inst := range e.instances(f) {
			pinned := inst.Devices["eth0"]["ipv4.address"]
			if want, ok := recorded[name]; !ok || pinned != want {
				t.Fatalf("member %s created with address %q; status had recorded %q before", name, pinned, want)
			}
		}
		for _, m := range f.Status.Members {
			if m.Address != "" {
				recorded[m.Name] = m.Address
			}
		}
	}
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 40, check)

	f := e.formation(testKey)
	seen := map[string]string{}
	for name, inst := range e.instances(f) {
		addr := inst.Devices["eth0"]["ipv4.address"]
		if other, dup := seen[addr]; dup {
			t.Errorf("members %s and %s share %s", name, other, addr)
		}
		seen[addr] = name
		if got := inst.Config[render.KeyNetworkAddress]; got != addr+"/16" {
			t.Errorf("member %s: static network address %q, want %s/16", name, got, addr)
		}
	}

	before := e.instances(f)["cache-2"]
	if err := e.incus.DeleteInstance(context.Background(), before.Name); err != nil {
		t.Fatal(err)
	}
	e.converge(r, testKey, 40)
	after := e.instances(e.formation(testKey))["cache-2"]
	if n := e.incus.Calls()[incusfake.CreateInstance]; n != 4 {
		t.Fatalf("%d creates, want the 3 of the bring-up and the one rebuilding cache-2", n)
	}
	if after.Devices["eth0"]["ipv4.address"] != before.Devices["eth0"]["ipv4.address"] || after.IPv4 != before.IPv4 {
		t.Errorf("rebuilt member cache-2 at %s (pinned %s), was at %s", after.IPv4, after.Devices["eth0"]["ipv4.address"], before.IPv4)
	}
	// The same MAC too: peers' neighbour entries for the address stay right.
	if mac := after.Devices["eth0"]["hwaddr"]; mac == "" || mac != before.Devices["eth0"]["hwaddr"] {
		t.Errorf("rebuilt member cache-2 has MAC %q, was %q", mac, before.Devices["eth0"]["hwaddr"])
	}
}

// TestAddressReservationSurvivesDeath: an operator that dies before the
// status write of the pass that chose addresses created nothing with them;
// the next pass chooses again, and an operator that dies after it creates
// the members at the recorded addresses.
func TestAddressReservationSurvivesDeath(t *testing.T) {
	recorded := func(e *env) bool {
		return slices.ContainsFunc(e.formation(testKey).Status.Members, func(m redisv1alpha1.MemberStatus) bool { return m.Address != "" })
	}
	// The world is deterministic: find the pass that records the addresses.
	probe := standardEnv(t)
	pr := probe.newReconciler()
	choosing := probe.passesUntil(func() *FormationReconciler { return pr }, testKey, 20, func() bool { return recorded(probe) }, nil)

	e := standardEnv(t)
	for range choosing - 1 {
		e.advanceFor(e.reconcile(e.newReconciler(), testKey))
	}
	e.dieBeforeStatusWrite.Store(true)
	e.advanceFor(e.reconcile(e.newReconciler(), testKey))
	if recorded(e) || len(e.instances(e.formation(testKey))) != 0 {
		t.Fatalf("after the pass that died: %d instances, status:\n%s", len(e.instances(e.formation(testKey))), describe(e.formation(testKey)))
	}
	e.advanceFor(e.reconcile(e.newReconciler(), testKey))
	if !recorded(e) || len(e.instances(e.formation(testKey))) != 0 {
		t.Fatalf("the next pass should record the addresses and create nothing: %d instances, status:\n%s", len(e.instances(e.formation(testKey))), describe(e.formation(testKey)))
	}
	e.converge(e.newReconciler(), testKey, 40)
	f := e.formation(testKey)
	for _, m := range f.Status.Members {
		if inst := e.instances(f)[m.Name]; inst.Devices["eth0"]["ipv4.address"] != m.Address || inst.IPv4 != m.Address {
			t.Errorf("member %s at %s (pinned %s), status %s", m.Name, inst.IPv4, inst.Devices["eth0"]["ipv4.address"], m.Address)
		}
	}
}

// TestAddressesAcrossFormations: formations on one network never choose
// an address another recorded or Incus reports in use, also when they
// reach its server through different IncusHosts.
func TestAddressesAcrossFormations(t *testing.T) {
	for _, otherHost := range []string{"", "second-name-for-local"} {
		t.Run("other host "+cmp.Or(otherHost, "default"), func(t *testing.T) {
			other := newFormation("other")
			other.Spec.Incus.HostRef = otherHost
			e := newEnv(t, newFormation(testName), other, labHost("second-name-for-local", false),
				passwordSecret(redisSecretName, testPassword), passwordSecret(sentinelSecretName, testSentinelPassword))
			// An instance of no formation holds the lowest address.
			if err := e.incus.AddInstance(incus.InstanceSpec{Name: "someone", Image: "rsf-redis7-bookworm-v1", Devices: map[string]map[string]string{"eth0": {"ipv4.address": "10.99.0.2"}}}, "Running"); err != nil {
				t.Fatal(err)
			}
			otherKey := types.NamespacedName{Namespace: testNamespace, Name: "other"}
			r := e.newReconciler()
			// Interleaved: each formation reserves while the other has
			// reserved but not yet created.
			for pass := 0; pass < 60 && !(isReady(e.formation(testKey)) && isReady(e.formation(otherKey))); pass++ {
				for _, key := range []types.NamespacedName{testKey, otherKey} {
					res, err := e.reconcile(r, key)
					e.advanceFor(res, err)
				}
			}
			seen := map[string]string{"10.99.0.2": "someone"}
			for _, key := range []types.NamespacedName{testKey, otherKey} {
				f := e.formation(key)
				if !isReady(f) {
					t.Fatalf("%s not Ready:\n%s", key.Name, describe(f))
				}
				for _, m := range f.Status.Members {
					if holder, dup := seen[m.Address]; dup {
						t.Errorf("%s/%s got %s, which %s holds", key.Name, m.Name, m.Address, holder)
					}
					seen[m.Address] = key.Name + "/" + m.Name
				}
			}
			if got := e.formation(otherKey).Status.IncusHost; got != cmp.Or(otherHost, "local") {
				t.Errorf("other formation on IncusHost %q, want %q", got, cmp.Or(otherHost, "local"))
			}
		})
	}
}

// TestNoAddressingKeepsDHCP: on a network whose addresses Incus does not
// hand out, members take a lease and are pinned to it once running.
func TestNoAddressingKeepsDHCP(t *testing.T) {
	e := standardEnv(t)
	e.incus.SetAddressing("rsfbr0", false)
	e.converge(e.newReconciler(), testKey, 40)
	for name, inst := range e.instances(e.formation(testKey)) {
		if inst.Devices["eth0"]["ipv4.address"] != inst.IPv4 {
			t.Errorf("member %s at %s, pinned %q", name, inst.IPv4, inst.Devices["eth0"]["ipv4.address"])
		}
		if got, ok := inst.Config[render.KeyNetworkAddress]; ok {
			t.Errorf("member %s got the static network address %q on a network without Incus addressing", name, got)
		}
	}
}

// TestNoFreeAddress: a network without room degrades the formation, names
// the members, and creates nothing.
func TestNoFreeAddress(t *testing.T) {
	f := newFormation(testName)
	f.Finalizers = []string{finalizerName}
	o := &observation{addressing: &addressing{Addressing: incus.Addressing{Gateway: netip.MustParsePrefix("10.0.0.1/30"), InUse: addrs("10.0.0.1", "10.0.0.2")}}}
	for i := 1; i <= 3; i++ {
		o.members = append(o.members, newMemberObs(f, i, nil))
	}
	var p plan
	if !decideAddresses(&p, f, o) {
		t.Fatal("decideAddresses let the creates go on")
	}
	if len(p.actions) != 0 || len(p.record) != 0 {
		t.Errorf("actions %v, %d records; want none", p.actions, len(p.record))
	}
	if len(p.problems) != 1 || p.problems[0].reason != ReasonNoFreeAddress || !strings.Contains(p.problems[0].message, "cache-1, cache-2, cache-3") {
		t.Errorf("problems %+v", p.problems)
	}
}

// TestBootingMemberConfiguredAtOnce: a member whose container runs but
// whose network is not up yet is configured by the pass right after its
// create (its script waits for the network), not dialed.
func TestBootingMemberConfiguredAtOnce(t *testing.T) {
	e := standardEnv(t)
	e.incus.AddressAfterExec = true
	r := e.newReconciler()
	created := 0
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 40, func(pass int) {
		insts := e.instances(e.formation(testKey))
		switch {
		case created == 0 && len(insts) == 3:
			created = pass
		case created > 0 && pass == created+1:
			for name := range insts {
				if _, ok := e.incus.File(insts[name].Name, redisEngine.ServerConf); !ok {
					t.Errorf("member %s was not configured by the pass after its create", name)
				}
			}
		}
	})
	if created == 0 {
		t.Fatal("the members were never created")
	}
}

// TestSentinelIdentities: every member's sentinel.conf gives its sentinel
// the member's run ID and names the other members' sentinels with theirs,
// so that they agree from their start; a rebuilt member's sentinel keeps
// its ID.
func TestSentinelIdentities(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	check := func() {
		t.Helper()
		f := e.formation(testKey)
		for i, m := range f.Status.Members {
			file, ok := e.incus.File(m.Instance, redisEngine.SentinelConf)
			if !ok {
				t.Fatalf("member %s has no sentinel.conf", m.Name)
			}
			conf := string(file.Content)
			if !strings.Contains(conf, fmt.Sprintf("sentinel myid %q\n", sentinelRunID(f, i+1))) {
				t.Errorf("member %s: sentinel.conf lacks its run ID %s", m.Name, sentinelRunID(f, i+1))
			}
			for j, other := range f.Status.Members {
				line := fmt.Sprintf("sentinel known-sentinel \"mymaster\" %q 26379 %q\n", other.Address, sentinelRunID(f, j+1))
				if j != i && !strings.Contains(conf, line) {
					t.Errorf("member %s: sentinel.conf lacks %q", m.Name, line)
				}
			}
		}
	}
	check()
	ids := map[string]bool{}
	f := e.formation(testKey)
	for i := range f.Status.Members {
		ids[sentinelRunID(f, i+1)] = true
	}
	if len(ids) != 3 {
		t.Fatalf("run IDs not distinct: %v", ids)
	}
	if err := e.incus.DeleteInstance(context.Background(), testInstance(3)); err != nil {
		t.Fatal(err)
	}
	e.converge(r, testKey, 40)
	check()
}

// TestSettlePoll: while a new member's last steps are under way the next
// pass follows within settlePoll; a member older than the settle window
// that is not healthy waits for the usual poll.
func TestSettlePoll(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	quick := 0
	for pass := 0; pass < 40 && !isReady(e.formation(testKey)); pass++ {
		res, err := e.reconcile(r, testKey)
		if err == nil && res.RequeueAfter == settlePoll {
			quick++
		}
		e.advanceFor(res, err)
	}
	if !isReady(e.formation(testKey)) || quick == 0 {
		t.Fatalf("bring-up: Ready %v, %d passes asked for the settle poll", isReady(e.formation(testKey)), quick)
	}
	if res, err := e.reconcile(r, testKey); err != nil || res.RequeueAfter != e.opts.ResyncPeriod {
		t.Fatalf("a Ready formation asks for %v (%v), want the resync period", res.RequeueAfter, err)
	}

	e.world.Crash(testInstance(3))
	for _, tt := range []struct {
		age  time.Duration
		want bool
	}{{settleWindow / 2, true}, {settleWindow, false}} {
		f := e.formation(testKey)
		o := r.observe(e.ctx(), f, logr.Discard())
		o.release()
		var created time.Time
		for _, inst := range e.instances(f) {
			created = maxTime(created, inst.CreatedAt)
		}
		p := decide(f, o, r.Options, created.Add(tt.age))
		if got := p.requeue == settlePoll; got != tt.want {
			t.Errorf("a member %s old is down: settle poll %v (requeue %v), want %v", tt.age, got, p.requeue, tt.want)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
