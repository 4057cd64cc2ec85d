package redisadmin

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
)

// GoRedisDialer is the real Dialer. It keeps one small go-redis client per
// formation and address and replaces it when the formation's credentials
// (user, password or TLS material) change, so the number of clients stays bounded by the
// number of member addresses; Forget closes a formation's clients.
type GoRedisDialer struct {
	// Timeout bounds dialing and each read or write.
	Timeout time.Duration

	mu     sync.Mutex
	owners map[string]*clientSet
}

// clientSet is one formation's clients, by address.
type clientSet struct {
	servers   map[string]cachedClient[*redis.Client]
	sentinels map[string]cachedClient[*redis.SentinelClient]
}

type cachedClient[C interface{ Close() error }] struct {
	secret string // fingerprint of the user name, password and TLS material
	client C
}

// NewGoRedisDialer returns a Dialer with a per-command timeout.
func NewGoRedisDialer(timeout time.Duration) *GoRedisDialer {
	return &GoRedisDialer{Timeout: timeout, owners: map[string]*clientSet{}}
}

// Admin returns an Admin for the formation owner, logged in as creds'
// user on redis-servers and sentinels alike.
func (d *GoRedisDialer) Admin(owner string, creds Credentials) Admin {
	return &goRedisAdmin{dialer: d, owner: owner, creds: creds}
}

// Forget closes the formation owner's clients.
func (d *GoRedisDialer) Forget(owner string) {
	d.mu.Lock()
	set := d.owners[owner]
	delete(d.owners, owner)
	d.mu.Unlock()
	if set == nil {
		return
	}
	for _, c := range set.servers {
		_ = c.client.Close()
	}
	for _, c := range set.sentinels {
		_ = c.client.Close()
	}
}

// Close closes every cached client.
func (d *GoRedisDialer) Close() {
	d.mu.Lock()
	owners := make([]string, 0, len(d.owners))
	for owner := range d.owners {
		owners = append(owners, owner)
	}
	d.mu.Unlock()
	for _, owner := range owners {
		d.Forget(owner)
	}
}

// set returns the owner's client set, creating it. Called with d.mu held.
func (d *GoRedisDialer) set(owner string) *clientSet {
	set := d.owners[owner]
	if set == nil {
		set = &clientSet{servers: map[string]cachedClient[*redis.Client]{}, sentinels: map[string]cachedClient[*redis.SentinelClient]{}}
		d.owners[owner] = set
	}
	return set
}

// BufferSize is the read and the write buffer of each of the operator's own
// connections (admin clients, Sentinel watcher, canary). They carry small
// commands and replies (an INFO section is a few KiB, and a longer reply is
// read through the buffer), and go-redis's default of 32 KiB each way would
// hold 64 KiB per connection, a dozen connections per formation; go-redis
// itself uses 4 KiB for a FailoverClient's sentinel connections.
const BufferSize = 4 << 10

func (d *GoRedisDialer) options(addr string, creds Credentials) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		Username:              creds.Username,
		Password:              creds.Password,
		TLSConfig:             creds.TLS.Config(),
		DialTimeout:           d.Timeout,
		ReadTimeout:           d.Timeout,
		WriteTimeout:          d.Timeout,
		ContextTimeoutEnabled: true,
		// One attempt each: the controller re-observes on its next pass, and
		// a dead member must not stall a reconcile with go-redis's re-dials.
		MaxRetries:      -1,
		DialerRetries:   1,
		PoolSize:        2,
		ConnMaxIdleTime: time.Minute,
		DisableIdentity: true, // CLIENT SETINFO is unknown to Redis 7.0
		ReadBufferSize:  BufferSize,
		WriteBufferSize: BufferSize,
	}
}

// cached returns the client for addr in the cache pick selects (under mu),
// making a new one when none exists or the credentials changed.
func cached[C interface{ Close() error }](mu *sync.Mutex, pick func() map[string]cachedClient[C], addr string, creds Credentials, create func() C) C {
	secret := fingerprint.Strings(creds.Username, creds.Password, creds.TLS.CA, creds.TLS.Cert, creds.TLS.Key)
	mu.Lock()
	defer mu.Unlock()
	cache := pick()
	if c, ok := cache[addr]; ok {
		if c.secret == secret {
			return c.client
		}
		_ = c.client.Close()
	}
	c := create()
	cache[addr] = cachedClient[C]{secret: secret, client: c}
	return c
}

