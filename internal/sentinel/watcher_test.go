package sentinel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

var key = types.NamespacedName{Namespace: "ns", Name: "cache"}

// TestFailoverBookkeeping: events and switches whose config epoch is
// unknown (every announcement here has epoch 0), folded by address.
func TestFailoverBookkeeping(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	f := &formation{sdownAt: map[string]time.Time{}}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Three sentinels see the master go down, one fails over, all announce.
	for i, s := range []string{"cache-2", "cache-3", "cache-2"} {
		f.add(Event{Time: at(5000 + i*300), Sentinel: s, Type: "+sdown", Payload: "master mymaster 10.77.0.11 6379"}, 0)
	}
	f.add(Event{Time: at(5400), Sentinel: "cache-2", Type: "+odown", Payload: "master mymaster 10.77.0.11 6379 #quorum 2/2"}, 0)
	for i, s := range []string{"cache-2", "cache-3"} {
		f.add(Event{Time: at(6300 + i*500), Sentinel: s, Type: "+switch-master", Payload: "mymaster 10.77.0.11 6379 10.77.0.12 6379"}, 0)
	}

	if len(f.switches) != 1 {
		t.Fatalf("switches = %+v, want exactly one", f.switches)
	}
	sw := f.switches[0]
	if sw.From != "10.77.0.11:6379" || sw.To != "10.77.0.12:6379" || !sw.SdownAt.Equal(at(5000)) {
		t.Fatalf("switch = %+v, want 10.77.0.11:6379 -> 10.77.0.12:6379 with the first +sdown at %s", sw, at(5000))
	}
	var types []string
	for _, e := range f.events {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, " "); got != "+sdown +odown +switch-master" {
		t.Fatalf("events = %s; the same event from several sentinels must be kept once", got)
	}

	// A flap that heals without failover does not time the next switch.
	f.add(Event{Time: at(100000), Type: "+sdown", Payload: "master mymaster 10.77.0.12 6379"}, 0)
	f.add(Event{Time: at(101000), Type: "-sdown", Payload: "master mymaster 10.77.0.12 6379"}, 0)
	f.add(Event{Time: at(200000), Type: "+switch-master", Payload: "mymaster 10.77.0.12 6379 10.77.0.13 6379"}, 0)
	if d := f.switches[1].SdownAt; !d.IsZero() {
		t.Fatalf("a healed +sdown timed a later switch: %s", d)
	}

	// Failovers back and forth within a minute are each recorded once,
	// however many sentinels announce them, even with no epoch to tell
	// them apart.
	for i, payload := range []string{
		"mymaster 10.77.0.13 6379 10.77.0.11 6379",
		"mymaster 10.77.0.11 6379 10.77.0.13 6379",
		"mymaster 10.77.0.13 6379 10.77.0.11 6379",
	} {
		for j, s := range []string{"cache-3", "cache-2", "cache-1"} {
			f.add(Event{Time: at(210000 + i*12000 + j*900), Sentinel: s, Type: "+switch-master", Payload: payload}, 0)
		}
	}
	if n := len(f.switches); n != 5 {
		t.Fatalf("%d switches recorded, want 5 (each flip once): %+v", n, f.switches)
	}

	for i := range 3 * MaxEvents {
		f.add(Event{Time: at(300000 + i*5000), Type: "+slave", Payload: fmt.Sprint(i)}, 0)
	}
	if len(f.events) != MaxEvents || f.events[MaxEvents-1].Payload != fmt.Sprint(3*MaxEvents-1) {
		t.Fatalf("history not bounded to the latest %d: %d events", MaxEvents, len(f.events))
	}
}

// announcement is one sentinel's +switch-master with the epoch it reported.
type announcement struct {
	ms       int // after t0
	from, to string
	epoch    int64
}

