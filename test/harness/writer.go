// Package harness holds what the real-stack test suites (e2e, chaos,
// benchmarks) share: a writer that records which writes a replica
// acknowledged, and a kubeconfig for the envtest API server.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// Writer writes keys through the client backends use (built from the
// formation's connection Secret) and remembers every write a replica
// acknowledged (WAIT 1): those must never be lost. Like a backend that
// mounts the Secret, it can re-read it and switch to a new client when it
// changed (WriterOptions.Reload).
type Writer struct {
	mu    sync.Mutex
	stats WriterStats
	errAt []time.Time
	acked []string
	// lastOK is the end of the last successful write.
	lastOK time.Time
	stop   chan struct{}
	done   chan struct{}
}

// WriterStats count the writer's pipelines (SET + WAIT on one connection).
type WriterStats struct {
	Attempted, OK, Failed, Acknowledged int
	// LongestGap is the longest time between two successful writes.
	LongestGap time.Duration
	// Reloads counts the switches to a changed connection Secret.
	Reloads int
	// Errors counts the failed writes by kind: a Redis error's first word
	// (WRONGPASS, NOAUTH, READONLY...), else "network" (never a password).
	Errors map[string]int
}

// WriterOptions tune a Writer.
type WriterOptions struct {
	// Metrics instruments the client (subsystem "presence").
	Metrics *metrics.Cache
	// Prefix starts every key (default "writer:<formation>:").
	Prefix string
	// Pause is the time between two writes (default 20 ms); after a failed
	// write the writer waits five times as long.
	Pause time.Duration
	// OnError sees every failed write's error (e.g. to scan it for
	// passwords).
	OnError func(error)
	// Reload, when set, re-reads the connection Secret that often and
	// after every failed write, and switches to a new client when the
	// Secret changed: a backend that picks up a rotated password.
	Reload time.Duration
	// ConnMaxLifetime recycles the client's connections (0: never), so
	// that it logs in again that often: a retired password then shows.
	ConnMaxLifetime time.Duration
}

// StartWriter starts writing to formation f until Stop.
func StartWriter(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation, o WriterOptions) (*Writer, error) {
	clientOpts := redisclient.Options{Metrics: o.Metrics, ConnMaxLifetime: o.ConnMaxLifetime}
	data, err := ConnectionData(ctx, k8s, f)
	if err != nil {
		return nil, err
	}
	c, err := redisclient.FromSecretData(data, clientOpts)
	if err != nil {
		return nil, err
	}
	if o.Pause == 0 {
		o.Pause = 20 * time.Millisecond
	}
	if o.Prefix == "" {
		o.Prefix = "writer:" + f.Name + ":"
	}
	w := &Writer{stop: make(chan struct{}), done: make(chan struct{}), lastOK: time.Now(), stats: WriterStats{Errors: map[string]int{}}}
	go func() {
		defer close(w.done)
		defer func() { _ = c.Close() }()
		checked := time.Now()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			pause := o.Pause
			err := w.write(c, fmt.Sprintf("%s%d", o.Prefix, i))
			if err != nil {
				if o.OnError != nil {
					o.OnError(err)
				}
				pause *= 5
			}
			if o.Reload > 0 && (err != nil || time.Since(checked) >= o.Reload) {
				checked = time.Now()
				// Not the caller's ctx: it may end before the writer does.
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				fresh, ferr := ConnectionData(rctx, k8s, f)
				cancel()
				if ferr == nil && !maps.EqualFunc(fresh, data, bytes.Equal) {
					if nc, cerr := redisclient.FromSecretData(fresh, clientOpts); cerr == nil {
						_ = c.Close()
						c, data = nc, fresh
						w.mu.Lock()
						w.stats.Reloads++
						w.mu.Unlock()
					}
				}
			}
			time.Sleep(pause)
		}
	}()
	return w, nil
}

