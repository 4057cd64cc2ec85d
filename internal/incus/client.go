package incus

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	pathpkg "path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"
)

const (
	// requestTimeout bounds every plain HTTP request as a backstop; callers'
	// contexts bound how long they wait.
	requestTimeout = 2 * time.Minute
	// rereadTimeout bounds the state re-read done after an operation wait
	// failed (the caller's context may already be expired then).
	rereadTimeout = 10 * time.Second
	// addressTimeout bounds the connection to one address of a remote, so
	// that an unanswering cluster member hands over to the next address.
	addressTimeout = 5 * time.Second
	// stopTimeout is the clean-shutdown grace period of a non-forced stop.
	stopTimeout = 30 * time.Second
	// deviceUpdateAttempts bounds the re-read/modify/PUT loop on ETag
	// mismatches (412).
	deviceUpdateAttempts = 3

	userAgent = "redis-sentinel-operator"
)

// errOpGone means the operation vanished while being waited (Incus forgets
// finished operations after a few seconds): the caller must re-read state.
var errOpGone = errors.New("incus: operation no longer known to the server")

type server struct {
	c incusclient.InstanceServer

	// createPosts counts create requests actually sent (for tests).
	createPosts atomic.Int64

	// creating holds the names with a CreateInstance call in progress in
	// this process, including create requests abandoned because the caller's
	// context expired but still in flight: a create for such a name is not
	// sent again.
	creating sync.Map
}

var _ Server = (*server)(nil)

// Connect opens a connection to Incus: the local unix socket when
// opts.Remote is nil, otherwise HTTPS with the client certificate and the
// pinned server certificate: the server must present exactly that
// certificate (ErrServerCertMismatch otherwise) and report the client as
// trusted (ErrNotTrusted otherwise); a malformed remote is ErrInvalidRemote.
// ctx bounds the connection attempt only; the returned Server can be used
// for as long as needed.
func Connect(ctx context.Context, opts Options) (Server, error) {
	c, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}

	return &server{c: c}, nil
}

func connect(ctx context.Context, opts Options) (incusclient.InstanceServer, error) {
	if opts.Remote == nil {
		return connectURL(ctx, opts, "")
	}

	// The addresses of one server (an Incus cluster's members) in order:
	// the first that answers and trusts us is used. Every failure is kept,
	// so that a refusal (untrusted, wrong pin) is reported even when
	// another address merely did not answer.
	var errs []error

	for _, u := range opts.Remote.URLs() {
		// A cluster member that is down may not even refuse the
		// connection: give up on it in time to try the next address.
		uctx, cancel := context.WithTimeout(ctx, addressTimeout)
		c, err := connectURL(uctx, opts, u)
		cancel()
		if err == nil {
			return c, nil
		}

		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}

	return nil, errors.Join(errs...)
}

