// Package sentinel watches every sentinel of every formation through
// Sentinel's own pub/sub events (+switch-master, +sdown, +odown, ...). Each
// event triggers a reconcile of its formation at once and is kept in a short
// per-formation history for status.
//
// Master switches are kept as a short history too, one entry per failover
// however many sentinels announce it, each with the master's config epoch
// after the switch and the first +sdown of the old master.
// The epoch names a failover uniquely, so the controller can record switches
// idempotently (skip an epoch it already wrote) instead of acknowledging
// them: a status write that fails is simply retried from the same history.
//
// Every subscription runs under a safe.Guard: a panic while handling one
// message is recovered and counted and the subscription reads on; a panic
// elsewhere in it ends only that subscription, which the next Watch starts
// again.
package sentinel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
)

// MaxEvents bounds the per-formation history.
const MaxEvents = 20

// MaxSwitches bounds the per-formation switch history. It only has to cover
// the switches that can happen between two reconciles of the formation.
const MaxSwitches = 8

// dedupWindow folds the same event announced by several sentinels.
const dedupWindow = 2 * time.Second

// switchWindow folds one master switch announced by every sentinel when
// its config epoch is unknown.
const switchWindow = time.Minute

// epochTimeout bounds the SENTINEL MASTER query after a +switch-master: the
// subscription reads no events meanwhile, and an unknown epoch only costs
// the fallback folding.
const epochTimeout = 500 * time.Millisecond

// Component is what the guard logs and counts a recovered panic under.
const Component = "sentinel-watcher"

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
	// Time is when the first sentinel announced it.
	Time time.Time
	// From and To are ip:port of the old and new master.
	From, To string
	// Epoch is the master's config epoch after the switch, as an
	// announcing sentinel reported it: Sentinel gives every failover its own
	// epoch, so it identifies the switch. 0 while unknown (no announcing
	// sentinel answered in time); a later announcement may fill it in, so
	// the same switch, same Time, can be listed first with 0 and then with
	// its epoch.
	Epoch int64
	// SdownAt is when the first sentinel announced +sdown of From (a
	// down-after after it stopped answering); zero when it was not seen.
	SdownAt time.Time
}

// Watcher subscribes to sentinels and reports their events.
type Watcher struct {
	log   logr.Logger
	guard safe.Guard
	// trigger is called (without locks held) for every event and every
	// (re)subscription, with the formation to reconcile.
	trigger func(types.NamespacedName, Event)
	// run follows one sentinel until ctx ends: receive, or a stand-in in
	// tests.
	run func(ctx context.Context, key types.NamespacedName, member, addr string, creds redisadmin.Credentials)

	mu         sync.Mutex
	formations map[types.NamespacedName]*formation
}

type formation struct {
	creds    redisadmin.Credentials
	subs     map[string]*subscription // by sentinel address
	events   []Event
	sdownAt  map[string]time.Time // master ip:port -> first +sdown
	switches []Switch             // the latest MaxSwitches, oldest first
}

type subscription struct {
	member string
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Watcher that calls trigger for each event. Its
// subscriptions run under guard, so that a panic in one (trigger included)
// does not end the process and every other formation's reconciles with it.
func New(log logr.Logger, guard safe.Guard, trigger func(types.NamespacedName, Event)) *Watcher {
	w := &Watcher{log: log, guard: guard, trigger: trigger, formations: map[types.NamespacedName]*formation{}}
	w.run = w.receive
	return w
}

// Watch makes the watcher follow exactly these sentinels of a formation,
// starting and stopping subscriptions as targets or the credentials change.
func (w *Watcher) Watch(key types.NamespacedName, creds redisadmin.Credentials, targets []Target) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.formations[key]
	if f == nil {
		f = &formation{subs: map[string]*subscription{}, sdownAt: map[string]time.Time{}}
		w.formations[key] = f
	}
	// Subscriptions are cancelled, not waited for: a dead sentinel's read
	// must not hold the lock that every other sentinel's events need.
	if f.creds != creds {
		for addr, s := range f.subs {
			s.cancel()
			delete(f.subs, addr)
		}
		f.creds = creds
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
			f.subs[addr] = w.subscribe(key, member, addr, creds)
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

// Switches returns a copy of the formation's latest master switches (at
// most MaxSwitches), oldest first. Nothing is consumed: the caller records
// each switch once by its Epoch, so a failed status write loses nothing.
func (w *Watcher) Switches(key types.NamespacedName) []Switch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.formations[key]; f != nil {
		return append([]Switch(nil), f.switches...)
	}
	return nil
}

func (s *subscription) stop() {
	s.cancel()
	<-s.done
}

func (w *Watcher) subscribe(key types.NamespacedName, member, addr string, creds redisadmin.Credentials) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{member: member, cancel: cancel, done: make(chan struct{})}
	run := w.run
	w.guard.Go(Component, func() {
		// Deferred calls run while a panic unwinds, before the guard
		// recovers it: done is closed either way, so Forget cannot hang.
		defer close(s.done)
		defer w.ended(key, addr, s)
		run(ctx, key, member, addr, creds)
	})
	return s
}

// ended drops a subscription whose goroutine stopped by itself (a panic
// outside message handling), so that the next Watch starts it again. One
// that Watch or Forget cancelled is already gone from the formation.
func (w *Watcher) ended(key types.NamespacedName, addr string, s *subscription) {
	s.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.formations[key]; f != nil && f.subs[addr] == s {
		delete(f.subs, addr)
	}
}

