// Package sentinel watches every sentinel of every formation through
// Sentinel's own pub/sub events (+switch-master, +sdown, +odown, ...). Each
// event triggers a reconcile of its formation at once, is kept in a short
// per-formation history for status, and master switches are recorded with
// their duration from the first +sdown of the old master.
package sentinel

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// MaxEvents bounds the per-formation history.
const MaxEvents = 20

// dedupWindow folds the same event announced by several sentinels.
const dedupWindow = 2 * time.Second

// switchWindow folds one master switch announced by every sentinel.
const switchWindow = time.Minute

// Target is one sentinel to watch.
type Target struct {
	// Member is the member the sentinel runs in.
	Member string
	// Addr is the sentinel's ip:port.
	Addr string
}

// Event is one published Sentinel event.
type Event struct {
	Time     time.Time
	Sentinel string
	// Type is the channel, e.g. "+switch-master".
	Type    string
	Payload string
}

// Switch is a master switch (+switch-master).
type Switch struct {
	Time time.Time
	// From and To are ip:port of the old and new master.
	From, To string
	// Duration runs from the first +sdown of From to the switch; 0 when the
	// +sdown was not seen.
	Duration time.Duration
}

// Watcher subscribes to sentinels and reports their events.
type Watcher struct {
	log logr.Logger
	// trigger is called (without locks held) for every event and every
	// (re)subscription, with the formation to reconcile.
	trigger func(types.NamespacedName, Event)

	mu         sync.Mutex
	formations map[types.NamespacedName]*formation
}

type formation struct {
	password string
	subs     map[string]*subscription // by sentinel address
	events   []Event
	sdownAt  map[string]time.Time // master ip:port -> first +sdown
	switches []Switch             // not yet taken by the controller
	last     Switch               // the latest switch, to fold its announcements
}

type subscription struct {
	member string
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Watcher that calls trigger for each event.
func New(log logr.Logger, trigger func(types.NamespacedName, Event)) *Watcher {
	return &Watcher{log: log, trigger: trigger, formations: map[types.NamespacedName]*formation{}}
}

// Watch makes the watcher follow exactly these sentinels of a formation,
// starting and stopping subscriptions as targets or the password change.
func (w *Watcher) Watch(key types.NamespacedName, password string, targets []Target) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.formations[key]
	if f == nil {
		f = &formation{subs: map[string]*subscription{}, sdownAt: map[string]time.Time{}}
		w.formations[key] = f
	}
	// Subscriptions are cancelled, not waited for: a dead sentinel's read
	// must not hold the lock that every other sentinel's events need.
	if f.password != password {
		for addr, s := range f.subs {
			s.cancel()
			delete(f.subs, addr)
		}
		f.password = password
	}
	want := map[string]string{}
	for _, t := range targets {
		want[t.Addr] = t.Member
	}
	for addr, s := range f.subs {
		if member, ok := want[addr]; !ok || member != s.member {
			s.cancel()
			delete(f.subs, addr)
		}
	}
	for addr, member := range want {
		if _, ok := f.subs[addr]; !ok {
			f.subs[addr] = w.subscribe(key, member, addr, password)
		}
	}
}

// Forget stops watching a formation and drops its history.
func (w *Watcher) Forget(key types.NamespacedName) {
	w.mu.Lock()
	f := w.formations[key]
	delete(w.formations, key)
	w.mu.Unlock()
	if f != nil {
		for _, s := range f.subs {
			s.stop()
		}
	}
}

// Stop stops every subscription.
func (w *Watcher) Stop() {
	w.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(w.formations))
	for k := range w.formations {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	for _, k := range keys {
		w.Forget(k)
	}
}

// Events returns a copy of the formation's latest events, oldest first.
func (w *Watcher) Events(key types.NamespacedName) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.formations[key]; f != nil {
		return append([]Event(nil), f.events...)
	}
	return nil
}

// PendingSwitches returns the master switches not yet acknowledged, oldest
// first. They stay pending until AckSwitches: a status write that fails
// must not lose one.
func (w *Watcher) PendingSwitches(key types.NamespacedName) []Switch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.formations[key]; f != nil {
		return append([]Switch(nil), f.switches...)
	}
	return nil
}

// AckSwitches drops the n oldest pending switches, once recorded.
func (w *Watcher) AckSwitches(key types.NamespacedName, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.formations[key]; f != nil {
		f.switches = f.switches[min(n, len(f.switches)):]
	}
}

func (s *subscription) stop() {
	s.cancel()
	<-s.done
}

func (w *Watcher) subscribe(key types.NamespacedName, member, addr, password string) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{member: member, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		w.receive(ctx, key, member, addr, password)
	}()
	return s
}