func TestSwitchFolding(t *testing.T) {
	const a, b, c = "10.77.0.11 6379", "10.77.0.12 6379", "10.77.0.13 6379"
	A, B := "10.77.0.11:6379", "10.77.0.12:6379"
	flip := func(ms int, from, to string, epoch int64) []announcement {
		// Three sentinels announce it, the last after the dedup window.
		return []announcement{{ms, from, to, epoch}, {ms + 300, from, to, epoch}, {ms + 2500, from, to, epoch}}
	}
	tests := []struct {
		name string
		in   []announcement
		want []Switch // From, To, Epoch
	}{{
		name: "one failover announced by three sentinels",
		in:   flip(0, a, b, 7),
		want: []Switch{{From: A, To: B, Epoch: 7}},
	}, {
		name: "back and forth within a minute: three failovers",
		in:   slices.Concat(flip(0, a, b, 1), flip(10000, b, a, 2), flip(20000, a, b, 3)),
		want: []Switch{{From: A, To: B, Epoch: 1}, {From: B, To: A, Epoch: 2}, {From: A, To: B, Epoch: 3}},
	}, {
		name: "an unknown epoch is filled in by a later announcement",
		in:   []announcement{{0, a, b, 0}, {300, a, b, 4}, {600, a, b, 4}},
		want: []Switch{{From: A, To: B, Epoch: 4}},
	}, {
		name: "an unknown epoch after a known one is the same switch",
		in:   []announcement{{0, a, b, 5}, {300, a, b, 0}},
		want: []Switch{{From: A, To: B, Epoch: 5}},
	}, {
		name: "a slow sentinel announces a switch after the next one",
		in:   []announcement{{0, a, b, 1}, {5000, b, a, 2}, {5400, a, b, 1}, {5500, b, a, 2}},
		want: []Switch{{From: A, To: B, Epoch: 1}, {From: B, To: A, Epoch: 2}},
	}, {
		name: "same addresses, new epoch: the switch back was missed",
		in:   []announcement{{0, a, b, 1}, {5000, a, b, 3}},
		want: []Switch{{From: A, To: B, Epoch: 1}, {From: A, To: B, Epoch: 3}},
	}, {
		name: "same epoch, another new master: two switches",
		in:   []announcement{{0, a, b, 2}, {5000, b, c, 2}},
		want: []Switch{{From: A, To: B, Epoch: 2}, {From: B, To: "10.77.0.13:6379", Epoch: 2}},
	}, {
		name: "unknown epochs: the same addresses within a minute are one switch",
		in:   []announcement{{0, a, b, 0}, {59000, a, b, 0}},
		want: []Switch{{From: A, To: B}},
	}, {
		name: "unknown epochs: the same addresses a minute later are two",
		in:   []announcement{{0, a, b, 0}, {60000, a, b, 0}},
		want: []Switch{{From: A, To: B}, {From: A, To: B}},
	}, {
		name: "unknown epochs: back and forth within a minute are three",
		in:   slices.Concat(flip(0, a, b, 0), flip(10000, b, a, 0), flip(20000, a, b, 0)),
		want: []Switch{{From: A, To: B}, {From: B, To: A}, {From: A, To: B}},
	}, {
		// A limit of the fallback: only the latest switch is matched by
		// address, so a known epoch arriving after the next switch is
		// a switch of its own.
		name: "a late known epoch does not fill in an earlier switch",
		in:   []announcement{{0, a, b, 0}, {5000, b, a, 2}, {5400, a, b, 1}},
		want: []Switch{{From: A, To: B}, {From: B, To: A, Epoch: 2}, {From: A, To: B, Epoch: 1}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
			f := &formation{sdownAt: map[string]time.Time{}}
			for _, an := range tt.in {
				f.add(Event{Time: t0.Add(time.Duration(an.ms) * time.Millisecond), Type: "+switch-master", Payload: "mymaster " + an.from + " " + an.to}, an.epoch)
			}
			var got []Switch
			for _, sw := range f.switches {
				got = append(got, Switch{From: sw.From, To: sw.To, Epoch: sw.Epoch})
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("switches = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSwitchesHistory: Switches keeps the latest MaxSwitches, oldest first,
// with their durations, and hands out a copy.
func TestSwitchesHistory(t *testing.T) {
	w := New(logr.Discard(), strictGuard(t), func(types.NamespacedName, Event) {})
	defer w.Stop()
	w.Watch(key, redisadmin.Credentials{}, nil) // the formation, with no sentinel to dial
	t0 := time.Now()
	addrs := []string{"10.77.0.11 6379", "10.77.0.12 6379"}
	for i := range MaxSwitches + 2 {
		from, to := addrs[i%2], addrs[(i+1)%2]
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		w.record(context.Background(), key, Event{Time: at.Add(-1500 * time.Millisecond), Type: "+sdown", Payload: "master mymaster " + from}, 0)
		w.record(context.Background(), key, Event{Time: at, Type: "+switch-master", Payload: "mymaster " + from + " " + to}, int64(i+1))
	}
	got := w.Switches(key)
	if len(got) != MaxSwitches {
		t.Fatalf("%d switches kept, want %d", len(got), MaxSwitches)
	}
	for i, sw := range got {
		if want := int64(i + 3); sw.Epoch != want || sw.Time.Sub(sw.SdownAt) != 1500*time.Millisecond {
			t.Fatalf("switch %d = %+v, want epoch %d, its +sdown 1.5s before (oldest first, the two oldest dropped)", i, sw, want)
		}
	}
	got[0].Epoch = 99
	if w.Switches(key)[0].Epoch == 99 {
		t.Fatal("Switches returned the watcher's own slice")
	}
	if w.Switches(types.NamespacedName{Name: "other"}) != nil {
		t.Fatal("switches of a formation not watched")
	}
	w.Forget(key)
	if w.Switches(key) != nil {
		t.Fatal("switches kept after Forget")
	}
}

func TestRedactsPasswords(t *testing.T) {
	f := &formation{sdownAt: map[string]time.Time{}}
	f.add(Event{Time: time.Now(), Type: "+set", Payload: "master mymaster 10.0.0.1 6379 auth-pass hunter2-secret"}, 0)
	if strings.Contains(f.events[0].Payload, "hunter2") {
		t.Fatalf("+set event kept a password: %q", f.events[0].Payload)
	}
}

// recorder collects triggers.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) trigger(_ types.NamespacedName, e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) waitFor(t *testing.T, timeout time.Duration, typ, payloadPrefix string) Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, e := range r.events {
			if e.Type == typ && strings.HasPrefix(e.Payload, payloadPrefix) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s %q event within %s; got %+v", typ, payloadPrefix, timeout, r.events)
	return Event{}
}

// announcers counts the sentinels that announced typ with payload.
func (r *recorder) announcers(typ, payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range r.events {
		if e.Type == typ && e.Payload == payload {
			seen[e.Sentinel] = true
		}
	}
	return len(seen)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// strictGuard fails the test on any panic the watcher recovers.
func strictGuard(t *testing.T) safe.Guard {
	return safe.Guard{Log: logr.Discard(), Count: func(c string) { t.Errorf("%s panicked", c) }}
}

const password, sentinelPassword = "data-pw-0123456789", "sentinel-pw-0123456789"

// startSentinel runs a real master and a sentinel monitoring it (quorum 1,
// down-after 1 s) of engine n on loopback.
func startSentinel(t *testing.T, n engine.Name) (master, sentinel *testredis.Proc) {
	t.Helper()
	testredis.Need(t, n)
	dir := t.TempDir()
	masterPort, _ := testenv.FreePort()
	master, err := testredis.Start(dir, masterPort, []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\nrequirepass %s\nsave \"\"\nappendonly no\ndir %s\n", masterPort, password, dir)), testredis.Spec{Engine: n, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(master.Stop)
	sentinelPort, _ := testenv.FreePort()
	sentinelConf := []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nrequirepass %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n"+
		"sentinel auth-pass mymaster %s\nsentinel down-after-milliseconds mymaster 1000\n", sentinelPort, dir, sentinelPassword, masterPort, password))
	sentinel, err = testredis.Start(dir, sentinelPort, sentinelConf, testredis.Spec{Engine: n, Sentinel: true, Password: sentinelPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sentinel.Stop)
	return master, sentinel
}

// TestWatchRealSentinel: a real sentinel of each engine on loopback; the
// watcher authenticates, sees +sdown when the master dies, and resubscribes
// after the sentinel restarts.
func TestWatchRealSentinel(t *testing.T) { testredis.ForEach(t, testWatchRealSentinel) }

func testWatchRealSentinel(t *testing.T, eng engine.Engine) {
	master, sentinel := startSentinel(t, eng.Name)
	dir := t.TempDir()
	sentinelPort := sentinel.Port

	rec := &recorder{}
	w := New(logr.Discard(), strictGuard(t), rec.trigger)
	defer w.Stop()
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, []Target{{Member: "cache-1", Addr: sentinel.Addr()}})
	rec.waitFor(t, 5*time.Second, "subscribed", "")

	// SENTINEL SET announces +set; the password it sets is not kept.
	admin := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr(), Password: sentinelPassword})
	defer admin.Close()
	if err := admin.Set(context.Background(), "mymaster", "auth-pass", password).Err(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 5*time.Second, "+set", "")
	for _, e := range w.Events(key) {
		if strings.Contains(e.Payload, password) {
			t.Fatalf("event history holds the password: %+v", e)
		}
	}

	// The master dies: +sdown within down-after plus a little.
	master.Kill()
	e := rec.waitFor(t, 5*time.Second, "+sdown", "master mymaster 127.0.0.1")
	if e.Sentinel != "cache-1" {
		t.Fatalf("event attributed to %q", e.Sentinel)
	}

	// The sentinel restarts on the same port: the watcher resubscribes.
	sentinel.Kill()
	rec.reset()
	restarted, err := testredis.StartFile(dir, sentinelPort, sentinel.Conf, sentinel.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Stop()
	rec.waitFor(t, 15*time.Second, "subscribed", "")

	w.Forget(key)
	if len(w.Events(key)) != 0 {
		t.Fatal("history kept after Forget")
	}
}

// FuzzEventPayload: whatever a sentinel publishes, with whatever epoch,
// recording it never panics, keeps the history bounded, never keeps a
// credential set with SENTINEL SET, and records at most one switch per
// announcement.
func FuzzEventPayload(f *testing.F) {
	f.Add("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379", int64(0))
	f.Add("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379", int64(3))
	f.Add("+sdown", "master mymaster 10.0.0.1 6379", int64(0))
	f.Add("+set", "master mymaster 10.0.0.1 6379 auth-pass hunter2-secret", int64(0))
	f.Add("+set", "master mymaster 10.0.0.1 6379 AUTH-USER bob", int64(0))
	f.Add("-sdown", "master", int64(0))
	f.Add("+switch-master", "", int64(1))
	f.Fuzz(func(t *testing.T, typ, payload string, epoch int64) {
		f := &formation{sdownAt: map[string]time.Time{}}
		for i := range MaxEvents + 3 {
			f.add(Event{Time: time.Unix(int64(i*2), 0), Type: typ, Payload: payload}, epoch) // within switchWindow
		}
		if len(f.events) > MaxEvents {
			t.Fatalf("history grew to %d", len(f.events))
		}
		if len(f.switches) > 1 {
			t.Fatalf("one announcement repeated within a minute recorded %d switches", len(f.switches))
		}
		if len(f.switches) == 1 && f.switches[0].Epoch != epoch {
			t.Fatalf("switch kept epoch %d, announced %d", f.switches[0].Epoch, epoch)
		}
		if typ == "+set" && len(f.events) > 0 {
			kept := strings.Fields(f.events[0].Payload)
			for i := 0; i+1 < len(kept); i++ {
				if secretOptions[strings.ToLower(kept[i])] && kept[i+1] != "<redacted>" {
					t.Fatalf("kept a credential: %q", f.events[0].Payload)
				}
			}
		}
	})
}

// TestDroppingAHungSentinel: a sentinel whose container stopped answers
// nothing and sends no RST (here: a real sentinel, SIGSTOPped). Dropping it
// from the targets must not wait for its read to time out (5 s), because
// Watch runs inside a reconcile and holds the lock every other sentinel's
// events need; and the dropped subscription's connection is closed.
func TestDroppingAHungSentinel(t *testing.T) { testredis.ForEach(t, testDroppingAHungSentinel) }

func testDroppingAHungSentinel(t *testing.T, e engine.Engine) {
	_, sentinel := startSentinel(t, e.Name)
	rec := &recorder{}
	w := New(logr.Discard(), strictGuard(t), rec.trigger)
	defer w.Stop()
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, []Target{{Member: "cache-1", Addr: sentinel.Addr()}})
	rec.waitFor(t, 5*time.Second, "subscribed", "")

	thaw := sentinel.Freeze()
	returned := make(chan struct{})
	go func() {
		w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, nil)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		thaw()
		t.Fatal("Watch waited for the hung sentinel's read to time out")
	}
	thaw()

	admin := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr(), Password: sentinelPassword})
	defer admin.Close()
	var list string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		cmd := redis.NewStringCmd(context.Background(), "client", "list")
		if err := admin.Process(context.Background(), cmd); err != nil {
			t.Fatal(err)
		}
		if list = cmd.Val(); !strings.Contains(list, "psub=1") {
			return
		}
	}
	t.Fatalf("the dropped subscription's connection is still open:\n%s", list)
}