// connectURL connects to the unix socket (rawURL "") or to one HTTPS
// address of opts.Remote.
func connectURL(ctx context.Context, opts Options, rawURL string) (incusclient.InstanceServer, error) {
	// The client keeps the context given at connect time for every later
	// request, so it must not be cancelled with this call's ctx; ctx bounds
	// the connect and the handshake GetServer below.
	base := context.WithoutCancel(ctx)
	args := &incusclient.ConnectionArgs{
		UserAgent:     userAgent,
		HTTPClient:    &http.Client{Timeout: requestTimeout},
		SkipGetServer: true,
	}

	var (
		c   incusclient.InstanceServer
		err error
	)

	where := rawURL
	if opts.Remote == nil {
		where = opts.SocketPath
		if where == "" {
			where = DefaultSocketPath
		}

		c, err = do(ctx, func() (incusclient.InstanceServer, error) {
			return incusclient.ConnectIncusUnixWithContext(base, where, args)
		})
		if err != nil {
			return nil, fmt.Errorf("incus: connecting to unix socket %s: %w", where, err)
		}
	} else {
		r := opts.Remote

		u, perr := url.Parse(rawURL)
		if perr != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("%w: URL %q must be https://host[:port]", ErrInvalidRemote, rawURL)
		}

		if len(r.ClientCert) == 0 || len(r.ClientKey) == 0 || len(r.ServerCert) == 0 {
			return nil, fmt.Errorf("%w: %s needs a client certificate, a client key and the server certificate", ErrInvalidRemote, rawURL)
		}

		if _, kerr := tls.X509KeyPair(r.ClientCert, r.ClientKey); kerr != nil {
			return nil, fmt.Errorf("%w: client certificate and key for %s: %v", ErrInvalidRemote, rawURL, kerr)
		}

		pinned, perr := parsePinnedCert(r.ServerCert)
		if perr != nil {
			return nil, fmt.Errorf("%w: pinned server certificate for %s: %v", ErrInvalidRemote, rawURL, perr)
		}

		args.TLSClientCert = string(r.ClientCert)
		args.TLSClientKey = string(r.ClientKey)
		args.TLSServerCert = string(r.ServerCert)
		args.IdenticalCertificate = true
		args.TransportWrapper = pinTo(pinned)

		c, err = do(ctx, func() (incusclient.InstanceServer, error) {
			return incusclient.ConnectIncusWithContext(base, rawURL, args)
		})
		if err != nil {
			return nil, fmt.Errorf("incus: connecting to %s: %w", rawURL, err)
		}
	}

	// Seeds the client's extension list and tells us whether we are trusted.
	srv, err := do(ctx, func() (*api.Server, error) {
		s, _, err := c.GetServer()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("incus: %s: %w", where, err)
	}

	if srv.Auth != "trusted" {
		return nil, fmt.Errorf("%w (%s reports auth %q)", ErrNotTrusted, where, srv.Auth)
	}

	if opts.Project != "" {
		c = c.UseProject(opts.Project)

		_, err = do(ctx, func() (*api.Project, error) {
			p, _, err := c.GetProject(opts.Project)
			return p, err
		})
		if err != nil {
			return nil, fmt.Errorf("incus: %s: project %q: %w", where, opts.Project, notFound(err))
		}
	}

	return c, nil
}

// do runs fn unless ctx is already done, and returns its result, or
// ctx.Err() as soon as ctx is done. The client's calls do not take a
// context; an abandoned call finishes in the background (bounded by
// requestTimeout).
func do[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}

	return run(ctx, fn)
}

// run is do, except that fn always runs (to completion, in the background
// if ctx ends first).
func run[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var zero T

	type result struct {
		v   T
		err error
	}

	ch := make(chan result, 1)

	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()

	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func do0(ctx context.Context, fn func() error) error {
	_, err := do(ctx, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

func isNotFound(err error) bool {
	return api.StatusErrorCheck(err, http.StatusNotFound)
}

// notFound wraps ErrNotFound around a 404 from Incus.
func notFound(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}

	return err
}

func rereadContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), rereadTimeout)
}

// wait waits for op with ctx and classifies the outcome:
//   - nil: the operation succeeded (op.Get() holds its final state);
//   - errOpGone: it vanished from the server; re-read state;
//   - ErrOperationPending (wrapped): still running, or its outcome could not
//     be determined;
//   - anything else: the operation failed.
//
// When the wait itself fails, the operation is re-read from the server
// before deciding.
func (s *server) wait(ctx context.Context, op incusclient.Operation) (api.Operation, error) {
	// Read before waiting: once a wait is abandoned, the client's event
	// handler may still update op concurrently.
	id := op.Get().ID

	werr := op.WaitContext(ctx)
	if werr == nil {
		return op.Get(), nil
	}

	if isNotFound(werr) {
		return api.Operation{}, errOpGone
	}

	rctx, cancel := rereadContext(ctx)
	defer cancel()

	cur, err := do(rctx, func() (*api.Operation, error) {
		o, _, err := s.c.GetOperation(id)
		return o, err
	})

	switch {
	case err == nil && cur.StatusCode == api.Success:
		return *cur, nil
	case err == nil && cur.StatusCode.IsFinal():
		msg := cur.Err
		if msg == "" {
			msg = cur.Status
		}

		return *cur, fmt.Errorf("operation %s (%s) %s: %s", id, cur.Description, strings.ToLower(cur.Status), msg)
	case err == nil:
		return *cur, fmt.Errorf("%w: operation %s (%s) is %s: %w", ErrOperationPending, id, cur.Description, cur.Status, werr)
	case isNotFound(err):
		return api.Operation{}, errOpGone
	default:
		return api.Operation{}, fmt.Errorf("%w: operation %s: wait: %w; re-read: %w", ErrOperationPending, id, werr, err)
	}
}