// receive reads one sentinel's events until ctx ends. go-redis reconnects
// and re-subscribes the PubSub after a failed read; between failures the
// loop backs off exponentially up to 5 s.
func (w *Watcher) receive(ctx context.Context, key types.NamespacedName, member, addr, password string) {
	log := w.log.WithValues("formation", key.String(), "sentinel", member, "address", addr)
	client := redis.NewSentinelClient(&redis.Options{
		Addr: addr, Password: password, DisableIdentity: true,
		DialTimeout: time.Second, MaxRetries: -1, DialerRetries: 1,
	})
	defer client.Close()
	ps := client.PSubscribe(ctx, "*")
	defer ps.Close()
	// Closing the PubSub ends a read blocked on a sentinel that vanished
	// (a stopped container sends no RST) at once instead of at its timeout.
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })()

	backoff := newBackoff()
	failing := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		switch {
		case ctx.Err() != nil:
			return
		case isTimeout(err):
			// Idle: make sure the connection is alive; a failed ping
			// surfaces on the next receive.
			_ = ps.Ping(ctx)
			continue
		case err != nil:
			if !failing {
				log.Info("lost the sentinel's event stream; reconnecting with backoff", "error", err.Error())
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff.Step()):
			}
			continue
		}
		if failing {
			log.Info("sentinel event stream restored")
			failing = false
			backoff = newBackoff()
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// (Re)subscribed: events may have been missed meanwhile.
			w.trigger(key, Event{Time: time.Now(), Sentinel: member, Type: "subscribed"})
		case *redis.Message:
			w.record(ctx, key, Event{Time: time.Now(), Sentinel: member, Type: m.Channel, Payload: m.Payload})
		}
	}
}

func newBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 5 * time.Second}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// record keeps the event and the failover bookkeeping, then triggers. An
// event read by a subscription that Watch has since cancelled (under the
// same lock) is dropped.
func (w *Watcher) record(ctx context.Context, key types.NamespacedName, e Event) {
	e = redact(e)
	w.mu.Lock()
	f := w.formations[key]
	keep := f != nil && ctx.Err() == nil
	if keep {
		f.add(e)
	}
	w.mu.Unlock()
	if keep {
		w.trigger(key, e)
	}
}

// secretOptions are SENTINEL SET options whose value is a credential.
var secretOptions = map[string]bool{"auth-pass": true, "auth-user": true}

// redact hides the value of a credential in a +set payload
// ("master <name> <ip> <port> <option> <value>") before it is kept.
func redact(e Event) Event {
	if e.Type != "+set" {
		return e
	}
	fields := strings.Fields(e.Payload)
	for i := 0; i+1 < len(fields); i++ {
		if secretOptions[strings.ToLower(fields[i])] {
			fields[i+1] = "<redacted>"
		}
	}
	e.Payload = strings.Join(fields, " ")
	return e
}

func (f *formation) add(e Event) {
	e = redact(e)
	fields := strings.Fields(e.Payload)
	switch e.Type {
	case "+sdown":
		// "+sdown master <name> <ip> <port>"
		if len(fields) >= 4 && fields[0] == "master" {
			addr := net.JoinHostPort(fields[2], fields[3])
			if _, seen := f.sdownAt[addr]; !seen {
				f.sdownAt[addr] = e.Time
			}
		}
	case "-sdown":
		// The master came back without a failover: a later switch must
		// not be timed from this outage.
		if len(fields) >= 4 && fields[0] == "master" {
			delete(f.sdownAt, net.JoinHostPort(fields[2], fields[3]))
		}
	case "+switch-master":
		// "+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>"
		if len(fields) == 5 {
			f.addSwitch(e.Time, net.JoinHostPort(fields[1], fields[2]), net.JoinHostPort(fields[3], fields[4]))
		}
	}
	for i := len(f.events) - 1; i >= 0; i-- {
		prev := f.events[i]
		if e.Time.Sub(prev.Time) > dedupWindow {
			break
		}
		if prev.Type == e.Type && prev.Payload == e.Payload {
			return // the same event from another sentinel
		}
	}
	f.events = append(f.events, e)
	if len(f.events) > MaxEvents {
		f.events = append([]Event(nil), f.events[len(f.events)-MaxEvents:]...)
	}
}

// addSwitch records a master switch unless it is another sentinel's
// announcement of the latest one. Only the latest counts: after A->B and
// B->A, a new A->B is a third failover, however soon it follows.
func (f *formation) addSwitch(at time.Time, from, to string) {
	if f.last.From == from && f.last.To == to && at.Sub(f.last.Time) < switchWindow {
		return
	}
	sw := Switch{Time: at, From: from, To: to}
	if down, ok := f.sdownAt[from]; ok {
		sw.Duration = at.Sub(down)
		delete(f.sdownAt, from)
	}
	f.switches = append(f.switches, sw)
	f.last = sw
}