// startFormation runs a real master and replica of the engines named and
// a sentinel of each engine in sentinelEngines, monitoring them with
// quorum, on loopback. failover-timeout is short because a sentinel waits
// that long before it turns the old master into a replica, and only then
// can the next failover go back to it.
func startFormation(t *testing.T, quorum int, masterEngine, replicaEngine engine.Name, sentinelEngines ...engine.Name) (master, replica *testredis.Proc, sentinels []*testredis.Proc) {
	t.Helper()
	for _, n := range append([]engine.Name{masterEngine, replicaEngine}, sentinelEngines...) {
		testredis.Need(t, n)
	}
	dir := t.TempDir()
	data := func(port int, extra string) []byte {
		// A dir of its own: a replica writes the RDB it syncs, which
		// must not land in the package folder, nor be what another
		// server loads when it restarts.
		return []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\nrequirepass %s\nmasterauth %s\nsave \"\"\nappendonly no\n"+
			"dir %s\nrepl-diskless-sync-delay 0\n%s", port, password, password, t.TempDir(), extra))
	}
	masterPort, _ := testenv.FreePort()
	master, err := testredis.Start(dir, masterPort, data(masterPort, ""), testredis.Spec{Engine: masterEngine, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	master.StopAtCleanup(t)
	replicaPort, _ := testenv.FreePort()
	replica, err = testredis.Start(dir, replicaPort, data(replicaPort, fmt.Sprintf("replicaof 127.0.0.1 %d\n", masterPort)), testredis.Spec{Engine: replicaEngine, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	replica.StopAtCleanup(t)
	for _, n := range sentinelEngines {
		port, _ := testenv.FreePort()
		conf := []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nrequirepass %s\nsentinel monitor mymaster 127.0.0.1 %d %d\n"+
			"sentinel auth-pass mymaster %s\nsentinel down-after-milliseconds mymaster 1000\n"+
			"sentinel failover-timeout mymaster 3000\n", port, dir, sentinelPassword, masterPort, quorum, password))
		s, err := testredis.Start(dir, port, conf, testredis.Spec{Engine: n, Sentinel: true, Password: sentinelPassword})
		if err != nil {
			t.Fatal(err)
		}
		s.StopAtCleanup(t)
		sentinels = append(sentinels, s)
	}
	return master, replica, sentinels
}

// TestSwitchEpochsRealSentinels: three real sentinels of each engine;
// SENTINEL FAILOVER moves the master A->B, B->A, A->B within a minute.
// Every sentinel announces every switch, and the watcher keeps exactly
// three, each with the config epoch the sentinels report, increasing.
func TestSwitchEpochsRealSentinels(t *testing.T) {
	testredis.ForEach(t, testSwitchEpochsRealSentinels)
}

func testSwitchEpochsRealSentinels(t *testing.T, e engine.Engine) {
	n := e.Name
	a, b, sentinels := startFormation(t, 1, n, n, n, n, n)
	rec := &recorder{}
	w := New(logr.Discard(), strictGuard(t), rec.trigger)
	defer w.Stop()
	var targets []Target
	for i, s := range sentinels {
		targets = append(targets, Target{Member: fmt.Sprintf("cache-%d", i+1), Addr: s.Addr()})
	}
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, targets)
	for deadline := time.Now().Add(10 * time.Second); rec.announcers("subscribed", "") < len(sentinels); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not every sentinel subscribed: %+v", rec.events)
		}
	}

	// Every failover is started on the same sentinel: it leads with the
	// current epoch plus one, which it knows best.
	admin := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0].Addr(), Password: sentinelPassword})
	defer admin.Close()
	addr := func(p *testredis.Proc) string { return fmt.Sprintf("127.0.0.1 %d", p.Port) }
	start := time.Now()
	for _, hop := range [][2]*testredis.Proc{{a, b}, {b, a}, {a, b}} {
		// NOGOODSLAVE until the sentinel has seen the old master turn
		// replica (failover-timeout) and answer INFO as one.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			err := admin.Failover(context.Background(), "mymaster").Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SENTINEL FAILOVER %s -> %s: %v", addr(hop[0]), addr(hop[1]), err)
			}
		}
		payload := "mymaster " + addr(hop[0]) + " " + addr(hop[1])
		for deadline := time.Now().Add(20 * time.Second); rec.announcers("+switch-master", payload) < len(sentinels); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("+switch-master %s announced by %d of %d sentinels", payload, rec.announcers("+switch-master", payload), len(sentinels))
			}
		}
		// The next hop's announcements must be told from this one's.
		rec.reset()
	}
	if took := time.Since(start); took > switchWindow {
		t.Fatalf("the three failovers took %s, more than the minute this test is about", took)
	}

	got := w.Switches(key)
	want := [][2]string{{a.Addr(), b.Addr()}, {b.Addr(), a.Addr()}, {a.Addr(), b.Addr()}}
	if len(got) != len(want) {
		t.Fatalf("switches = %+v, want one per failover: %v", got, want)
	}
	for i, sw := range got {
		if sw.From != want[i][0] || sw.To != want[i][1] || sw.Epoch <= 0 || (i > 0 && sw.Epoch <= got[i-1].Epoch) {
			t.Fatalf("switch %d = %+v in %+v; want %s -> %s with a known epoch above the previous one", i, sw, got, want[i][0], want[i][1])
		}
	}
	m, err := admin.Master(context.Background(), "mymaster").Result()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got[2].Epoch) != m["config-epoch"] {
		t.Fatalf("latest switch has epoch %d, the sentinel reports config-epoch %s", got[2].Epoch, m["config-epoch"])
	}
}

