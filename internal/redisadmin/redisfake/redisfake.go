// Package redisfake simulates the redis-servers and sentinels of formations
// in memory, for controller tests and the scale benchmark on the fake Incus
// backend (incusfake). It never opens a network connection.
//
// A World implements redisadmin.Dialer. Attached to an incusfake.Fake, it
// reacts to the operator's configuration scripts the way the real member
// containers do: an Exec that starts redis-server reads the redis.conf the
// operator wrote into the instance (address, port, ACL users, masteruser
// and masterauth, replicaof),
// one that starts redis-sentinel reads sentinel.conf (sentinel monitor and
// its settings), `touch /etc/redis/rsf-configured` marks the member
// configured, and the probe script reports those states. Commands it does
// not know exit 1, so a change of the operator's scripts shows up in tests
// instead of being silently accepted.
//
// Answers follow Redis 7.0:
//   - INFO replication: a replica's link is up when its master's
//     redis-server runs and accepts its masteruser/masterauth; a linked replica has
//     the master's offset; a master counts its linked replicas.
//   - SENTINEL MASTER: the monitored address and settings; num-slaves and
//     num-other-sentinels count every replica and every other sentinel (same
//     master name and address) seen since MONITOR or RESET, including ones
//     that went away since, as Sentinel does; flags add s_down while the
//     master's redis-server does not answer (no automatic failover: use
//     SENTINEL FAILOVER).
//   - SENTINEL CKQUORUM: OK when the usable sentinels (this one and the
//     known peers that run, monitor the same master and accept its
//     sentinel-user/sentinel-pass) reach the quorum and a majority of the
//     known sentinels.
//   - ACL users are checked, not their rights: an Admin's Credentials must
//     name a user that is on and accepts the password on the server or
//     sentinel it talks to (WRONGPASS otherwise). Users come from the
//     config files' `user` lines (passwords as #<sha256>, as the renderer
//     writes them; requirepass sets the default user's password) and from
//     SetUser / SentinelSetUser, all or nothing as ACL SETUSER. A replica
//     links when its master accepts its masteruser/masterauth; a sentinel
//     reaches its master (no s_down) when the master accepts its
//     auth-user/auth-pass. Users set with SetUser and masterauth
//     set with ConfigSet survive a restart (CONFIG REWRITE), as long as the
//     operator has not written a new redis.conf since.
//   - TLS is not negotiated: a server whose config has a tls-port listens
//     there (port 0 closes the plaintext one) and answers any client. What
//     it loaded is recorded (TLS): the files named by tls-cert-file and
//     tls-ca-cert-file when it started and, for redis-server, when CONFIG
//     SET names one of the tls-* files (Redis rebuilds its TLS context);
//     `systemctl restart redis-sentinel` stops and starts the sentinel (its
//     state kept, as Sentinel rewrites its config file) and counts.
//
// The processes follow their container: stopping an instance in incusfake
// stops both (as Crash does), starting it again starts the sentinel if the
// operator enabled it (redis-server is not enabled: it stays down), and
// deleting it forgets the member (ForgetInstance), so a rebuilt container starts
// unconfigured. Crash takes a member's processes down while its container
// keeps running.
package redisfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

// Sentinel's defaults for a master added with SENTINEL MONITOR.
const (
	defaultDownAfterMs       = 30000
	defaultFailoverTimeoutMs = 180000
	defaultParallelSyncs     = 1
)

// initialOffset is a master's replication offset: constant, so that an
// unchanged formation observes unchanged offsets (real masters advance
// theirs with every replication ping).
const initialOffset = 1000

// World is the simulated set of members. Use New, then Attach.
type World struct {
	mu    sync.Mutex
	files func(instance, path string) ([]byte, bool)
	// engineOf is the engine an instance was built to run (its
	// user.rsf.engine key; Redis without one).
	engineOf func(instance string) engine.Engine
	members  map[string]*member // by instance name
	byHost   map[string]*member // by address
	// problems are configuration errors met when a process started (the
	// real service would fail after systemctl start --no-block returned).
	problems []string
	// refused are the ACL rules the simulated servers do not know.
	refused map[string]bool
}

type member struct {
	instance string
	// engine gives the units and paths its scripts name, and whether it
	// can replicate from its master (Redis 7 cannot from Valkey 8).
	engine     engine.Engine
	host       string
	configured bool
	// sentinelEnabled: systemctl enable ran; the sentinel starts with
	// the container.
	sentinelEnabled bool
	redis           *redisProc    // nil: not running
	sentinel        *sentinelProc // nil: not running
	// stoppedSentinel is a stopped sentinel's state: Sentinel rewrites its
	// config file, so it starts again where it stopped.
	stoppedSentinel *sentinelProc
	// rewritten is what CONFIG REWRITE persisted into redis.conf: applied
	// when redis-server starts again on the same file.
	rewritten *rewrite
	// tlsReloads counts CONFIG SETs naming TLS files, sentinelRestarts the
	// `systemctl restart redis-sentinel`s.
	tlsReloads, sentinelRestarts int
	// sentinelUnreachable: the sentinel runs but refuses the operator's
	// connections (SetSentinelUnreachable).
	sentinelUnreachable bool
}