func (d *GoRedisDialer) server(owner string, addr endpoint.Endpoint, creds Credentials) *redis.Client {
	key := addr.String()
	return cached(&d.mu, func() map[string]cachedClient[*redis.Client] { return d.set(owner).servers }, key, creds, func() *redis.Client {
		return redis.NewClient(d.options(key, creds))
	})
}

func (d *GoRedisDialer) sentinel(owner string, addr endpoint.Endpoint, creds Credentials) *redis.SentinelClient {
	key := addr.String()
	return cached(&d.mu, func() map[string]cachedClient[*redis.SentinelClient] { return d.set(owner).sentinels }, key, creds, func() *redis.SentinelClient {
		return redis.NewSentinelClient(d.options(key, creds))
	})
}

type goRedisAdmin struct {
	dialer *GoRedisDialer
	owner  string
	creds  Credentials
}

func (a *goRedisAdmin) Replication(ctx context.Context, server endpoint.Endpoint) (Replication, error) {
	info, err := a.dialer.server(a.owner, server, a.creds).InfoMap(ctx, "replication", "memory").Result()
	if err != nil {
		return Replication{}, fmt.Errorf("INFO on %s: %w", server, err)
	}
	repl, mem := info["Replication"], info["Memory"]
	r := Replication{
		Role:              repl["role"],
		LinkUp:            repl["master_link_status"] == "up",
		ConnectedReplicas: atoi(repl["connected_slaves"]),
		UsedMemory:        atoi64(mem["used_memory"]),
		Maxmemory:         atoi64(mem["maxmemory"]),
	}
	if r.IsMaster() {
		r.Offset = atoi64(repl["master_repl_offset"])
	} else {
		r.Master = endpoint.Endpoint{Host: repl["master_host"], Port: atoi(repl["master_port"])}
		r.Offset = atoi64(repl["slave_repl_offset"])
		r.Priority = atoi(repl["slave_priority"])
	}
	return r, nil
}

func (a *goRedisAdmin) ReplicaOf(ctx context.Context, server, master endpoint.Endpoint) error {
	c := a.dialer.server(a.owner, server, a.creds)
	host, port := "NO", "ONE"
	if !master.IsZero() {
		host, port = master.Host, strconv.Itoa(master.Port)
	}
	if err := c.ReplicaOf(ctx, host, port).Err(); err != nil {
		return fmt.Errorf("REPLICAOF on %s: %w", server, err)
	}
	if err := c.ConfigRewrite(ctx).Err(); err != nil {
		return fmt.Errorf("CONFIG REWRITE on %s: %w", server, err)
	}
	return nil
}

func (a *goRedisAdmin) ConfigSet(ctx context.Context, server endpoint.Endpoint, settings map[string]string) error {
	c := a.dialer.server(a.owner, server, a.creds)
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if err := c.ConfigSet(ctx, key, settings[key]).Err(); err != nil {
			return fmt.Errorf("CONFIG SET %s on %s: %w", key, server, err)
		}
	}
	if err := c.ConfigRewrite(ctx).Err(); err != nil {
		return fmt.Errorf("CONFIG REWRITE on %s: %w", server, err)
	}
	return nil
}

func (a *goRedisAdmin) SetUser(ctx context.Context, server endpoint.Endpoint, u acl.User) error {
	c := a.dialer.server(a.owner, server, a.creds)
	if err := c.Do(ctx, setUserCommand(u)...).Err(); err != nil {
		return fmt.Errorf("ACL SETUSER %s on %s: %w", u.Name, server, withholdSecrets(err, u.Passwords...))
	}
	if err := c.ConfigRewrite(ctx).Err(); err != nil {
		return fmt.Errorf("CONFIG REWRITE on %s: %w", server, err)
	}
	return nil
}