// counter counts the panics a guard recovered.
type counter struct{ testenv.Counter }

func (c *counter) waitFor(t *testing.T, component string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); c.Count(component) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d panics counted for %s, want %d", c.Count(component), component, n)
		}
	}
}

// forgetReturns fails unless Forget returns promptly.
func forgetReturns(t *testing.T, w *Watcher) {
	t.Helper()
	returned := make(chan struct{})
	go func() {
		w.Forget(key)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Forget did not return")
	}
}

// TestPanickingTriggerIsRecovered: a trigger that panics on every call
// against a real sentinel. Each panic is recovered and counted, the
// subscription reads on (later events are still recorded), and Forget
// returns.
func TestPanickingTriggerIsRecovered(t *testing.T) {
	_, sentinel := startSentinel(t, engine.Redis)
	panics := &counter{}
	var calls atomic.Int32
	w := New(logr.Discard(), safe.Guard{Log: logr.Discard(), Count: panics.Add}, func(types.NamespacedName, Event) {
		calls.Add(1)
		panic("trigger failed")
	})
	defer w.Stop()
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, []Target{{Member: "cache-1", Addr: sentinel.Addr()}})
	panics.waitFor(t, Component, 1) // the "subscribed" trigger

	admin := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr(), Password: sentinelPassword})
	defer admin.Close()
	if err := admin.Set(context.Background(), "mymaster", "down-after-milliseconds", "1500").Err(); err != nil {
		t.Fatal(err)
	}
	panics.waitFor(t, Component, 2)
	if !slices.ContainsFunc(w.Events(key), func(e Event) bool { return e.Type == "+set" }) {
		t.Fatalf("the subscription stopped after the trigger panicked: events %+v", w.Events(key))
	}
	forgetReturns(t, w)
	if int(calls.Load()) != panics.Count(Component) {
		t.Fatalf("%d trigger calls, %d panics counted", calls.Load(), panics.Count(Component))
	}
}