// TLSFiles are the TLS files a process loaded: its certificate file (the
// key and certificate chain) and its CA file; nil when it has none.
type TLSFiles struct {
	Cert, CA []byte
}

// TLSState is what an instance's processes loaded as TLS material and how
// often the operator made them load it again.
type TLSState struct {
	// Redis and Sentinel are what the running processes loaded.
	Redis, Sentinel TLSFiles
	// Reloads counts the CONFIG SETs of TLS files, SentinelRestarts the
	// sentinel restarts.
	Reloads, SentinelRestarts int
}

// rewrite is the ACL state CONFIG REWRITE wrote into a redis.conf whose
// operator-written content was file.
type rewrite struct {
	file       string
	users      users
	masteruser string
	masterauth string
}

type redisProc struct {
	port int
	// file is the redis.conf it started from.
	file  string
	users users
	// masteruser/masterauth: what it logs in to its master with.
	masteruser string
	masterauth string
	// pausedUntil: CLIENT PAUSE WRITE (replication offsets are constant
	// here anyway).
	pausedUntil time.Time
	replicaOf   endpoint.Endpoint
	maxmemory   int64
	offset      int64
	config      map[string]string
	tls         TLSFiles
}

type sentinelProc struct {
	port  int
	users users
	// currentEpoch is the sentinel-wide epoch a failover's new config
	// epoch is taken above: a master monitored afresh (config epoch 0)
	// never gets an epoch an earlier failover had.
	currentEpoch int64
	// config are the sentinel-wide settings (sentinel-user, sentinel-pass,
	// and whatever SENTINEL CONFIG SET set).
	config  map[string]string
	masters map[string]*monitor
	// tlsFiles are the paths of its tls-cert-file and tls-ca-cert-file,
	// read again at each start; tls what it read.
	tlsFiles [2]string
	tls      TLSFiles
}

type monitor struct {
	addr            endpoint.Endpoint
	quorum          int
	downAfter       int
	failoverTimeout int
	parallelSyncs   int
	authUser        string
	authPass        string
	epoch           int64
	replicas        map[endpoint.Endpoint]bool // seen since MONITOR or RESET
	sentinels       map[endpoint.Endpoint]bool
}

var _ redisadmin.Dialer = (*World)(nil)

// New returns an empty world; Attach it to the Incus fake the operator
// uses.
func New() *World {
	return &World{members: map[string]*member{}, byHost: map[string]*member{}, refused: map[string]bool{}}
}

// Attach makes the world handle f's Exec calls, read the files written
// into f's instances and follow their containers' stops, starts and
// deletions. It replaces f.ExecFunc, f.OnStart, f.OnStop and f.OnDelete;
// call it before use.
func (w *World) Attach(f *incusfake.Fake) {
	w.files = func(instance, path string) ([]byte, bool) {
		file, ok := f.File(instance, path)
		return file.Content, ok
	}
	w.engineOf = func(instance string) engine.Engine {
		return engine.Lookup(engine.Name(f.InstanceConfig(instance)[engine.Property]))
	}
	f.ExecFunc = w.Exec
	f.OnStop = w.Crash
	f.OnDelete = w.ForgetInstance
	f.OnStart = w.boot
}

// boot starts what starts with the container: an enabled sentinel.
func (w *World) boot(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m := w.members[instance]; m != nil && m.sentinelEnabled {
		w.startSentinel(instance)
	}
}

// Problems returns the configuration errors met when processes started.
func (w *World) Problems() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.problems)
}

// Crash stops an instance's redis-server and sentinel, as a container
// restart does (redis-server stays down: it is not enabled).
func (w *World) Crash(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.members[instance]
	if m == nil {
		return
	}
	m.redis = nil
	if m.sentinel != nil {
		m.stoppedSentinel, m.sentinel = m.sentinel, nil
	}
}

// ForgetInstance drops everything known about an instance, as when it is
// deleted.
func (w *World) ForgetInstance(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m := w.members[instance]; m != nil {
		if w.byHost[m.host] == m {
			delete(w.byHost, m.host)
		}
		delete(w.members, instance)
	}
}

func (w *World) member(instance string) *member {
	m := w.members[instance]
	if m == nil {
		m = &member{instance: instance, engine: engine.MustOf(engine.Redis)}
		w.members[instance] = m
	}
	return m
}

func (w *World) setHost(m *member, host string) {
	if m.host == host {
		return
	}
	if w.byHost[m.host] == m {
		delete(w.byHost, m.host)
	}
	m.host = host
	w.byHost[host] = m
}

