package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// What BenchmarkApplyToReady sees of a formation from outside the
// operator: Incus's lifecycle events and instance state, and a watch on the
// formations. Both record when they first saw something, so that waiting
// for it costs no precision.

// addressPoll is how often a started container without an address yet is
// looked at (the address is in no event).
const addressPoll = 20 * time.Millisecond

// seen is what Incus said of one container since its latest deletion.
type seen struct {
	created, started, addressed time.Time // zero: not yet
	address                     string
	// pid is the container's init process, from its state once started.
	pid int64
}

// instanceWatch follows the containers it is told to follow (the
// benchmark's own, by name; every other container's events are dropped):
// created, started and deleted come from Incus's lifecycle events, with
// Incus's timestamps; the address from the container's network namespace,
// read every addressPoll from /proc/<init pid>/net until eth0 has an IPv4
// address. Incus's instance state has the address too, but each read of it
// costs incusd about 5 ms of CPU: polling 15 booting containers that way
// took most of a core from what the benchmark measures.
type instanceWatch struct {
	mu     sync.Mutex
	byName map[string]*seen
	states incusclient.InstanceServer
}

// watchInstances starts the watch; it stops when the benchmark ends.
func watchInstances(b *testing.B) *instanceWatch {
	b.Helper()
	states, err := incusclient.ConnectIncusUnix(incus.DefaultSocketPath, nil)
	if err != nil {
		b.Fatal(err)
	}
	w := &instanceWatch{byName: map[string]*seen{}, states: states}
	ctx, cancel := context.WithCancel(context.Background())
	connected := make(chan struct{})
	var once sync.Once
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		for ctx.Err() == nil {
			err := incusSrv.WatchLifecycle(ctx, func() { once.Do(func() { close(connected) }) }, w.event)
			if ctx.Err() == nil {
				b.Logf("Incus event stream: %v; listening again", err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		t := time.NewTicker(addressPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.pollAddresses()
			}
		}
	}()
	b.Cleanup(func() { cancel(); <-done; <-done })
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		b.Fatal("the Incus event stream did not connect within 30 s")
	}
	return w
}

// follow starts recording the named containers (from scratch).
func (w *instanceWatch) follow(names ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range names {
		w.byName[n] = &seen{}
	}
}

func (w *instanceWatch) forget(names ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range names {
		delete(w.byName, n)
	}
}

func (w *instanceWatch) event(e incus.LifecycleEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.byName[e.Instance]
	if s == nil || e.Project != "default" {
		return
	}
	switch e.Action {
	case api.EventLifecycleInstanceCreated:
		s.created = e.Time
	case incus.ActionInstanceStarted:
		if s.started.IsZero() {
			s.started = e.Time
		}
	case incus.ActionInstanceDeleted:
		*s = seen{}
	}
}

// pollAddresses looks for the address of the started containers that have
// none yet.
func (w *instanceWatch) pollAddresses() {
	w.mu.Lock()
	pending := map[string]int64{}
	for name, s := range w.byName {
		if !s.started.IsZero() && s.addressed.IsZero() {
			pending[name] = s.pid
		}
	}
	w.mu.Unlock()
	for name, pid := range pending {
		if pid == 0 {
			state, _, err := w.states.GetInstanceState(name)
			if err != nil || state.Pid == 0 {
				continue
			}
			pid = state.Pid
		}
		address := localIPv4(pid)
		now := time.Now()
		w.mu.Lock()
		if s := w.byName[name]; s != nil && !s.started.IsZero() && s.addressed.IsZero() {
			s.pid = pid
			if address != "" {
				s.addressed, s.address = now, address
			}
		}
		w.mu.Unlock()
	}
}

// localIPv4 is the first IPv4 address, loopback aside, of the network
// namespace of process pid ("" while there is none): an address line
// ("|-- 10.77.0.11") followed by "/32 host LOCAL" in the kernel's FIB.
func localIPv4(pid int64) string {
	trie, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/fib_trie", pid))
	if err != nil {
		return ""
	}
	var last string
	for _, line := range strings.Split(string(trie), "\n") {
		line = strings.TrimSpace(line)
		if addr, ok := strings.CutPrefix(line, "|-- "); ok {
			last = addr
			continue
		}
		if line == "/32 host LOCAL" && !strings.HasPrefix(last, "127.") {
			return last
		}
	}
	return ""
}

// get is what was seen of a container (zero when not followed).
func (w *instanceWatch) get(name string) seen {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.byName[name]; s != nil {
		return *s
	}
	return seen{}
}