// receive reads one sentinel's events until ctx ends. go-redis reconnects
// and re-subscribes the PubSub after a failed read; between failures the
// loop backs off exponentially up to 5 s.
func (w *Watcher) receive(ctx context.Context, key types.NamespacedName, member, addr string, creds redisadmin.Credentials) {
	log := w.log.WithValues("formation", key.String(), "sentinel", member, "address", addr)
	// ContextTimeoutEnabled makes the epoch query honour its deadline; the
	// PubSub's reads are bounded by ReceiveTimeout regardless.
	client := redis.NewSentinelClient(&redis.Options{
		Addr: addr, Username: creds.Username, Password: creds.Password, TLSConfig: creds.TLS.Config(), DisableIdentity: true,
		DialTimeout: time.Second, MaxRetries: -1, DialerRetries: 1,
		ContextTimeoutEnabled: true,
		ReadBufferSize:        redisadmin.BufferSize, WriteBufferSize: redisadmin.BufferSize,
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
		// One message that panics (a trigger, a payload the bookkeeping
		// mishandles) must not end the subscription: the guard recovers it
		// and the loop reads on.
		w.guard.Run(Component, func() { w.handle(ctx, log, client, key, member, msg) })
	}
}

func (w *Watcher) handle(ctx context.Context, log logr.Logger, client *redis.SentinelClient, key types.NamespacedName, member string, msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		// (Re)subscribed: events may have been missed meanwhile.
		w.trigger(key, Event{Time: time.Now(), Sentinel: member, Type: "subscribed"})
	case *redis.Message:
		e := Event{Time: time.Now(), Sentinel: member, Type: m.Channel, Payload: m.Payload}
		var epoch int64
		if e.Type == "+switch-master" {
			var err error
			if epoch, err = configEpoch(ctx, client, e.Payload); err != nil {
				log.V(1).Info("config epoch of a master switch unknown; folding its announcements by address", "error", err.Error())
			}
		}
		w.record(ctx, key, e, epoch)
	}
}

// configEpoch asks the sentinel that announced a switch ("<name> <old-ip>
// <old-port> <new-ip> <new-port>") for the master's config epoch. It is
// asked outside the watcher's lock, since a slow sentinel must not stall the
// others, and only trusted while the sentinel still names the announced new
// master: after a later failover the epoch would be that one's.
func configEpoch(ctx context.Context, client *redis.SentinelClient, payload string) (int64, error) {
	fields := strings.Fields(payload)
	if len(fields) != 5 {
		return 0, fmt.Errorf("malformed +switch-master payload %q", payload)
	}
	ctx, cancel := context.WithTimeout(ctx, epochTimeout)
	defer cancel()
	m, err := client.Master(ctx, fields[0]).Result()
	if err != nil {
		return 0, err
	}
	if got, want := net.JoinHostPort(m["ip"], m["port"]), net.JoinHostPort(fields[3], fields[4]); got != want {
		return 0, fmt.Errorf("the sentinel's master is already %s, not %s", got, want)
	}
	epoch, err := strconv.ParseInt(m["config-epoch"], 10, 64)
	if err != nil || epoch <= 0 {
		return 0, fmt.Errorf("config-epoch %q", m["config-epoch"])
	}
	return epoch, nil
}

func newBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 5 * time.Second}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// record keeps the event and the failover bookkeeping (epoch is the
// switch's config epoch for a +switch-master, else 0), then triggers. An
// event read by a subscription that Watch has since cancelled (under the
// same lock) is dropped.
func (w *Watcher) record(ctx context.Context, key types.NamespacedName, e Event, epoch int64) {
	e = redact(e)
	if w.keep(ctx, key, e, epoch) {
		w.trigger(key, e)
	}
}

func (w *Watcher) keep(ctx context.Context, key types.NamespacedName, e Event, epoch int64) bool {
	w.mu.Lock()
	// Deferred: a panic in the bookkeeping is recovered by the guard and
	// must not leave the lock held.
	defer w.mu.Unlock()
	f := w.formations[key]
	if f == nil || ctx.Err() != nil {
		return false
	}
	f.add(e, epoch)
	return true
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

// add keeps one event; epoch is the config epoch of a +switch-master (0 if
// unknown) and ignored for other events.
func (f *formation) add(e Event, epoch int64) {
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
			f.addSwitch(e.Time, net.JoinHostPort(fields[1], fields[2]), net.JoinHostPort(fields[3], fields[4]), epoch)
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

// addSwitch records a master switch unless it is another announcement of
// one already kept. Every sentinel announces a failover, with the same new
// master and config epoch, and a slow one may do so after a later failover:
// any kept switch with that To and epoch is the same one. When either epoch
// is unknown only the latest switch can be the same, by From/To within
// switchWindow: after A->B and B->A, a new A->B is a third failover,
// however soon it follows. A known epoch fills in an unknown one.
func (f *formation) addSwitch(at time.Time, from, to string, epoch int64) {
	if epoch != 0 {
		for _, sw := range f.switches {
			if sw.To == to && sw.Epoch == epoch {
				return
			}
		}
	}
	if n := len(f.switches); n > 0 {
		last := &f.switches[n-1]
		if (last.Epoch == 0 || epoch == 0) && last.From == from && last.To == to && at.Sub(last.Time) < switchWindow {
			if last.Epoch == 0 {
				last.Epoch = epoch
			}
			return
		}
	}
	sw := Switch{Time: at, From: from, To: to, Epoch: epoch}
	if down, ok := f.sdownAt[from]; ok {
		sw.SdownAt = down
		delete(f.sdownAt, from)
	}
	f.switches = append(f.switches, sw)
	if len(f.switches) > MaxSwitches {
		f.switches = append([]Switch(nil), f.switches[len(f.switches)-MaxSwitches:]...)
	}
}