// Exec runs the operator's scripts (incusfake.Fake.ExecFunc).
func (w *World) Exec(instance string, command []string) (incus.ExecResult, error) {
	if len(command) != 3 || command[0] != "sh" || command[1] != "-c" {
		return fail(127, "redisfake: unsupported command %q", command), nil
	}
	// The operator's scripts may start by waiting for a booting
	// container's systemd, which the simulation does not have to.
	script := strings.TrimPrefix(command[2], render.AwaitSystemd)
	e := w.engineOf(instance)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.member(instance).engine = e
	if strings.Contains(script, "systemctl is-active") {
		return w.probe(instance), nil
	}
	server, sentinel := e.ServerUnit, e.SentinelUnit
	sentinelDropIn, _ := render.GateSentinelDropIn(e)
	gateDirs := "mkdir -p " + path.Dir(render.GateScript) + " " + path.Dir(render.GateDropIn(e)) + " " + path.Dir(sentinelDropIn)
	for _, step := range splitScript(script) {
		fields := strings.Fields(step)
		switch {
		case len(fields) == 0, step == "set -e", step == "true", step == "/lib/systemd/systemd-networkd-wait-online -i eth0 --timeout=10":
		case fields[0] == "chown" && len(fields) >= 3 && fields[1] == e.User+":"+e.User:
			for _, path := range fields[2:] {
				if _, ok := w.files(instance, path); !ok {
					return fail(1, "chown: cannot access '%s': No such file or directory", path), nil
				}
			}
		case fields[0] == "chown":
			return fail(1, "chown: invalid user: %q", fields[1]), nil
		case step == "systemctl enable --now "+sentinel:
			w.member(instance).sentinelEnabled = true
			w.startSentinel(instance)
		case step == "ln -sf /lib/systemd/system/"+sentinel+".service /etc/systemd/system/multi-user.target.wants/"+sentinel+".service":
			w.member(instance).sentinelEnabled = true
		case step == "systemctl start "+sentinel+" "+server:
			w.startSentinel(instance)
			w.startRedis(instance)
		case step == "systemctl start --no-block "+sentinel, step == "systemctl start "+sentinel:
			w.startSentinel(instance)
		case step == "systemctl restart "+sentinel:
			m := w.member(instance)
			if m.sentinel != nil {
				m.stoppedSentinel, m.sentinel = m.sentinel, nil
			}
			m.sentinelRestarts++
			w.startSentinel(instance)
		case step == "systemctl start --no-block "+server, step == "systemctl start "+server:
			w.startRedis(instance)
		case step == gateDirs:
		case step == "systemctl daemon-reload":
			// Only the handover gate's drop-in needs it (on a cluster).
			if _, ok := w.files(instance, render.GateDropIn(e)); !ok {
				return fail(127, "redisfake: daemon-reload without the handover gate's drop-in"), nil
			}
		case len(fields) == 2 && fields[0] == "touch" && fields[1] == e.Configured:
			w.member(instance).configured = true
		default:
			return fail(127, "redisfake: unsupported step %q", step), nil
		}
	}
	return incus.ExecResult{}, nil
}

func fail(code int, format string, args ...any) incus.ExecResult {
	return incus.ExecResult{ExitCode: code, Stderr: fmt.Sprintf(format, args...) + "\n"}
}

// splitScript splits a shell script on ;, && and newlines (the operator's
// scripts use nothing else).
func splitScript(script string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(script, func(r rune) bool { return r == ';' || r == '\n' }) {
		for _, step := range strings.Split(part, "&&") {
			out = append(out, strings.TrimSpace(step))
		}
	}
	return out
}

func (w *World) probe(instance string) incus.ExecResult {
	configured, redisState, sentinelState := "no", "inactive", "inactive"
	if m := w.members[instance]; m != nil {
		if m.configured {
			configured = "yes"
		}
		if m.redis != nil {
			redisState = "active"
		}
		if m.sentinel != nil {
			sentinelState = "active"
		}
	}
	return incus.ExecResult{Stdout: configured + " " + redisState + " " + sentinelState + "\n"}
}

func (w *World) problem(instance, format string, args ...any) {
	w.problems = append(w.problems, instance+": "+fmt.Sprintf(format, args...))
}

// readConf reads and parses, as Redis does, a file the operator wrote: one
// argument list per directive, the name lower-cased.
func (w *World) readConf(instance, path string) ([][]string, bool) {
	data, ok := w.files(instance, path)
	if !ok {
		w.problem(instance, "%s does not exist", path)
		return nil, false
	}
	lines, err := render.ParseConf(data)
	if err != nil {
		w.problem(instance, "%s: %v", path, err)
		return nil, false
	}
	dirs := make([][]string, len(lines))
	for i, l := range lines {
		dirs[i] = l.Args
	}
	return dirs, true
}