// asPending makes a wait error that did not resolve the outcome an
// ErrOperationPending.
func asPending(werr error) error {
	if errors.Is(werr, ErrOperationPending) {
		return werr
	}

	return fmt.Errorf("%w: %w", ErrOperationPending, werr)
}

// reread fetches the instance after a failed wait; ctx may be expired.
func (s *server) reread(ctx context.Context, name string) (*Instance, error) {
	rctx, cancel := rereadContext(ctx)
	defer cancel()

	return s.GetInstance(rctx, name)
}

func describe(inst *Instance, err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return "instance does not exist (yet)"
	case err != nil:
		return "re-read failed: " + err.Error()
	default:
		return "instance is " + inst.Status
	}
}

// UnreadableInstances implements Server. Incus 6.0 lists an instance on an
// offline cluster member with its name, location and status Error only;
// it has no state to read.
func (s *server) UnreadableInstances(ctx context.Context) ([]Instance, error) {
	all, err := do(ctx, func() ([]api.Instance, error) {
		return s.c.GetInstances(api.InstanceTypeAny)
	})
	if err != nil {
		return nil, fmt.Errorf("incus: list instances: %w", err)
	}

	var out []Instance

	for i := range all {
		if all[i].Config == nil {
			out = append(out, fromAPI(&all[i]))
		}
	}

	return out, nil
}

// GetInstance implements Server.
func (s *server) GetInstance(ctx context.Context, name string) (*Instance, error) {
	got, err := do(ctx, func() (*api.Instance, error) {
		inst, _, err := s.c.GetInstance(name)
		return inst, err
	})
	if err != nil {
		return nil, fmt.Errorf("incus: get instance %q: %w", name, notFound(err))
	}

	inst, err := s.withState(ctx, got)
	if err != nil {
		return nil, err
	}

	return &inst, nil
}

// ListInstances implements Server. The server-side filter is not used: it
// matches config keys by dotted prefix (user.rsf.x also matches
// user.rsf.xyz) and can thus drop instances; the match is done here, on the
// instance's own config. The list is read without state (Incus renders the
// state of every instance it lists at recursion 2, a few milliseconds of
// its CPU each, which made every pass of every formation cost as much as
// all the instances on the server); the matches' states are read one by one.
func (s *server) ListInstances(ctx context.Context, configKey, value string) ([]Instance, error) {
	all, err := do(ctx, func() ([]api.Instance, error) {
		return s.c.GetInstances(api.InstanceTypeAny)
	})
	if err != nil {
		return nil, fmt.Errorf("incus: list instances: %w", err)
	}

	var matches []*api.Instance

	for i := range all {
		if v, ok := all[i].Config[configKey]; ok && v == value {
			matches = append(matches, &all[i])
		}
	}

	out := make([]Instance, len(matches))
	errs := make([]error, len(matches))

	var wg sync.WaitGroup

	for i, m := range matches {
		wg.Add(1)

		go func() {
			defer wg.Done()

			out[i], errs[i] = s.withState(ctx, m)
		}()
	}

	wg.Wait()

	kept := out[:0]

	for i := range out {
		switch {
		case errors.Is(errs[i], ErrNotFound):
			// Deleted between the list and its state: not listed.
		case errs[i] != nil:
			return nil, fmt.Errorf("incus: list instances: %w", errs[i])
		default:
			kept = append(kept, out[i])
		}
	}

	slices.SortFunc(kept, func(a, b Instance) int { return strings.Compare(a.Name, b.Name) })

	return kept, nil
}

// withState is inst with, when it runs, its live status and eth0 address
// from its state.
func (s *server) withState(ctx context.Context, inst *api.Instance) (Instance, error) {
	out := fromAPI(inst)
	if inst.Status != "Running" {
		return out, nil
	}

	state, err := do(ctx, func() (*api.InstanceState, error) {
		st, _, err := s.c.GetInstanceState(inst.Name)
		return st, err
	})
	if err != nil {
		return Instance{}, fmt.Errorf("incus: state of instance %q: %w", inst.Name, notFound(err))
	}

	if state.Status != "" {
		out.Status = state.Status
	}

	for _, a := range state.Network["eth0"].Addresses {
		if a.Family == "inet" && a.Scope == "global" {
			out.IPv4 = a.Address
			break
		}
	}

	return out, nil
}

