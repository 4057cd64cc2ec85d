// Package instancewatch follows the lifecycle events of the formations'
// Incus instances (instance-stopped, -shutdown, -deleted, -started, ...) and
// triggers a reconcile of the formation owning the instance at once, instead
// of at its next resync or when Sentinel notices (down-after later). An
// evacuation or restore of a cluster member triggers every formation on
// the cluster.
//
// Events are triggers only: a pass decides from what it reads. The one
// thing kept per instance is when Incus last reported it stopped (StoppedAt),
// which the pass reads as the moment a master's container went away.
//
// There is one event stream per Incus connection (incus.Options.Key(): the
// server and project), shared by every formation on it: started by the
// first Watch, stopped when the last formation on it is forgotten or moves
// to another. A stream that breaks (incusd restarted, network) is opened
// again with backoff, and every (re)connection triggers all its formations,
// since events may have been missed meanwhile. Streams run under a
// safe.Guard.
package instancewatch

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
)

// Component is what the guard logs and counts a recovered panic under.
const Component = "instance-watcher"

// triggering are the actions that change whether an instance runs.
// Others (exec, file pushed, updated, ...) are what the operator itself does
// to members and would only make it reconcile its own work again.
var triggering = map[string]bool{
	incus.ActionInstanceStarted: true, incus.ActionInstanceStopped: true, incus.ActionInstanceShutdown: true,
	incus.ActionInstanceRestarted: true, incus.ActionInstanceDeleted: true, incus.ActionInstancePaused: true,
	incus.ActionInstanceResumed: true, incus.ActionInstanceRenamed: true,
}

// clusterWide are the cluster's events that concern every formation on
// it: an evacuation moves members (a master first hands its role over),
// a restore moves them back.
var clusterWide = map[string]bool{
	incus.ActionClusterMemberEvacuating: true, incus.ActionClusterMemberRestoring: true,
	incus.ActionClusterMemberEvacuated: true, incus.ActionClusterMemberRestored: true,
}

// stops are the actions after which an instance is not running; starts
// those after which it runs again.
var (
	stops  = map[string]bool{incus.ActionInstanceStopped: true, incus.ActionInstanceShutdown: true, incus.ActionInstanceDeleted: true}
	starts = map[string]bool{incus.ActionInstanceStarted: true, incus.ActionInstanceRestarted: true}
)

// Watcher routes Incus lifecycle events to the formations owning the
// instances. Use New.
type Watcher struct {
	log    logr.Logger
	guard  safe.Guard
	source incus.ServerSource
	// trigger is called (without locks held) with a formation to reconcile.
	trigger func(types.NamespacedName)
	// now is the clock that receive times are read from.
	now func() time.Time
	// backoff is the reconnection backoff of a new stream.
	backoff func() *wait.Backoff

	mu         sync.Mutex
	formations map[types.NamespacedName]*formation
	streams    map[string]*stream // by incus.Options.Key()
}

type formation struct {
	stream    *stream
	instances map[string]*instanceState
}

// instanceState is what the events said of one instance since it was
// watched: the latest stop and the latest start, each at Incus's time.
type instanceState struct {
	stoppedAt, startedAt time.Time
}

type stream struct {
	opts       incus.Options
	project    string
	formations map[types.NamespacedName]struct{}
	cancel     context.CancelFunc
	done       chan struct{}
}

// New returns a Watcher that connects through source and calls trigger
// with each formation an event concerns.
func New(log logr.Logger, guard safe.Guard, source incus.ServerSource, trigger func(types.NamespacedName)) *Watcher {
	return &Watcher{
		log: log, guard: guard, source: source, trigger: trigger, now: time.Now, backoff: newBackoff,
		formations: map[types.NamespacedName]*formation{}, streams: map[string]*stream{},
	}
}

func newBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
}