func (w *World) startRedis(instance string) {
	m := w.member(instance)
	if m.redis != nil {
		return // systemctl start of an active unit
	}
	dirs, ok := w.readConf(instance, m.engine.ServerConf)
	if !ok {
		return
	}
	file, _ := w.files(instance, m.engine.ServerConf)
	r := &redisProc{port: 6379, config: map[string]string{}, users: defaultUsers(), file: string(file)}
	var host string
	for _, d := range dirs {
		if len(d) < 2 {
			continue
		}
		if d[0] != "user" {
			r.config[d[0]] = strings.Join(d[1:], " ")
		}
		switch d[0] {
		case "bind":
			host = d[1]
		case "port", "tls-port":
			if p, _ := strconv.Atoi(d[1]); p > 0 {
				r.port = p
			}
		case "requirepass":
			r.users.requirepass(d[1])
		case "user":
			if err := r.users.userLine(d[1:], w.refusedOn(m)); err != nil {
				w.problem(instance, "redis.conf: Error in user declaration: %v", err)
				return
			}
		case "masteruser":
			r.masteruser = d[1]
		case "masterauth":
			r.masterauth = d[1]
		case "maxmemory":
			r.maxmemory = memoryBytes(d[1])
		case "replicaof", "slaveof":
			if len(d) == 3 {
				port, _ := strconv.Atoi(d[2])
				r.replicaOf = endpoint.Endpoint{Host: d[1], Port: port}
			}
		}
	}
	if host == "" || r.port <= 0 {
		w.problem(instance, "redis.conf has no bind address or port")
		return
	}
	r.tls = w.loadTLS(instance, r.config["tls-cert-file"], r.config["tls-ca-cert-file"])
	if r.replicaOf.IsZero() {
		r.offset = initialOffset
	}
	if rw := m.rewritten; rw != nil && rw.file == r.file {
		r.users = rw.users.clone()
		r.masteruser, r.masterauth = rw.masteruser, rw.masterauth
	}
	w.setHost(m, host)
	m.redis = r
}

// priority is the replica-priority (Redis's default 100 when unset).
func (r *redisProc) priority() int {
	if p, err := strconv.Atoi(r.config["replica-priority"]); err == nil {
		return p
	}
	return 100
}

// configRewrite persists m's redis-server's ACL state (CONFIG REWRITE).
func (m *member) configRewrite() {
	r := m.redis
	m.rewritten = &rewrite{file: r.file, users: r.users.clone(), masteruser: r.masteruser, masterauth: r.masterauth}
}

func (w *World) startSentinel(instance string) {
	m := w.member(instance)
	if m.sentinel != nil {
		return
	}
	if s := m.stoppedSentinel; s != nil {
		s.tls = w.loadTLS(instance, s.tlsFiles[0], s.tlsFiles[1])
		m.sentinel, m.stoppedSentinel = s, nil
		return
	}
	dirs, ok := w.readConf(instance, m.engine.SentinelConf)
	if !ok {
		return
	}
	s := &sentinelProc{port: 26379, masters: map[string]*monitor{}, users: defaultUsers(), config: map[string]string{}}
	var host string
	for _, d := range dirs {
		if len(d) < 2 {
			continue
		}
		switch d[0] {
		case "bind":
			host = d[1]
		case "port", "tls-port":
			if p, _ := strconv.Atoi(d[1]); p > 0 {
				s.port = p
			}
		case "tls-cert-file":
			s.tlsFiles[0] = d[1]
		case "tls-ca-cert-file":
			s.tlsFiles[1] = d[1]
		case "requirepass":
			s.users.requirepass(d[1])
		case "user":
			if err := s.users.userLine(d[1:], w.refusedOn(m)); err != nil {
				w.problem(instance, "sentinel.conf: Error in user declaration: %v", err)
				return
			}
		case "sentinel":
			w.sentinelDirective(instance, s, d[1:])
		}
	}
	if host == "" || s.port <= 0 {
		w.problem(instance, "sentinel.conf has no bind address or port")
		return
	}
	s.tls = w.loadTLS(instance, s.tlsFiles[0], s.tlsFiles[1])
	w.setHost(m, host)
	m.sentinel = s
}

// sentinelDirective applies one `sentinel ...` line of sentinel.conf.
func (w *World) sentinelDirective(instance string, s *sentinelProc, args []string) {
	sub := strings.ToLower(args[0])
	if sub == "monitor" {
		if len(args) != 5 {
			w.problem(instance, "sentinel monitor needs 4 arguments")
			return
		}
		port, _ := strconv.Atoi(args[3])
		quorum, _ := strconv.Atoi(args[4])
		s.masters[args[1]] = newMonitor(endpoint.Endpoint{Host: args[2], Port: port}, quorum)
		return
	}
	if sub == "known-replica" && len(args) == 4 {
		if mon := s.masters[args[1]]; mon != nil {
			port, _ := strconv.Atoi(args[3])
			mon.replicas[endpoint.Endpoint{Host: args[2], Port: port}] = true
		}
		return
	}
	if len(args) == 2 {
		s.config[sub] = args[1] // sentinel-user, sentinel-pass, announce-ip, ...
		return
	}
	if len(args) != 3 {
		return
	}
	mon := s.masters[args[1]]
	if mon == nil {
		return
	}
	if err := mon.set(sub, args[2]); err != nil {
		w.problem(instance, "sentinel.conf: %v", err)
	}
}

func newMonitor(addr endpoint.Endpoint, quorum int) *monitor {
	return &monitor{
		addr: addr, quorum: quorum,
		downAfter: defaultDownAfterMs, failoverTimeout: defaultFailoverTimeoutMs, parallelSyncs: defaultParallelSyncs,
		replicas: map[endpoint.Endpoint]bool{}, sentinels: map[endpoint.Endpoint]bool{},
	}
}

