package sentinel

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

var key = types.NamespacedName{Namespace: "ns", Name: "cache"}

func TestFailoverBookkeeping(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	f := &formation{sdownAt: map[string]time.Time{}}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Three sentinels see the master go down, one fails over, all announce.
	for i, s := range []string{"cache-2", "cache-3", "cache-2"} {
		f.add(Event{Time: at(5000 + i*300), Sentinel: s, Type: "+sdown", Payload: "master mymaster 10.77.0.11 6379"})
	}
	f.add(Event{Time: at(5400), Sentinel: "cache-2", Type: "+odown", Payload: "master mymaster 10.77.0.11 6379 #quorum 2/2"})
	for i, s := range []string{"cache-2", "cache-3"} {
		f.add(Event{Time: at(6300 + i*500), Sentinel: s, Type: "+switch-master", Payload: "mymaster 10.77.0.11 6379 10.77.0.12 6379"})
	}

	if len(f.switches) != 1 {
		t.Fatalf("switches = %+v, want exactly one", f.switches)
	}
	sw := f.switches[0]
	if sw.From != "10.77.0.11:6379" || sw.To != "10.77.0.12:6379" || sw.Duration != 1300*time.Millisecond {
		t.Fatalf("switch = %+v, want 10.77.0.11:6379 -> 10.77.0.12:6379 in 1.3s (first +sdown to +switch-master)", sw)
	}
	var types []string
	for _, e := range f.events {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, " "); got != "+sdown +odown +switch-master" {
		t.Fatalf("events = %s; the same event from several sentinels must be kept once", got)
	}

	// A flap that heals without failover does not time the next switch.
	f.add(Event{Time: at(100000), Type: "+sdown", Payload: "master mymaster 10.77.0.12 6379"})
	f.add(Event{Time: at(101000), Type: "-sdown", Payload: "master mymaster 10.77.0.12 6379"})
	f.add(Event{Time: at(200000), Type: "+switch-master", Payload: "mymaster 10.77.0.12 6379 10.77.0.13 6379"})
	if d := f.switches[1].Duration; d != 0 {
		t.Fatalf("a healed +sdown timed a later switch: %s", d)
	}

	// Failovers back and forth within a minute are each recorded once,
	// however many sentinels announce them.
	for i, payload := range []string{
		"mymaster 10.77.0.13 6379 10.77.0.11 6379",
		"mymaster 10.77.0.11 6379 10.77.0.13 6379",
		"mymaster 10.77.0.13 6379 10.77.0.11 6379",
	} {
		for j, s := range []string{"cache-3", "cache-2", "cache-1"} {
			f.add(Event{Time: at(210000 + i*12000 + j*900), Sentinel: s, Type: "+switch-master", Payload: payload})
		}
	}
	if n := len(f.switches); n != 5 {
		t.Fatalf("%d switches recorded, want 5 (each flip once): %+v", n, f.switches)
	}

	for i := range 3 * MaxEvents {
		f.add(Event{Time: at(300000 + i*5000), Type: "+slave", Payload: fmt.Sprint(i)})
	}
	if len(f.events) != MaxEvents || f.events[MaxEvents-1].Payload != fmt.Sprint(3*MaxEvents-1) {
		t.Fatalf("history not bounded to the latest %d: %d events", MaxEvents, len(f.events))
	}
}

func TestRedactsPasswords(t *testing.T) {
	f := &formation{sdownAt: map[string]time.Time{}}
	f.add(Event{Time: time.Now(), Type: "+set", Payload: "master mymaster 10.0.0.1 6379 auth-pass hunter2-secret"})
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

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// TestWatchRealSentinel: a real redis-sentinel on loopback; the watcher
// authenticates, sees +sdown when the master dies, and resubscribes after
// the sentinel restarts.
const password, sentinelPassword = "data-pw-0123456789", "sentinel-pw-0123456789"

// startSentinel runs a real redis-server master and a redis-sentinel
// monitoring it (quorum 1, down-after 1 s) on loopback.
func startSentinel(t *testing.T) (master, sentinel *testredis.Proc) {
	t.Helper()
	if _, err := testredis.Binary(); err != nil {
		testenv.Unavailable(t, "redis-server", err)
	}
	dir := t.TempDir()
	masterPort, _ := testenv.FreePort()
	master, err := testredis.Start(dir, masterPort, []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\nrequirepass %s\nsave \"\"\nappendonly no\n", masterPort, password)), password, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(master.Stop)
	sentinelPort, _ := testenv.FreePort()
	sentinelConf := []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\nrequirepass %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n"+
		"sentinel auth-pass mymaster %s\nsentinel down-after-milliseconds mymaster 1000\n", sentinelPort, sentinelPassword, masterPort, password))
	sentinel, err = testredis.Start(dir, sentinelPort, sentinelConf, sentinelPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sentinel.Stop)
	return master, sentinel
}

func TestWatchRealSentinel(t *testing.T) {
	master, sentinel := startSentinel(t)
	dir := t.TempDir()
	sentinelPort := sentinel.Port

	rec := &recorder{}
	w := New(logr.Discard(), rec.trigger)
	defer w.Stop()
	w.Watch(key, sentinelPassword, []Target{{Member: "cache-1", Addr: sentinel.Addr()}})
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
	conf := sentinel.Dir + fmt.Sprintf("/redis-%d.conf", sentinelPort)
	sentinel.Kill()
	rec.reset()
	restarted, err := testredis.StartFile(dir, sentinelPort, conf, sentinelPassword, true)
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

// FuzzEventPayload: whatever a sentinel publishes, recording it never
// panics, keeps the history bounded, never keeps a credential set with
// SENTINEL SET, and records at most one switch per announcement.
func FuzzEventPayload(f *testing.F) {
	f.Add("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379")
	f.Add("+sdown", "master mymaster 10.0.0.1 6379")
	f.Add("+set", "master mymaster 10.0.0.1 6379 auth-pass hunter2-secret")
	f.Add("+set", "master mymaster 10.0.0.1 6379 AUTH-USER bob")
	f.Add("-sdown", "master")
	f.Add("+switch-master", "")
	f.Fuzz(func(t *testing.T, typ, payload string) {
		f := &formation{sdownAt: map[string]time.Time{}}
		for i := range MaxEvents + 3 {
			f.add(Event{Time: time.Unix(int64(i*2), 0), Type: typ, Payload: payload}) // within switchWindow
		}
		if len(f.events) > MaxEvents {
			t.Fatalf("history grew to %d", len(f.events))
		}
		if len(f.switches) > 1 {
			t.Fatalf("one announcement repeated within a minute recorded %d switches", len(f.switches))
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
func TestDroppingAHungSentinel(t *testing.T) {
	_, sentinel := startSentinel(t)
	rec := &recorder{}
	w := New(logr.Discard(), rec.trigger)
	defer w.Stop()
	w.Watch(key, sentinelPassword, []Target{{Member: "cache-1", Addr: sentinel.Addr()}})
	rec.waitFor(t, 5*time.Second, "subscribed", "")

	thaw := sentinel.Freeze()
	returned := make(chan struct{})
	go func() {
		w.Watch(key, sentinelPassword, nil)
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