// setUserCommand is ACL SETUSER with u's arguments.
func setUserCommand(u acl.User) []any {
	args := u.SetUserArgs()
	cmd := make([]any, 0, 2+len(args))
	cmd = append(cmd, "ACL", "SETUSER")
	for _, a := range args {
		cmd = append(cmd, a)
	}
	return cmd
}

// errWithheld stands for a server's error message that quoted a secret:
// only the reply's error code is kept.
type errWithheld struct{ code string }

func (e errWithheld) Error() string {
	return e.code + " (the server's message is withheld: it quoted a password)"
}

// errorCodes are the Redis error codes an errWithheld keeps; any other
// first word becomes ERR.
var errorCodes = map[string]bool{"ERR": true, "NOPERM": true, "WRONGPASS": true, "NOAUTH": true, "READONLY": true, "BUSY": true, "LOADING": true}

// withholdSecrets returns err unless its text contains one of secrets;
// then an errWithheld. Redis quotes the ACL SETUSER modifier or the
// SENTINEL CONFIG SET value it refuses, which could be a password; go-redis
// itself never puts a command's arguments into an error.
func withholdSecrets(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			code, _, _ := strings.Cut(msg, " ")
			if !errorCodes[code] {
				code = "ERR"
			}
			return errWithheld{code: code}
		}
	}
	return err
}

func (a *goRedisAdmin) PauseWrites(ctx context.Context, server endpoint.Endpoint, d time.Duration) error {
	err := a.dialer.server(a.owner, server, a.creds).Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "WRITE").Err()
	if err != nil {
		return fmt.Errorf("CLIENT PAUSE WRITE on %s: %w", server, err)
	}
	return nil
}

func (a *goRedisAdmin) ResumeWrites(ctx context.Context, server endpoint.Endpoint) error {
	if err := a.dialer.server(a.owner, server, a.creds).ClientUnpause(ctx).Err(); err != nil {
		return fmt.Errorf("CLIENT UNPAUSE on %s: %w", server, err)
	}
	return nil
}

func (a *goRedisAdmin) sentinelClient(s endpoint.Endpoint) *redis.SentinelClient {
	return a.dialer.sentinel(a.owner, s, a.creds)
}

func (a *goRedisAdmin) SentinelMaster(ctx context.Context, sentinel endpoint.Endpoint, name string) (MasterState, error) {
	m, err := a.sentinelClient(sentinel).Master(ctx, name).Result()
	if err != nil {
		return MasterState{}, sentinelErr("MASTER", sentinel, err)
	}
	return masterState(m), nil
}

func (a *goRedisAdmin) SentinelMasters(ctx context.Context, sentinel endpoint.Endpoint) (map[string]MasterState, error) {
	cmd := redis.NewMapStringStringSliceCmd(ctx, "SENTINEL", "MASTERS")
	if err := a.sentinelClient(sentinel).Process(ctx, cmd); err != nil {
		return nil, sentinelErr("MASTERS", sentinel, err)
	}
	masters := map[string]MasterState{}
	for _, m := range cmd.Val() {
		masters[m["name"]] = masterState(m)
	}
	return masters, nil
}

// masterState reads one master of a SENTINEL MASTER(S) answer.
func masterState(m map[string]string) MasterState {
	return MasterState{
		Address:           endpoint.Endpoint{Host: m["ip"], Port: atoi(m["port"])},
		Flags:             strings.Split(m["flags"], ","),
		Quorum:            atoi(m["quorum"]),
		DownAfterMs:       atoi(m["down-after-milliseconds"]),
		FailoverTimeoutMs: atoi(m["failover-timeout"]),
		ParallelSyncs:     atoi(m["parallel-syncs"]),
		NumReplicas:       atoi(m["num-slaves"]),
		NumOtherSentinels: atoi(m["num-other-sentinels"]),
		ConfigEpoch:       atoi64(m["config-epoch"]),
		RoleReportedAgo:   time.Duration(atoi64(m["role-reported-time"])) * time.Millisecond,
	}
}