// TestPanickingSubscriptionIsRecovered: a panic in a subscription outside
// message handling (here the whole receive path, replaced) is counted,
// closes the subscription's done channel, which Forget waits on, and frees
// its place so that the next Watch starts it again. Nothing is dialled.
func TestPanickingSubscriptionIsRecovered(t *testing.T) {
	panics := &counter{}
	w := New(logr.Discard(), safe.Guard{Log: logr.Discard(), Count: panics.Add}, func(types.NamespacedName, Event) {})
	defer w.Stop()
	release := make(chan struct{})
	var runs atomic.Int32
	w.run = func(ctx context.Context, _ types.NamespacedName, _, _ string, _ redisadmin.Credentials) {
		if runs.Add(1) > 2 {
			<-ctx.Done() // the third run follows the sentinel until Forget
			return
		}
		<-release
		panic("receive failed")
	}
	target := []Target{{Member: "cache-1", Addr: "127.0.0.1:1"}}
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, target)
	w.mu.Lock()
	sub := w.formations[key].subs["127.0.0.1:1"]
	w.mu.Unlock()
	close(release)
	select {
	case <-sub.done:
	case <-time.After(5 * time.Second):
		t.Fatal("done not closed after the subscription panicked")
	}
	panics.waitFor(t, Component, 1)

	// Each Watch restarts a subscription that ended; the third run stays.
	for want := int32(2); want <= 3; want++ {
		for deadline := time.Now().Add(5 * time.Second); runs.Load() < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Watch did not restart the subscription that panicked: %d runs", runs.Load())
			}
			w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, target)
		}
	}
	panics.waitFor(t, Component, 2)
	w.Watch(key, redisadmin.Credentials{Password: sentinelPassword}, target)
	if n := runs.Load(); n != 3 {
		t.Fatalf("%d runs; a live subscription was started again", n)
	}
	forgetReturns(t, w)
	if n := panics.Count(Component); n != 2 {
		t.Fatalf("%d panics counted, want 2", n)
	}
}