func (w *Writer) write(c *redis.Client, key string) error {
	ctx, cancel := context.WithTimeout(redisclient.WithSubsystem(context.Background(), "presence"), time.Second)
	defer cancel()
	// One pipeline, so WAIT runs on the connection that wrote.
	pipe := c.Pipeline()
	pipe.Set(ctx, key, key, 0)
	wait := pipe.Do(ctx, "WAIT", 1, 500)
	_, err := pipe.Exec(ctx)
	replicas, _ := wait.Int64()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Attempted++
	if err != nil {
		w.stats.Failed++
		w.stats.Errors[errorKind(err)]++
		w.errAt = append(w.errAt, time.Now())
		return err
	}
	w.stats.OK++
	w.stats.LongestGap = max(w.stats.LongestGap, time.Since(w.lastOK))
	w.lastOK = time.Now()
	if replicas >= 1 {
		w.stats.Acknowledged++
		w.acked = append(w.acked, key)
	}
	return nil
}

// errorKind is a Redis error's first word, or "network".
func errorKind(err error) string {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if f := strings.Fields(rerr.Error()); len(f) > 0 {
			return f[0]
		}
	}
	return "network"
}

// ErrorsAround counts the failed writes before and after t.
func (w *Writer) ErrorsAround(t time.Time) (before, after int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.errAt {
		if at.Before(t) {
			before++
		} else {
			after++
		}
	}
	return before, after
}

// Reset starts counting afresh (e.g. when a change begins); the
// acknowledged keys are kept.
func (w *Writer) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats = WriterStats{Errors: map[string]int{}}
	w.errAt, w.lastOK = nil, time.Now()
}

// ErrorKinds describes Errors, e.g. "3 WRONGPASS, 1 network".
func (s WriterStats) ErrorKinds() string {
	if len(s.Errors) == 0 {
		return "no errors"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
		parts = append(parts, fmt.Sprintf("%d %s", s.Errors[k], k))
	}
	return strings.Join(parts, ", ")
}

// Acknowledged returns the keys a replica acknowledged so far.
func (w *Writer) Acknowledged() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}

// Stats returns the counts so far.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Errors = maps.Clone(w.stats.Errors)
	return st
}

// ResetGap starts timing the longest gap afresh (e.g. when a change begins).
func (w *Writer) ResetGap() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.LongestGap, w.lastOK = 0, time.Now()
}

// Stop stops writing (it may be called more than once, from one
// goroutine) and returns the final counts.
func (w *Writer) Stop() WriterStats {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.Stats()
}

// Lost reads every acknowledged key back through a fresh client from the
// connection Secret and returns those missing or wrong.
func (w *Writer) Lost(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation) ([]string, error) {
	return LostKeys(ctx, k8s, f, w.Acknowledged(), nil)
}

// LostKeys reads keys (whose value is the key) through a fresh client from
// the connection Secret, in batches, and returns those missing or wrong. A
// read error is retried for up to a minute (and shown to onError): it is
// not a loss until the formation answers.
func LostKeys(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation, keys []string, onError func(error)) ([]string, error) {
	c, err := ConnectionClient(ctx, k8s, f, redisclient.Options{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var lost []string
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(len(keys), start+500)]
		vals, err := readBatch(ctx, c, batch, onError)
		if err != nil {
			return nil, fmt.Errorf("reading acknowledged keys back: %w", err)
		}
		for i, k := range batch {
			if s, ok := vals[i].(string); !ok || s != k {
				lost = append(lost, k)
			}
		}
	}
	return lost, nil
}

func readBatch(ctx context.Context, c *redis.Client, keys []string, onError func(error)) ([]any, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		vals, err := c.MGet(readCtx, keys...).Result()
		cancel()
		if err == nil {
			return vals, nil
		}
		if onError != nil {
			onError(err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ConnectionClient builds the backends' client from the formation's
// connection Secret.
func ConnectionClient(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation, o redisclient.Options) (*redis.Client, error) {
	data, err := ConnectionData(ctx, k8s, f)
	if err != nil {
		return nil, err
	}
	return redisclient.FromSecretData(data, o)
}

// ConnectionData is the data of the formation's connection Secret.
func ConnectionData(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation) (map[string][]byte, error) {
	conn := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-connection"}, conn); err != nil {
		return nil, err
	}
	return conn.Data, nil
}