func (mon *monitor) set(key, value string) error {
	n, err := strconv.Atoi(value)
	numeric := func(min int, dst *int) error {
		if err != nil || n < min {
			return fmt.Errorf("ERR Invalid argument '%s' for SENTINEL SET '%s'", value, key)
		}
		*dst = n
		return nil
	}
	switch key {
	case "quorum":
		return numeric(1, &mon.quorum)
	case "down-after-milliseconds":
		return numeric(1, &mon.downAfter)
	case "failover-timeout":
		return numeric(1, &mon.failoverTimeout)
	case "parallel-syncs":
		return numeric(1, &mon.parallelSyncs)
	case "auth-pass":
		mon.authPass = value
		return nil
	case "auth-user":
		mon.authUser = value
		return nil
	}
	return fmt.Errorf("ERR Invalid argument '%s' for SENTINEL SET", key)
}

// Admin implements redisadmin.Dialer; the simulated servers keep no
// connections, so owner and Forget change nothing.
func (w *World) Admin(_ string, creds redisadmin.Credentials) redisadmin.Admin {
	return &admin{w: w, creds: creds}
}

// Forget implements redisadmin.Dialer.
func (w *World) Forget(string) {}

type admin struct {
	w     *World
	creds redisadmin.Credentials
}

var _ redisadmin.Admin = (*admin)(nil)

// errRefused is what a client gets from an address where nothing listens.
func errRefused(e endpoint.Endpoint) error {
	return fmt.Errorf("dial tcp %s: connect: connection refused", e)
}

var errWrongPass = errors.New("WRONGPASS invalid username-password pair or user is disabled.")

// redisAt is the running redis-server at e, logged in to with creds.
func (w *World) redisAt(e endpoint.Endpoint, creds redisadmin.Credentials) (*member, error) {
	m := w.byHost[e.Host]
	if m == nil || m.redis == nil || m.redis.port != e.Port {
		return nil, errRefused(e)
	}
	if !m.redis.users.accepts(creds.Username, creds.Password) {
		return nil, errWrongPass
	}
	return m, nil
}

// sentinelAt is the running sentinel at e, logged in to with creds.
func (w *World) sentinelAt(e endpoint.Endpoint, creds redisadmin.Credentials) (*member, error) {
	m := w.byHost[e.Host]
	if m == nil || m.sentinel == nil || m.sentinel.port != e.Port || m.sentinelUnreachable {
		return nil, errRefused(e)
	}
	if !m.sentinel.users.accepts(creds.Username, creds.Password) {
		return nil, errWrongPass
	}
	return m, nil
}

func (m *member) redisEndpoint() endpoint.Endpoint {
	return endpoint.Endpoint{Host: m.host, Port: m.redis.port}
}

// masterOf is the running redis-server a replica replicates from, if it
// accepts the replica's masteruser/masterauth.
func (w *World) masterOf(m *member) *member {
	target := m.redis.replicaOf
	mm := w.byHost[target.Host]
	if mm == nil || mm.redis == nil || mm.redis.port != target.Port {
		return nil
	}
	if !mm.redis.users.accepts(m.redis.masteruser, m.redis.masterauth) {
		return nil
	}
	return mm
}

func (w *World) replication(m *member) redisadmin.Replication {
	r := m.redis
	out := redisadmin.Replication{UsedMemory: 1 << 20, Maxmemory: r.maxmemory}
	if r.replicaOf.IsZero() {
		out.Role = "master"
		out.Offset = r.offset
		self := m.redisEndpoint()
		for _, o := range w.members {
			if o.redis != nil && o.redis.replicaOf == self && w.masterOf(o) == m {
				out.ConnectedReplicas++
			}
		}
		return out
	}
	out.Role = "slave"
	out.Master = r.replicaOf
	out.Priority = r.priority()
	if mm := w.masterOf(m); mm != nil && m.engine.CanReplicateFrom(mm.engine) {
		out.LinkUp = true
		r.offset = mm.redis.offset
	}
	out.Offset = r.offset
	return out
}

func (a *admin) Replication(_ context.Context, server endpoint.Endpoint) (redisadmin.Replication, error) {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.redisAt(server, a.creds)
	if err != nil {
		return redisadmin.Replication{}, fmt.Errorf("INFO on %s: %w", server, err)
	}
	return a.w.replication(m), nil
}

func (a *admin) ReplicaOf(_ context.Context, server, master endpoint.Endpoint) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.redisAt(server, a.creds)
	if err != nil {
		return fmt.Errorf("REPLICAOF on %s: %w", server, err)
	}
	if master == m.redisEndpoint() {
		return fmt.Errorf("REPLICAOF on %s: ERR Can't replicate to myself", server)
	}
	if master.IsZero() && !m.redis.replicaOf.IsZero() {
		m.redis.offset = max(m.redis.offset, initialOffset)
	}
	m.redis.replicaOf = master
	m.configRewrite()
	return nil
}