func (a *goRedisAdmin) SentinelCKQuorum(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	return sentinelErr("CKQUORUM", sentinel, a.sentinelClient(sentinel).CkQuorum(ctx, name).Err())
}

func (a *goRedisAdmin) SentinelMonitor(ctx context.Context, sentinel endpoint.Endpoint, name string, master endpoint.Endpoint, quorum int) error {
	err := a.sentinelClient(sentinel).Monitor(ctx, name, master.Host, strconv.Itoa(master.Port), strconv.Itoa(quorum)).Err()
	return sentinelErr("MONITOR", sentinel, err)
}

func (a *goRedisAdmin) SentinelRemove(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	return sentinelErr("REMOVE", sentinel, a.sentinelClient(sentinel).Remove(ctx, name).Err())
}

func (a *goRedisAdmin) SentinelSet(ctx context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error {
	c := a.sentinelClient(sentinel)
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if err := c.Set(ctx, name, key, settings[key]).Err(); err != nil {
			return sentinelErr("SET "+key, sentinel, err)
		}
	}
	return nil
}

func (a *goRedisAdmin) SentinelSetUser(ctx context.Context, sentinel endpoint.Endpoint, u acl.User) error {
	c := a.sentinelClient(sentinel)
	if err := c.Process(ctx, redis.NewStatusCmd(ctx, setUserCommand(u)...)); err != nil {
		return fmt.Errorf("ACL SETUSER %s on sentinel %s: %w", u.Name, sentinel, withholdSecrets(err, u.Passwords...))
	}
	return sentinelErr("FLUSHCONFIG", sentinel, c.FlushConfig(ctx).Err())
}

func (a *goRedisAdmin) SentinelConfigSet(ctx context.Context, sentinel endpoint.Endpoint, settings map[string]string) error {
	c := a.sentinelClient(sentinel)
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		// The values may be passwords (sentinel-pass): never in an error.
		err := c.Process(ctx, redis.NewStatusCmd(ctx, "SENTINEL", "CONFIG", "SET", key, settings[key]))
		if err != nil {
			return sentinelErr("CONFIG SET "+key, sentinel, withholdSecrets(err, settings[key]))
		}
	}
	return nil
}

func (a *goRedisAdmin) SentinelReset(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	return sentinelErr("RESET", sentinel, a.sentinelClient(sentinel).Reset(ctx, name).Err())
}

func (a *goRedisAdmin) SentinelFailover(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	return sentinelErr("FAILOVER", sentinel, a.sentinelClient(sentinel).Failover(ctx, name).Err())
}

// sentinelErr names the command and sentinel, and maps "no such master".
func (a *goRedisAdmin) SentinelReplicas(ctx context.Context, sentinel endpoint.Endpoint, name string) ([]ReplicaState, error) {
	replicas, err := a.sentinelClient(sentinel).Replicas(ctx, name).Result()
	if err != nil {
		return nil, sentinelErr("REPLICAS", sentinel, err)
	}
	out := make([]ReplicaState, 0, len(replicas))
	for _, r := range replicas {
		out = append(out, ReplicaState{Address: endpoint.Endpoint{Host: r["ip"], Port: atoi(r["port"])}, Priority: atoi(r["slave-priority"]), Flags: strings.Split(r["flags"], ",")})
	}
	return out, nil
}

func sentinelErr(command string, sentinel endpoint.Endpoint, err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "No such master"):
		return fmt.Errorf("SENTINEL %s on %s: %w", command, sentinel, ErrNoSuchMaster)
	default:
		return fmt.Errorf("SENTINEL %s on %s: %w", command, sentinel, err)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// goRedisLog sends go-redis's own messages (dial failures, sentinel
// switches) to the structured log at debug level: the controller reports
// what matters through status and events.
type goRedisLog struct{ log logr.Logger }

func (l goRedisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.V(1).Info(fmt.Sprintf(format, v...))
}

// RouteGoRedisLogs makes go-redis log through log instead of stderr.
func RouteGoRedisLogs(log logr.Logger) { redis.SetLogger(goRedisLog{log}) }