// all is when every named container had reached a point (pick chooses
// it), the latest of their times; zero while one has not.
func (w *instanceWatch) all(names []string, pick func(seen) time.Time) time.Time {
	var last time.Time
	for _, n := range names {
		t := pick(w.get(n))
		if t.IsZero() {
			return time.Time{}
		}
		last = latest(last, t)
	}
	return last
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// phase is a point on a formation's way from apply to Ready, in order.
type phase int

const (
	phaseCreated    phase = iota // Incus: every member's container created
	phaseStarted                 // Incus: every member's container started
	phaseAddress                 // Incus: every member's container Running with an IPv4 address
	phaseConfigured              // status: every member has a role (its redis-server answered)
	phaseLinked                  // status: a master, and every replica's masterLinkUp
	phaseSentinels               // status: every member's sentinel answered, quorum OK
	phaseReady                   // status: Ready=True, phase Ready
	numPhases
)

var phaseNames = [numPhases]string{"created", "started", "address", "configured", "linked", "sentinels", "ready"}

func (p phase) String() string { return phaseNames[p] }

// statusPhases are the phases a formation's status shows reached.
func statusPhases(f *redisv1alpha1.RedisSentinelFormation) []phase {
	n := int(f.Spec.Members)
	st := &f.Status
	var out []phase
	if len(st.Members) != n || n == 0 {
		return nil
	}
	masters, linked := 0, 0
	for _, m := range st.Members {
		switch m.Role {
		case redisv1alpha1.RoleMaster:
			masters++
		case redisv1alpha1.RoleReplica:
			if m.MasterLinkUp {
				linked++
			}
		default:
			return nil
		}
	}
	out = append(out, phaseConfigured)
	if masters == 1 && linked == n-1 {
		out = append(out, phaseLinked)
	}
	if int(st.Sentinels.Reachable) == n && st.Sentinels.QuorumOK {
		out = append(out, phaseSentinels)
	}
	if isReady(f) {
		out = append(out, phaseReady)
	}
	return out
}

// bringUp is one formation's way to Ready: when each phase was first seen.
type bringUp struct {
	start time.Time
	at    [numPhases]time.Time
}

func (u *bringUp) since(p phase) time.Duration { return u.at[p].Sub(u.start) }

// observeStatus records the status phases f shows, first sighting only.
func (u *bringUp) observeStatus(f *redisv1alpha1.RedisSentinelFormation, now time.Time) {
	for _, p := range statusPhases(f) {
		if u.at[p].IsZero() {
			u.at[p] = now
		}
	}
}

// rebuildWatch follows a formation's status after one of its replicas'
// container was deleted. Until status shows the loss (the member not a
// linked, running replica, or the formation not Ready), what it says is
// from before the deletion; after that, the first sightings of the member
// linked again and of Ready count.
type rebuildWatch struct {
	member                  string
	lossSeen, linked, ready time.Time
}

func (r *rebuildWatch) observeStatus(f *redisv1alpha1.RedisSentinelFormation, now time.Time) {
	var healthy bool
	for _, m := range f.Status.Members {
		if m.Name == r.member {
			healthy = m.Role == redisv1alpha1.RoleReplica && m.MasterLinkUp && m.InstanceState == "Running"
		}
	}
	if r.lossSeen.IsZero() {
		if !healthy || !isReady(f) {
			r.lossSeen = now
		}
		return
	}
	if r.linked.IsZero() && healthy {
		r.linked = now
	}
	if r.ready.IsZero() && isReady(f) {
		r.ready = now
	}
}

// formationWatch watches the formations of a namespace and hands every
// version it receives, with the time it arrived, to the bring-ups and
// rebuilds registered for that formation.
type formationWatch struct {
	mu       sync.Mutex
	latest   map[string]*redisv1alpha1.RedisSentinelFormation
	bringUps map[string]*bringUp
	rebuilds map[string]*rebuildWatch
}

func watchFormations(b *testing.B, ns string) *formationWatch {
	b.Helper()
	fw := &formationWatch{latest: map[string]*redisv1alpha1.RedisSentinelFormation{}, bringUps: map[string]*bringUp{}, rebuilds: map[string]*rebuildWatch{}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		first := true
		for ctx.Err() == nil {
			w, err := k8s.Watch(ctx, &redisv1alpha1.RedisSentinelFormationList{}, client.InNamespace(ns))
			if first {
				started <- err
				first = false
			}
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			// A new watch begins with the current objects; it ends when
			// the API server closes it (its timeout) or ctx ends.
			for ev := range w.ResultChan() {
				if f, ok := ev.Object.(*redisv1alpha1.RedisSentinelFormation); ok {
					fw.observe(f, time.Now())
				}
			}
			w.Stop()
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
	if err := <-started; err != nil {
		b.Fatalf("watching the formations of %s: %v", ns, err)
	}
	return fw
}

func (fw *formationWatch) observe(f *redisv1alpha1.RedisSentinelFormation, now time.Time) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.latest[f.Name] = f
	if u := fw.bringUps[f.Name]; u != nil {
		u.observeStatus(f, now)
	}
	if r := fw.rebuilds[f.Name]; r != nil {
		r.observeStatus(f, now)
	}
}

// trackBringUp starts recording a formation's bring-up from start.
func (fw *formationWatch) trackBringUp(name string, start time.Time) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.bringUps[name] = &bringUp{start: start}
}

// trackRebuild starts recording a rebuild of member.
func (fw *formationWatch) trackRebuild(name, member string) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.rebuilds[name] = &rebuildWatch{member: member}
}

func (fw *formationWatch) bringUp(name string) bringUp {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if u := fw.bringUps[name]; u != nil {
		return *u
	}
	return bringUp{}
}

func (fw *formationWatch) rebuild(name string) rebuildWatch {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if r := fw.rebuilds[name]; r != nil {
		return *r
	}
	return rebuildWatch{}
}

// current is the latest version of a formation the watch received.
func (fw *formationWatch) current(name string) *redisv1alpha1.RedisSentinelFormation {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.latest[name]
}

// readyReason is the Ready condition's reason and message, for errors.
func readyReason(f *redisv1alpha1.RedisSentinelFormation) string {
	if f == nil {
		return "not seen by the watch"
	}
	if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionReady); c != nil {
		return string(f.Status.Phase) + "; " + c.Reason + ": " + c.Message
	}
	return string(f.Status.Phase) + "; no Ready condition"
}