func (a *admin) ConfigSet(_ context.Context, server endpoint.Endpoint, settings map[string]string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.redisAt(server, a.creds)
	if err != nil {
		return fmt.Errorf("CONFIG SET on %s: %w", server, err)
	}
	maps.Copy(m.redis.config, settings)
	if settings["tls-cert-file"] != "" || settings["tls-key-file"] != "" || settings["tls-ca-cert-file"] != "" {
		m.redis.tls = a.w.loadTLS(m.instance, m.redis.config["tls-cert-file"], m.redis.config["tls-ca-cert-file"])
		m.tlsReloads++
	}
	if v, ok := settings["maxmemory"]; ok {
		m.redis.maxmemory = memoryBytes(v)
	}
	if v, ok := settings["masteruser"]; ok {
		m.redis.masteruser = v
	}
	if v, ok := settings["masterauth"]; ok {
		m.redis.masterauth = v
	}
	m.configRewrite()
	return nil
}

func (a *admin) SetUser(_ context.Context, server endpoint.Endpoint, u acl.User) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.redisAt(server, a.creds)
	if err != nil {
		return fmt.Errorf("ACL SETUSER %s on %s: %w", u.Name, server, err)
	}
	args := u.SetUserArgs()
	if err := m.redis.users.setUser(args[0], args[1:], a.w.refusedOn(m)); err != nil {
		return fmt.Errorf("ACL SETUSER %s on %s: %w", u.Name, server, err)
	}
	m.configRewrite()
	return nil
}

func (a *admin) PauseWrites(_ context.Context, server endpoint.Endpoint, d time.Duration) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.redisAt(server, a.creds)
	if err != nil {
		return fmt.Errorf("CLIENT PAUSE on %s: %w", server, err)
	}
	m.redis.pausedUntil = time.Now().Add(d)
	return nil
}

func (a *admin) ResumeWrites(_ context.Context, server endpoint.Endpoint) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.redisAt(server, a.creds)
	if err != nil {
		return fmt.Errorf("CLIENT UNPAUSE on %s: %w", server, err)
	}
	m.redis.pausedUntil = time.Time{}
	return nil
}

// monitorOf is the sentinel at e and its master called name.
func (w *World) monitorOf(command string, e endpoint.Endpoint, creds redisadmin.Credentials, name string) (*member, *monitor, error) {
	m, err := w.sentinelAt(e, creds)
	if err != nil {
		return nil, nil, fmt.Errorf("SENTINEL %s on %s: %w", command, e, err)
	}
	mon := m.sentinel.masters[name]
	if mon == nil {
		return nil, nil, fmt.Errorf("SENTINEL %s on %s: %w", command, e, redisadmin.ErrNoSuchMaster)
	}
	return m, mon, nil
}

// masterUp: the sentinel reaches its master (running, auth-user/auth-pass
// accepted).
func (w *World) masterUp(mon *monitor) bool {
	mm := w.byHost[mon.addr.Host]
	return mm != nil && mm.redis != nil && mm.redis.port == mon.addr.Port && mm.redis.users.accepts(mon.authUser, mon.authPass)
}

// discover adds the replicas and sentinels a sentinel learns about through
// its master (INFO and hello messages), which needs the master to answer.
func (w *World) discover(self *member, name string, mon *monitor) {
	if !w.masterUp(mon) {
		return
	}
	for _, o := range w.members {
		if o.redis != nil && o.redis.replicaOf == mon.addr && w.masterOf(o) != nil {
			mon.replicas[o.redisEndpoint()] = true
		}
		if o != self && o.sentinel != nil {
			if om := o.sentinel.masters[name]; om != nil && om.addr == mon.addr {
				mon.sentinels[endpoint.Endpoint{Host: o.host, Port: o.sentinel.port}] = true
			}
		}
	}
}

func (a *admin) SentinelMaster(_ context.Context, sentinel endpoint.Endpoint, name string) (redisadmin.MasterState, error) {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, mon, err := a.w.monitorOf("MASTER", sentinel, a.creds, name)
	if err != nil {
		return redisadmin.MasterState{}, err
	}
	return a.w.masterState(m, name, mon), nil
}

func (a *admin) SentinelMasters(_ context.Context, sentinel endpoint.Endpoint) (map[string]redisadmin.MasterState, error) {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.sentinelAt(sentinel, a.creds)
	if err != nil {
		return nil, fmt.Errorf("SENTINEL MASTERS on %s: %w", sentinel, err)
	}
	masters := map[string]redisadmin.MasterState{}
	for name, mon := range m.sentinel.masters {
		masters[name] = a.w.masterState(m, name, mon)
	}
	return masters, nil
}

// masterState is a sentinel's answer about its master called name. Called
// with w.mu held.
func (w *World) masterState(m *member, name string, mon *monitor) redisadmin.MasterState {
	w.discover(m, name, mon)
	flags := []string{"master"}
	if !w.masterUp(mon) {
		flags = []string{"s_down", "master"}
	}
	return redisadmin.MasterState{
		Address:           mon.addr,
		Flags:             flags,
		Quorum:            mon.quorum,
		DownAfterMs:       mon.downAfter,
		FailoverTimeoutMs: mon.failoverTimeout,
		ParallelSyncs:     mon.parallelSyncs,
		NumReplicas:       len(mon.replicas),
		NumOtherSentinels: len(mon.sentinels),
		ConfigEpoch:       mon.epoch,
	}
}