// Watch makes the formation's events those of exactly these instances on
// the connection opts selects. A formation that moved to another connection
// leaves its previous stream (stopped if it was the last one on it) and
// starts afresh; instances no longer listed are forgotten.
func (w *Watcher) Watch(key types.NamespacedName, opts incus.Options, instances []string) {
	var stale *stream
	w.mu.Lock()
	f := w.formations[key]
	if f != nil && f.stream.opts.Key() != opts.Key() {
		stale = w.leave(key, f)
		f = nil
	}
	if f == nil {
		f = &formation{stream: w.join(key, opts), instances: map[string]*instanceState{}}
		w.formations[key] = f
	}
	listed := map[string]*instanceState{}
	for _, name := range instances {
		listed[name] = cmp.Or(f.instances[name], &instanceState{})
	}
	f.instances = listed
	w.mu.Unlock()
	stale.wait()
}

// Forget stops following a formation and drops what its events said; its
// stream stops when no other formation is on it.
func (w *Watcher) Forget(key types.NamespacedName) {
	var stale *stream
	w.mu.Lock()
	if f := w.formations[key]; f != nil {
		stale = w.leave(key, f)
		delete(w.formations, key)
	}
	w.mu.Unlock()
	stale.wait()
}

// Stop stops every stream and forgets every formation.
func (w *Watcher) Stop() {
	w.mu.Lock()
	streams := w.streams
	w.streams, w.formations = map[string]*stream{}, map[types.NamespacedName]*formation{}
	for _, s := range streams {
		s.cancel()
	}
	w.mu.Unlock()
	for _, s := range streams {
		s.wait()
	}
}

// StoppedAt is when Incus reported the formation's instance stopped, shut
// down or deleted (its timestamp, never later than when the event arrived),
// the latest such report since the instance was watched and not followed
// by a start; zero if none.
func (w *Watcher) StoppedAt(key types.NamespacedName, instance string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.formations[key]; f != nil {
		if st := f.instances[instance]; st != nil {
			return st.stoppedAt
		}
	}
	return time.Time{}
}

// join adds a formation to the stream of opts, starting it if needed.
// Called with w.mu held.
func (w *Watcher) join(key types.NamespacedName, opts incus.Options) *stream {
	s := w.streams[opts.Key()]
	if s == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s = &stream{opts: opts, project: cmp.Or(opts.Project, "default"), formations: map[types.NamespacedName]struct{}{}, cancel: cancel, done: make(chan struct{})}
		w.streams[opts.Key()] = s
		w.guard.Go(Component, func() {
			// Deferred calls run while a panic unwinds, before the guard
			// recovers it: done is closed and the stream dropped either
			// way, so the next Watch starts it again.
			defer close(s.done)
			defer w.ended(s)
			w.follow(ctx, s)
		})
	}
	s.formations[key] = struct{}{}
	return s
}

// leave takes a formation off its stream and returns the stream if that
// stopped it (to wait for outside the lock). Called with w.mu held.
func (w *Watcher) leave(key types.NamespacedName, f *formation) *stream {
	s := f.stream
	delete(s.formations, key)
	if len(s.formations) > 0 {
		return nil
	}
	s.cancel()
	if w.streams[s.opts.Key()] == s {
		delete(w.streams, s.opts.Key())
	}
	return s
}

func (s *stream) wait() {
	if s != nil {
		<-s.done
	}
}

// ended drops a stream whose goroutine stopped by itself (a panic), and
// moves its formations to a fresh stream at their next Watch.
func (w *Watcher) ended(s *stream) {
	s.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.streams[s.opts.Key()] != s {
		return
	}
	delete(w.streams, s.opts.Key())
	for key := range s.formations {
		delete(w.formations, key)
	}
}

