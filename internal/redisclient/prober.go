package redisclient

import (
	"bytes"
	"context"
	"maps"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Prober runs the canary for many formations, with one client per formation
// built from its connection Secret data and rebuilt when that data changes
// (a password rotation, new sentinel addresses).
type Prober struct {
	opts    Options
	mu      sync.Mutex
	clients map[string]probeClient
}

type probeClient struct {
	data   map[string][]byte
	client *redis.Client
}

// NewProber returns a Prober whose clients use opts.
func NewProber(opts Options) *Prober {
	return &Prober{opts: opts, clients: map[string]probeClient{}}
}

// Probe runs Canary for the formation key through a client built from data.
func (p *Prober) Probe(ctx context.Context, key string, data map[string][]byte) (time.Duration, error) {
	c, err := p.client(key, data)
	if err != nil {
		return 0, err
	}
	return Canary(ctx, c, "")
}

func (p *Prober) client(key string, data map[string][]byte) (*redis.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc, ok := p.clients[key]; ok {
		if maps.EqualFunc(pc.data, data, bytes.Equal) {
			return pc.client, nil
		}
		_ = pc.client.Close()
		delete(p.clients, key)
	}
	c, err := FromSecretData(data, p.opts)
	if err != nil {
		return nil, err
	}
	p.clients[key] = probeClient{data: maps.Clone(data), client: c}
	return c, nil
}

// Forget closes the formation's client.
func (p *Prober) Forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc, ok := p.clients[key]; ok {
		_ = pc.client.Close()
		delete(p.clients, key)
	}
}