// usablePeer: self reaches the peer sentinel at e (running, monitoring
// name, self's sentinel-user/sentinel-pass accepted).
func (w *World) usablePeer(self *sentinelProc, e endpoint.Endpoint, name string) bool {
	o := w.byHost[e.Host]
	return o != nil && o.sentinel != nil && o.sentinel.port == e.Port && o.sentinel.masters[name] != nil &&
		o.sentinel.users.accepts(self.config["sentinel-user"], self.config["sentinel-pass"])
}

func (a *admin) SentinelCKQuorum(_ context.Context, sentinel endpoint.Endpoint, name string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, mon, err := a.w.monitorOf("CKQUORUM", sentinel, a.creds, name)
	if err != nil {
		return err
	}
	a.w.discover(m, name, mon)
	usable, voters := 1, 1+len(mon.sentinels)
	for e := range mon.sentinels {
		if a.w.usablePeer(m.sentinel, e, name) {
			usable++
		}
	}
	switch {
	case usable < mon.quorum:
		return fmt.Errorf("SENTINEL CKQUORUM on %s: NOQUORUM %d usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master", sentinel, usable)
	case usable < voters/2+1:
		return fmt.Errorf("SENTINEL CKQUORUM on %s: NOQUORUM %d usable Sentinels. Not enough available Sentinels to reach the majority and authorize a failover", sentinel, usable)
	}
	return nil
}

func (a *admin) SentinelMonitor(_ context.Context, sentinel endpoint.Endpoint, name string, master endpoint.Endpoint, quorum int) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.sentinelAt(sentinel, a.creds)
	if err != nil {
		return fmt.Errorf("SENTINEL MONITOR on %s: %w", sentinel, err)
	}
	switch {
	case m.sentinel.masters[name] != nil:
		return fmt.Errorf("SENTINEL MONITOR on %s: ERR Duplicate master name.", sentinel)
	case quorum <= 0:
		return fmt.Errorf("SENTINEL MONITOR on %s: ERR Quorum must be 1 or greater.", sentinel)
	case master.IsZero() || master.Port <= 0:
		return fmt.Errorf("SENTINEL MONITOR on %s: ERR Invalid IP address or hostname specified", sentinel)
	}
	m.sentinel.masters[name] = newMonitor(master, quorum)
	return nil
}

func (a *admin) SentinelRemove(_ context.Context, sentinel endpoint.Endpoint, name string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, _, err := a.w.monitorOf("REMOVE", sentinel, a.creds, name)
	if err != nil {
		return err
	}
	delete(m.sentinel.masters, name)
	return nil
}

func (a *admin) SentinelSet(_ context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	_, mon, err := a.w.monitorOf("SET", sentinel, a.creds, name)
	if err != nil {
		return err
	}
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if err := mon.set(key, settings[key]); err != nil {
			return fmt.Errorf("SENTINEL SET %s on %s: %w", key, sentinel, err)
		}
	}
	return nil
}

func (a *admin) SentinelSetUser(_ context.Context, sentinel endpoint.Endpoint, u acl.User) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.sentinelAt(sentinel, a.creds)
	if err != nil {
		return fmt.Errorf("ACL SETUSER %s on sentinel %s: %w", u.Name, sentinel, err)
	}
	args := u.SetUserArgs()
	if err := m.sentinel.users.setUser(args[0], args[1:], a.w.refusedOn(m)); err != nil {
		return fmt.Errorf("ACL SETUSER %s on sentinel %s: %w", u.Name, sentinel, err)
	}
	return nil
}

// sentinelConfigKeys are what Sentinel 7.0's SENTINEL CONFIG SET takes.
var sentinelConfigKeys = map[string]bool{
	"resolve-hostnames": true, "announce-hostnames": true, "announce-ip": true, "announce-port": true,
	"sentinel-user": true, "sentinel-pass": true,
}

func (a *admin) SentinelConfigSet(_ context.Context, sentinel endpoint.Endpoint, settings map[string]string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	m, err := a.w.sentinelAt(sentinel, a.creds)
	if err != nil {
		return fmt.Errorf("SENTINEL CONFIG SET on %s: %w", sentinel, err)
	}
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if !sentinelConfigKeys[key] {
			return fmt.Errorf("SENTINEL CONFIG SET %s on %s: ERR Invalid argument '%s' to SENTINEL CONFIG SET", key, sentinel, key)
		}
		m.sentinel.config[key] = settings[key]
	}
	return nil
}

func (a *admin) SentinelReset(_ context.Context, sentinel endpoint.Endpoint, name string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	_, mon, err := a.w.monitorOf("RESET", sentinel, a.creds, name)
	if err != nil {
		return err
	}
	mon.replicas, mon.sentinels = map[endpoint.Endpoint]bool{}, map[endpoint.Endpoint]bool{}
	return nil
}