// follow keeps the stream of s open until ctx ends, reconnecting with
// backoff. The backoff starts over only after a stream that lasted: one
// that breaks as soon as it connects must not trigger every formation on
// the server in a tight loop.
func (w *Watcher) follow(ctx context.Context, s *stream) {
	log := w.log.WithValues("incus", describe(s.opts), "project", s.project)
	backoff := w.backoff()
	failing := false
	for {
		var connectedAt time.Time
		err := w.listen(ctx, s, func() {
			connectedAt = time.Now()
			if failing {
				log.Info("Incus lifecycle event stream restored; reconciling every formation on this server, as events may have been missed")
				failing = false
			} else {
				log.V(1).Info("listening to Incus lifecycle events")
			}
		}, log)
		if ctx.Err() != nil {
			return
		}
		if !connectedAt.IsZero() && time.Since(connectedAt) > backoff.Cap {
			backoff = w.backoff()
		}
		delay := backoff.Step()
		if !failing {
			log.Info("Incus lifecycle event stream down; reconnecting with backoff (meanwhile stopped instances are noticed at resyncs and by Sentinel)", "error", err.Error(), "retryIn", delay.Round(time.Millisecond).String())
			failing = true
		} else {
			log.V(1).Info("still no Incus lifecycle event stream", "error", err.Error(), "retryIn", delay.Round(time.Millisecond).String())
		}
		// A fresh connection next time: incusd may have restarted.
		w.source.Forget(s.opts)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// listen runs one stream; connected is called once it is established.
func (w *Watcher) listen(ctx context.Context, s *stream, connected func(), log logr.Logger) error {
	srv, err := w.source.Server(ctx, s.opts)
	if err != nil {
		return err
	}
	return srv.WatchLifecycle(ctx, func() {
		connected()
		w.triggerAll(s)
	}, func(e incus.LifecycleEvent) {
		// One event that panics must not end the stream.
		w.guard.Run(Component, func() { w.route(s, e, log) })
	})
}

// triggerAll triggers every formation on the stream.
func (w *Watcher) triggerAll(s *stream) {
	w.mu.Lock()
	var keys []types.NamespacedName
	if w.streams[s.opts.Key()] == s {
		for key := range s.formations {
			keys = append(keys, key)
		}
	}
	w.mu.Unlock()
	for _, key := range keys {
		w.trigger(key)
	}
}

// route records an event with the formations owning the instance and
// triggers them.
func (w *Watcher) route(s *stream, e incus.LifecycleEvent, log logr.Logger) {
	if clusterWide[e.Action] {
		log.V(1).Info("Incus cluster member evacuation or restore; reconciling every formation on the host", "action", e.Action)
		w.triggerAll(s)
		return
	}
	if !triggering[e.Action] || (e.Project != "" && e.Project != s.project) {
		return
	}
	received := w.now()
	at := e.Time
	if at.IsZero() || at.After(received) {
		// Incus's clock ahead of ours would date a stop in our future.
		at = received
	}
	w.mu.Lock()
	var keys []types.NamespacedName
	if w.streams[s.opts.Key()] == s {
		for key := range s.formations {
			if st := w.formations[key].instances[e.Instance]; st != nil {
				st.record(e.Action, at)
				keys = append(keys, key)
			}
		}
	}
	w.mu.Unlock()
	for _, key := range keys {
		log.V(1).Info("Incus instance lifecycle event; reconciling its formation", "formation", key.String(), "instance", e.Instance, "action", e.Action, "at", at)
		w.trigger(key)
	}
}

// record keeps a stop or a start by Incus's time: the client may deliver
// events out of order, and a stop older than the latest start is over.
func (st *instanceState) record(action string, at time.Time) {
	switch {
	case stops[action] && !at.Before(st.startedAt) && at.After(st.stoppedAt):
		st.stoppedAt = at
	case starts[action] && !at.Before(st.stoppedAt):
		st.startedAt, st.stoppedAt = at, time.Time{}
	case starts[action] && at.After(st.startedAt):
		st.startedAt = at
	}
}

// describe names the server of opts for logs (never its credentials).
func describe(opts incus.Options) string {
	if opts.Remote != nil {
		return opts.Remote.URL
	}
	return cmp.Or(opts.SocketPath, incus.DefaultSocketPath)
}