// CreateInstance implements Server.
func (s *server) CreateInstance(ctx context.Context, spec InstanceSpec) error {
	if spec.Name == "" || spec.Image == "" {
		return errors.New("incus: create instance: name and image are required")
	}

	if _, busy := s.creating.LoadOrStore(spec.Name, struct{}{}); busy {
		return fmt.Errorf("%w: instance %q: another create request is in flight", ErrOperationPending, spec.Name)
	}

	// Released on return, or (once the request is sent) when the request
	// returns, which may be after this call gave up on it.
	release := true
	defer func() {
		if release {
			s.creating.Delete(spec.Name)
		}
	}()

	_, err := s.GetInstance(ctx, spec.Name)
	switch {
	case err == nil:
		return fmt.Errorf("%w: instance %q", ErrAlreadyExists, spec.Name)
	case !errors.Is(err, ErrNotFound):
		return err
	}

	// A previous create whose wait timed out may still be running (e.g.
	// unpacking the image); the instance does not show up until then.
	pending, err := s.pendingInstanceOp(ctx, spec.Name)
	if err != nil {
		return fmt.Errorf("incus: create instance %q: listing operations: %w", spec.Name, err)
	}

	if pending != nil {
		return fmt.Errorf("%w: instance %q: operation %s (%s) is %s", ErrOperationPending, spec.Name, pending.ID, pending.Description, pending.Status)
	}

	req := api.InstancesPost{
		Name:   spec.Name,
		Type:   api.InstanceTypeContainer,
		Source: api.InstanceSource{Type: "image", Alias: spec.Image},
		Start:  true,
		InstancePut: api.InstancePut{
			Profiles: spec.Profiles,
			Config:   maps.Clone(spec.Config),
			Devices:  CloneDevices(spec.Devices),
		},
	}

	c := s.c
	if spec.Target != "" {
		c = c.UseTarget(spec.Target)
	}

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("incus: create instance %q: %w", spec.Name, err)
	}

	s.createPosts.Add(1)

	release = false
	op, err := run(ctx, func() (incusclient.Operation, error) {
		defer s.creating.Delete(spec.Name)
		return c.CreateInstance(req)
	})
	if err != nil {
		if ctx.Err() != nil {
			// The request may or may not have reached the server.
			return fmt.Errorf("%w: create instance %q: request abandoned: %w", ErrOperationPending, spec.Name, err)
		}

		// Incus reports a taken name as a plain error; re-read to tell.
		inst, rerr := s.reread(ctx, spec.Name)
		if rerr == nil {
			return fmt.Errorf("%w: instance %q (%s): %w", ErrAlreadyExists, spec.Name, inst.Status, err)
		}

		return fmt.Errorf("incus: create instance %q: %w", spec.Name, err)
	}

	if _, werr := s.wait(ctx, op); werr != nil {
		inst, rerr := s.reread(ctx, spec.Name)

		switch {
		case errors.Is(werr, errOpGone) && rerr == nil:
			// Finished and forgotten; the instance is there.
		case errors.Is(werr, ErrOperationPending), errors.Is(werr, errOpGone):
			return fmt.Errorf("incus: create instance %q: %w; %s", spec.Name, asPending(werr), describe(inst, rerr))
		default:
			return fmt.Errorf("incus: create instance %q: %w; %s", spec.Name, werr, describe(inst, rerr))
		}
	}

	return nil
}

// checkNoPendingOp returns ErrOperationPending if a task operation on the
// instance is still running, e.g. a create whose wait was cut short: the
// instance is then visible as "Stopped" until the create has started it,
// and a start, stop or delete would race with it.
func (s *server) checkNoPendingOp(ctx context.Context, name, action string) error {
	op, err := s.pendingInstanceOp(ctx, name)
	if err != nil {
		return fmt.Errorf("incus: %s instance %q: listing operations: %w", action, name, err)
	}

	if op != nil {
		return fmt.Errorf("%w: %s instance %q: operation %s (%s) is %s", ErrOperationPending, action, name, op.ID, op.Description, op.Status)
	}

	return nil
}