// SentinelFailover promotes the replica of the sentinel's master with the
// lowest non-zero replica-priority (the first by instance name among
// equals: offsets are equal here) among those linked to it or, when the
// master's redis-server is gone, among all its replicas (Sentinel accepts
// a replica whose link went down recently); it re-points the other
// replicas and the old master at it, and moves every sentinel monitoring
// the old address to the new one with a new config epoch, at once.
func (a *admin) SentinelFailover(_ context.Context, sentinel endpoint.Endpoint, name string) error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	w := a.w
	_, mon, err := w.monitorOf("FAILOVER", sentinel, a.creds, name)
	if err != nil {
		return err
	}
	old := mon.addr
	masterGone := w.byHost[old.Host] == nil || w.byHost[old.Host].redis == nil
	var promoted *member
	for _, instance := range slices.Sorted(maps.Keys(w.members)) {
		o := w.members[instance]
		if o.redis != nil && o.redis.replicaOf == old && (masterGone || w.masterOf(o) != nil) && o.redis.priority() > 0 &&
			(promoted == nil || o.redis.priority() < promoted.redis.priority()) {
			promoted = o
		}
	}
	if promoted == nil {
		return fmt.Errorf("SENTINEL FAILOVER on %s: NOGOODSLAVE No suitable replica to promote", sentinel)
	}
	w.failover(name, old, promoted)
	return nil
}

// SentinelReplicas lists the linked replicas of the sentinel's master with
// their replica-priority. Unlike a real sentinel, which reads them from
// INFO every 10 s, it sees a priority change at once.
func (a *admin) SentinelReplicas(_ context.Context, sentinel endpoint.Endpoint, name string) ([]redisadmin.ReplicaState, error) {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	w := a.w
	_, mon, err := w.monitorOf("REPLICAS", sentinel, a.creds, name)
	if err != nil {
		return nil, err
	}
	var out []redisadmin.ReplicaState
	for _, instance := range slices.Sorted(maps.Keys(w.members)) {
		o := w.members[instance]
		if o.redis != nil && o.redis.replicaOf == mon.addr && w.masterOf(o) != nil {
			out = append(out, redisadmin.ReplicaState{Address: o.redisEndpoint(), Priority: o.redis.priority(), Flags: []string{"slave"}})
		}
	}
	return out, nil
}

// Failover is a failover Sentinel carried out by itself (no operator asked
// for it) that selected instance: its redis-server must run as a replica
// of the master the sentinels monitor under name (which may be down: the
// usual reason for a failover). Running sentinels move to the new master;
// stopped ones keep the old one, as a sentinel that missed the failover
// does. It returns the new config epoch.
func (w *World) Failover(name, instance string) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	promoted := w.members[instance]
	if promoted == nil || promoted.redis == nil || promoted.redis.replicaOf.IsZero() {
		return 0, fmt.Errorf("redisfake: %s is not a running replica", instance)
	}
	old := promoted.redis.replicaOf
	for _, o := range w.members {
		if o.sentinel != nil && o.sentinel.masters[name] != nil && o.sentinel.masters[name].addr == old {
			return w.failover(name, old, promoted), nil
		}
	}
	return 0, fmt.Errorf("redisfake: no sentinel monitors %s at %s", name, old)
}

// failover promotes promoted in place of the master at old. Called with
// w.mu held.
func (w *World) failover(name string, old endpoint.Endpoint, promoted *member) int64 {
	newAddr := promoted.redisEndpoint()
	promoted.redis.replicaOf = endpoint.Endpoint{}
	for _, o := range w.members {
		if o.redis != nil && o != promoted && (o.redis.replicaOf == old || o.redisEndpoint() == old) {
			o.redis.replicaOf = newAddr
		}
	}
	var epoch int64
	for _, o := range w.members {
		if o.sentinel != nil {
			if om := o.sentinel.masters[name]; om != nil && om.addr == old {
				epoch = max(epoch, om.epoch, o.sentinel.currentEpoch)
			}
		}
	}
	epoch++
	for _, o := range w.members {
		if o.sentinel == nil {
			continue
		}
		if om := o.sentinel.masters[name]; om != nil && om.addr == old {
			om.addr, om.epoch = newAddr, epoch
			o.sentinel.currentEpoch = epoch
			om.replicas, om.sentinels = map[endpoint.Endpoint]bool{}, map[endpoint.Endpoint]bool{}
		}
	}
	return epoch
}

// loadTLS reads a process's TLS files (a path unset or missing: nil).
// Called with w.mu held.
func (w *World) loadTLS(instance, certFile, caFile string) TLSFiles {
	var t TLSFiles
	if certFile != "" {
		t.Cert, _ = w.files(instance, certFile)
	}
	if caFile != "" {
		t.CA, _ = w.files(instance, caFile)
	}
	return t
}

// TLS is what instance's running processes loaded as TLS material, and how
// often they were made to load it again.
func (w *World) TLS(instance string) TLSState {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.members[instance]
	if m == nil {
		return TLSState{}
	}
	st := TLSState{Reloads: m.tlsReloads, SentinelRestarts: m.sentinelRestarts}
	if m.redis != nil {
		st.Redis = m.redis.tls
	}
	if m.sentinel != nil {
		st.Sentinel = m.sentinel.tls
	}
	return st
}

// SetSentinelUnreachable makes instance's sentinel refuse the operator's
// connections while it keeps running (a hung process, a firewall), or
// answer again.
func (w *World) SetSentinelUnreachable(instance string, unreachable bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.member(instance).sentinelUnreachable = unreachable
}
