// Package redisclient builds go-redis clients from internal/config: a
// Sentinel FailoverClient when sentinel addresses are set, a single-instance
// client otherwise. Clients can be instrumented with a hook that counts hits
// and misses per calling subsystem (see WithSubsystem) on internal/metrics'
// cache counters.
package redisclient

import (
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
)

// Default timeouts.
const (
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = 1 * time.Second
	DefaultWriteTimeout = 1 * time.Second
)

// Options tune a client. The zero value is usable: timeouts get the
// defaults above and retries/backoff are go-redis's own (3 retries,
// exponential backoff 8 ms..512 ms).
type Options struct {
	// DialTimeout, ReadTimeout and WriteTimeout: 0 means the defaults above
	// (2 s, 1 s, 1 s); negative means no timeout (go-redis's -1).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxRetries is go-redis's MaxRetries: 0 means its default (3), -1
	// disables retries.
	MaxRetries int
	// MinRetryBackoff and MaxRetryBackoff are go-redis's backoff bounds; 0
	// means its defaults.
	MinRetryBackoff, MaxRetryBackoff time.Duration
	// DialerRetries is how often go-redis re-dials a refused connection
	// before giving up (0: its default, 5).
	DialerRetries int
	// PoolSize is go-redis's pool size (0: 10 per CPU).
	PoolSize int
	// ConnMaxLifetime closes connections this old (0: never), so that the
	// client logs in again that often.
	ConnMaxLifetime time.Duration
	// ClientName is sent with CLIENT SETNAME when set.
	ClientName string
	// BufferSize is the read and the write buffer of each connection (0:
	// go-redis's 32 KiB).
	BufferSize int
	// Metrics, when set, instruments the client with NewHook(Metrics).
	Metrics *metrics.Cache
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// New builds a client for cfg: a FailoverClient (which asks the sentinels
// for the master and follows failovers) when cfg.SentinelMode(), a plain
// client for cfg.Addr otherwise. Both are *redis.Client, so a caller can
// hold either as redis.UniversalClient or redis.Cmdable. With cfg.TLS, both
// the sentinels and the master are dialed with certs.ClientConfig (cfg's CA,
// else the system roots; cfg's client certificate, if any). The caller
// closes it.
func New(cfg config.Redis, opts Options) (*redis.Client, error) {
	// One set of options; go-redis derives the failover or the simple form.
	u := &redis.UniversalOptions{
		Username:              cfg.Username,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		ClientName:            opts.ClientName,
		MaxRetries:            opts.MaxRetries,
		MinRetryBackoff:       opts.MinRetryBackoff,
		MaxRetryBackoff:       opts.MaxRetryBackoff,
		DialerRetries:         opts.DialerRetries,
		DialTimeout:           orDefault(opts.DialTimeout, DefaultDialTimeout),
		ReadTimeout:           orDefault(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:          orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		ContextTimeoutEnabled: true,
		PoolSize:              opts.PoolSize,
		ConnMaxLifetime:       opts.ConnMaxLifetime,
		ReadBufferSize:        opts.BufferSize,
		WriteBufferSize:       opts.BufferSize,
		// Self-hosted redis-server has no maintenance notifications;
		// "auto" would only cost a failing handshake per connection.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("redisclient: TLS: %w", err)
	}
	u.TLSConfig = tc
	var c *redis.Client
	if cfg.SentinelMode() {
		if cfg.MasterName == "" {
			return nil, fmt.Errorf("redisclient: %s is required in Sentinel mode", config.EnvMasterName)
		}
		u.Addrs, u.MasterName = cfg.SentinelAddrs, cfg.MasterName
		// The sentinels' own user (the backend user there may only
		// discover the master); the data user comes from REDIS_URL.
		u.SentinelUsername, u.SentinelPassword = cfg.SentinelUsername, cfg.SentinelPassword
		// TLSConfig.ServerName stays empty: each member's certificate is
		// checked against the address dialed (see certs.ClientConfig).
		c = redis.NewFailoverClient(u.Failover())
	} else {
		if cfg.Addr == "" {
			return nil, fmt.Errorf("redisclient: %s is required without %s", config.EnvURL, config.EnvSentinelAddrs)
		}
		u.Addrs = []string{cfg.Addr}
		if u.TLSConfig != nil {
			host := cfg.Addr
			if h, _, err := net.SplitHostPort(cfg.Addr); err == nil {
				host = h
			}
			u.TLSConfig.ServerName = host
		}
		o := u.Simple()
		o.Network = cfg.Network
		c = redis.NewClient(o)
	}
	if opts.Metrics != nil {
		c.AddHook(NewHook(opts.Metrics))
	}
	return c, nil
}

// FromEnv builds a client from the REDIS_* environment variables.
func FromEnv(getenv func(string) string, opts Options) (*redis.Client, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts)
}

// FromSecretData builds a client from the data of a formation's connection
// Secret ("<formation>-connection"), whose keys are the REDIS_* variable
// names: REDIS_SENTINEL_ADDRS, REDIS_SENTINEL_MASTER_NAME,
// REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD and REDIS_URL, and with
// TLS REDIS_TLS_CA_CERT, REDIS_TLS_CLIENT_CERT and REDIS_TLS_CLIENT_KEY.
func FromSecretData(data map[string][]byte, opts Options) (*redis.Client, error) {
	cfg, err := config.FromSecretData(data)
	if err != nil {
		return nil, fmt.Errorf("connection secret: %w", err)
	}
	return New(cfg, opts)
}