// pendingInstanceOp returns a running task operation on the instance, if any.
func (s *server) pendingInstanceOp(ctx context.Context, name string) (*api.Operation, error) {
	ops, err := do(ctx, s.c.GetOperations)
	if err != nil {
		return nil, err
	}

	want := api.NewURL().Path("1.0", "instances", name).URL.Path

	for i := range ops {
		op := &ops[i]
		if op.Class != api.OperationClassTask || op.StatusCode.IsFinal() {
			continue
		}

		for _, res := range op.Resources["instances"] {
			u, err := url.Parse(res)
			if err == nil && (u.Path == want || u.EscapedPath() == want) {
				return op, nil
			}
		}
	}

	return nil, nil
}

// StartInstance implements Server.
func (s *server) StartInstance(ctx context.Context, name string) error {
	return s.changeState(ctx, name, api.InstanceStatePut{Action: "start"}, api.Running.String())
}

// StopInstance implements Server.
func (s *server) StopInstance(ctx context.Context, name string, force bool) error {
	req := api.InstanceStatePut{Action: "stop", Force: force}
	if !force {
		req.Timeout = int(stopTimeout / time.Second)
	}

	return s.changeState(ctx, name, req, api.Stopped.String())
}

// changeState runs a state action. Reaching the wanted status is success
// even if Incus rejected the action (already running / already stopped).
func (s *server) changeState(ctx context.Context, name string, req api.InstanceStatePut, want string) error {
	if err := s.checkNoPendingOp(ctx, name, req.Action); err != nil {
		return err
	}

	op, err := do(ctx, func() (incusclient.Operation, error) {
		return s.c.UpdateInstanceState(name, req, "")
	})
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("incus: %s instance %q: %w", req.Action, name, notFound(err))
		}

		inst, rerr := s.reread(ctx, name)
		if rerr == nil && inst.Status == want {
			return nil
		}

		if ctx.Err() != nil {
			return fmt.Errorf("%w: %s instance %q: request abandoned: %w; %s", ErrOperationPending, req.Action, name, err, describe(inst, rerr))
		}

		return fmt.Errorf("incus: %s instance %q: %w", req.Action, name, err)
	}

	_, werr := s.wait(ctx, op)
	if werr == nil {
		return nil
	}

	inst, rerr := s.reread(ctx, name)
	if rerr == nil && inst.Status == want {
		return nil
	}

	if errors.Is(werr, ErrOperationPending) || errors.Is(werr, errOpGone) {
		return fmt.Errorf("incus: %s instance %q: %w; %s", req.Action, name, asPending(werr), describe(inst, rerr))
	}

	return fmt.Errorf("incus: %s instance %q: %w; %s", req.Action, name, werr, describe(inst, rerr))
}

// DeleteInstance implements Server.
func (s *server) DeleteInstance(ctx context.Context, name string) error {
	inst, err := s.GetInstance(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}

	if err != nil {
		return err
	}

	if err := s.checkNoPendingOp(ctx, name, "delete"); err != nil {
		return err
	}

	if inst.Status != api.Stopped.String() {
		err = s.StopInstance(ctx, name, true)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}

	op, err := do(ctx, func() (incusclient.Operation, error) {
		return s.c.DeleteInstance(name)
	})
	if isNotFound(err) {
		return nil
	}

	if err != nil {
		if _, rerr := s.reread(ctx, name); errors.Is(rerr, ErrNotFound) {
			return nil
		}

		if ctx.Err() != nil {
			return fmt.Errorf("%w: delete instance %q: request abandoned: %w", ErrOperationPending, name, err)
		}

		return fmt.Errorf("incus: delete instance %q: %w", name, err)
	}

	_, werr := s.wait(ctx, op)
	if werr == nil {
		return nil
	}

	inst, rerr := s.reread(ctx, name)
	if errors.Is(rerr, ErrNotFound) {
		return nil
	}

	if errors.Is(werr, ErrOperationPending) || errors.Is(werr, errOpGone) {
		return fmt.Errorf("incus: delete instance %q: %w; %s", name, asPending(werr), describe(inst, rerr))
	}

	return fmt.Errorf("incus: delete instance %q: %w; %s", name, werr, describe(inst, rerr))
}

