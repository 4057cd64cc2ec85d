package incus

import (
	"context"
	"strings"
	"sync"

	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
)

// Connector caches one connection per distinct Options so that reconciles
// do not reconnect. It is safe for concurrent use; concurrent callers for
// the same Options share one connection attempt. A failed attempt is not
// cached.
type Connector struct {
	mu      sync.Mutex
	conns   map[string]*connEntry
	connect func(context.Context, Options) (Server, error)
}

type connEntry struct {
	done chan struct{}
	srv  Server
	err  error
}

// NewConnector returns an empty Connector that connects with Connect.
func NewConnector() *Connector {
	return &Connector{conns: map[string]*connEntry{}, connect: Connect}
}

// Server returns the cached connection for opts, connecting first if needed.
func (c *Connector) Server(ctx context.Context, opts Options) (Server, error) {
	key := opts.Key()

	c.mu.Lock()
	e, ok := c.conns[key]
	if !ok {
		e = &connEntry{done: make(chan struct{})}
		c.conns[key] = e
	}
	c.mu.Unlock()

	if !ok {
		e.srv, e.err = c.connect(ctx, opts)
		if e.err != nil {
			c.mu.Lock()
			if c.conns[key] == e {
				delete(c.conns, key)
			}
			c.mu.Unlock()
		}

		close(e.done)
	}

	select {
	case <-e.done:
		return e.srv, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Forget drops the cached connection for opts (e.g. after it broke, or
// when the formation's Secret changed); the next Server call reconnects.
func (c *Connector) Forget(opts Options) {
	c.mu.Lock()
	delete(c.conns, opts.Key())
	c.mu.Unlock()
}

// Len returns the number of cached (or in-progress) connections.
func (c *Connector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()

	return len(c.conns)
}

// Key identifies the connection opts selects: project, socket or remote URL,
// and a SHA-256 over the certificates and key (never the material itself).
func (o Options) Key() string {
	if o.Remote == nil {
		path := o.SocketPath
		if path == "" {
			path = DefaultSocketPath
		}

		return "unix\x00" + path + "\x00" + o.Project
	}

	return "https\x00" + strings.Join(o.Remote.URLs(), ",") + "\x00" + o.Project + "\x00" + fingerprint.Strings(string(o.Remote.ClientCert), string(o.Remote.ClientKey), string(o.Remote.ServerCert))
}

// ServerSource hands out Servers per Options; *Connector implements it (and
// so does incusfake.Fake, for controller tests).
type ServerSource interface {
	Server(ctx context.Context, opts Options) (Server, error)
	Forget(opts Options)
}

var _ ServerSource = (*Connector)(nil)