// UpdateInstanceDevice implements Server.
func (s *server) UpdateInstanceDevice(ctx context.Context, name, device string, values map[string]string) error {
	for attempt := 1; ; attempt++ {
		err := s.updateDeviceOnce(ctx, name, device, values)
		if attempt < deviceUpdateAttempts && api.StatusErrorCheck(err, http.StatusPreconditionFailed) && ctx.Err() == nil {
			// Someone else changed the instance between our read and PUT:
			// re-read and merge again.
			continue
		}

		return err
	}
}

func (s *server) updateDeviceOnce(ctx context.Context, name, device string, values map[string]string) error {
	type got struct {
		inst *api.Instance
		etag string
	}

	g, err := do(ctx, func() (got, error) {
		inst, etag, err := s.c.GetInstance(name)
		return got{inst, etag}, err
	})
	if err != nil {
		return fmt.Errorf("incus: update device %s of %q: %w", device, name, notFound(err))
	}

	put := g.inst.Writable() // config incl. volatile.* keys is sent back unchanged
	if put.Devices == nil {
		put.Devices = api.DevicesMap{}
	}

	dev, local := put.Devices[device]

	switch {
	case local:
		dev = maps.Clone(dev)
	case g.inst.ExpandedDevices[device] != nil:
		dev = maps.Clone(g.inst.ExpandedDevices[device])
	case values["type"] != "":
		dev = map[string]string{}
	default:
		return fmt.Errorf("incus: update device %s of %q: %w: no such device and no type given", device, name, ErrNotFound)
	}

	changed := !local
	for k, v := range values {
		if old, ok := dev[k]; !ok || old != v {
			dev[k] = v
			changed = true
		}
	}

	if !changed {
		return nil
	}

	put.Devices[device] = dev

	op, err := do(ctx, func() (incusclient.Operation, error) {
		return s.c.UpdateInstance(name, put, g.etag)
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: update device %s of %q: request abandoned: %w", ErrOperationPending, device, name, err)
		}

		return fmt.Errorf("incus: update device %s of %q: %w", device, name, notFound(err))
	}

	_, werr := s.wait(ctx, op)
	if werr == nil {
		return nil
	}

	inst, rerr := s.reread(ctx, name)
	if rerr == nil && hasValues(inst.Devices[device], values) {
		return nil
	}

	if errors.Is(werr, ErrOperationPending) || errors.Is(werr, errOpGone) {
		return fmt.Errorf("incus: update device %s of %q: %w; %s", device, name, asPending(werr), describe(inst, rerr))
	}

	return fmt.Errorf("incus: update device %s of %q: %w", device, name, werr)
}

func hasValues(dev, values map[string]string) bool {
	if dev == nil {
		return false
	}

	for k, v := range values {
		if dev[k] != v {
			return false
		}
	}

	return true
}

// WriteFile implements Server.
//
// Incus' file API (CreateInstanceFile) applies mode and owner only when it
// creates the file and overwrites by truncating in place, so rewriting an
// existing file would keep its old mode/owner and could be read half
// written. Instead the content goes to a new temporary file next to path
// (over the instance's SFTP endpoint, one session), gets its mode and owner,
// and is renamed over path atomically.
func (s *server) WriteFile(ctx context.Context, instance, path string, content []byte, mode os.FileMode, uid, gid int64) error {
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") {
		return fmt.Errorf("incus: write %q in %q: need an absolute file path", path, instance)
	}

	perm := mode.Perm()
	if perm == 0 {
		perm = 0o644
	}

	err := do0(ctx, func() error {
		return s.writeFile(instance, path, content, perm, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("incus: write %s in %q: %w", path, instance, notFound(err))
	}

	return nil
}

func (s *server) writeFile(instance, path string, content []byte, perm os.FileMode, uid, gid int64) (err error) {
	client, err := s.c.GetInstanceFileSFTP(instance)
	if err != nil {
		return err
	}

	defer func() { _ = client.Close() }()

	dir, base := pathpkg.Split(path)
	tmp := dir + "." + base + ".rsf-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	f, err := client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}

	defer func() {
		if err != nil {
			_ = f.Close()
			_ = client.Remove(tmp)
		}
	}()

	if _, err = f.Write(content); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}

	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}

	if uid > 0 || gid > 0 { // a new file is root-owned already
		if err = f.Chown(int(max(uid, 0)), int(max(gid, 0))); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}

	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}

	if err = client.PosixRename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}

	return nil
}

// Exec implements Server.
func (s *server) Exec(ctx context.Context, instance string, command []string) (ExecResult, error) {
	if len(command) == 0 {
		return ExecResult{}, errors.New("incus: exec: empty command")
	}

	var stdout, stderr bytes.Buffer

	dataDone := make(chan bool)
	args := &incusclient.InstanceExecArgs{
		Stdin:    bytes.NewReader(nil),
		Stdout:   &stdout,
		Stderr:   &stderr,
		DataDone: dataDone,
	}
	req := api.InstanceExecPost{
		Command:     command,
		WaitForWS:   true,
		Interactive: false,
	}

	op, err := do(ctx, func() (incusclient.Operation, error) {
		return s.c.ExecInstance(instance, req, args)
	})
	if err != nil {
		return ExecResult{}, fmt.Errorf("incus: exec %q in %q: %w", command[0], instance, notFound(err))
	}

	final, werr := s.wait(ctx, op)
	if werr != nil {
		return ExecResult{}, fmt.Errorf("incus: exec %q in %q: %w", command[0], instance, werr)
	}

	// The operation can finish before the output websockets are drained.
	select {
	case <-dataDone:
	case <-ctx.Done():
		return ExecResult{}, fmt.Errorf("incus: exec %q in %q: waiting for output: %w", command[0], instance, ctx.Err())
	}

	code, ok := final.Metadata["return"].(float64)
	if !ok {
		return ExecResult{}, fmt.Errorf("incus: exec %q in %q: no exit code in operation metadata", command[0], instance)
	}

	return ExecResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: int(code)}, nil
}

// ImageProperties implements Server.
func (s *server) ImageProperties(ctx context.Context, alias string) (map[string]string, bool, error) {
	var props map[string]string
	ok, err := exists(ctx, "image alias", alias, func() error {
		a, _, err := s.c.GetImageAlias(alias)
		if err != nil {
			return err
		}
		img, _, err := s.c.GetImage(a.Target)
		if err != nil {
			return err
		}
		props = maps.Clone(img.Properties)
		return nil
	})
	return props, ok, err
}

// ProfileExists implements Server.
func (s *server) ProfileExists(ctx context.Context, name string) (bool, error) {
	return exists(ctx, "profile", name, func() error {
		_, _, err := s.c.GetProfile(name)
		return err
	})
}

// NetworkExists implements Server.
func (s *server) NetworkExists(ctx context.Context, name string) (bool, error) {
	return exists(ctx, "network", name, func() error {
		_, _, err := s.c.GetNetwork(name)
		return err
	})
}

// NetworkAddressing implements Server.
func (s *server) NetworkAddressing(ctx context.Context, network string) (Addressing, error) {
	var (
		n      *api.Network
		leases []api.NetworkLease
	)

	err := do0(ctx, func() (err error) {
		if n, _, err = s.c.GetNetwork(network); err != nil || n.Type != "bridge" {
			return err
		}

		leases, err = s.c.GetNetworkLeases(network)

		return err
	})
	if err != nil {
		return Addressing{}, fmt.Errorf("incus: addressing of network %q: %w", network, notFound(err))
	}

	return parseAddressing(n, leases)
}

// StoragePoolExists implements Server.
func (s *server) StoragePoolExists(ctx context.Context, name string) (bool, error) {
	return exists(ctx, "storage pool", name, func() error {
		_, _, err := s.c.GetStoragePool(name)
		return err
	})
}

func exists(ctx context.Context, kind, name string, get func() error) (bool, error) {
	err := do0(ctx, get)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("incus: get %s %q: %w", kind, name, err)
	}
}

func fromAPI(f *api.Instance) Instance {
	inst := Instance{
		Name:      f.Name,
		Status:    f.Status,
		Config:    maps.Clone(map[string]string(f.Config)),
		Devices:   CloneDevices(f.Devices),
		Location:  f.Location,
		CreatedAt: f.CreatedAt,
	}

	// Nil only for an instance on an offline cluster member, whose config
	// Incus cannot read (see ListInstances); empty otherwise.
	if inst.Config == nil && f.Config != nil {
		inst.Config = map[string]string{}
	}

	if inst.Devices == nil && f.Config != nil {
		inst.Devices = map[string]map[string]string{}
	}

	return inst
}
