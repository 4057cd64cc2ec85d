package incus

// Tests against the real incusd on /var/lib/incus/unix.socket ($INCUS_SOCKET
// overrides). They need the lab host set up by ansible/playbooks/lab_host.yml
// (pool "rsf", bridge "rsfbr0", profile "rsf-redis", image alias
// "rsf-redis7-bookworm-v1").
// When incusd is not reachable they skip, or fail if CI=true.
//
// Network: only the unix socket and loopback; containers are on rsfbr0.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/render"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

const (
	itestImage   = "rsf-redis7-bookworm-v1"
	itestProfile = "rsf-redis"
	itestNetwork = "rsfbr0"
	itestPool    = "rsf"
	itestKey     = "user.rsf.itest"
)

// realServer connects to the local incusd or skips (fails under CI=true).
func realServer(t *testing.T) *server {
	t.Helper()

	unavailable := func(format string, args ...any) {
		t.Helper()

		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatalf("incusd is required in CI but unavailable: %s", msg)
		}

		t.Skipf("incusd unavailable: %s", msg)
	}

	socket := os.Getenv("INCUS_SOCKET") // as for the incus CLI
	if socket == "" {
		socket = DefaultSocketPath
	}

	if _, err := os.Stat(socket); err != nil {
		unavailable("%v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	s, err := Connect(ctx, Options{SocketPath: socket})
	if err != nil {
		unavailable("connect: %v", err)
	}

	_, ok, err := s.ImageProperties(ctx, itestImage)
	if err != nil || !ok {
		unavailable("image alias %s: exists=%v err=%v (run the lab_host playbook)", itestImage, ok, err)
	}

	return s.(*server)
}

func randomName(t *testing.T) string {
	t.Helper()

	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}

	return "rsf-itest-" + hex.EncodeToString(b)
}

// cleanupInstance deletes name at the end of the test, whatever happened.
func cleanupInstance(t *testing.T, s Server, name string) {
	t.Helper()

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()

		// A create may still be running server-side; retry until gone.
		for {
			err := s.DeleteInstance(ctx, name)

			_, gerr := s.GetInstance(ctx, name)
			if err == nil && errors.Is(gerr, ErrNotFound) {
				return
			}

			if ctx.Err() != nil {
				t.Errorf("cleanup of %s failed: %v / %v", name, err, gerr)
				return
			}

			time.Sleep(500 * time.Millisecond)
		}
	})
}

func waitForIPv4(ctx context.Context, t *testing.T, s Server, name string) *Instance {
	t.Helper()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	for {
		inst, err := s.GetInstance(ctx, name)
		if err == nil && inst.IPv4 != "" {
			return inst
		}

		select {
		case <-ctx.Done():
			t.Fatalf("%s has no IPv4 after 60s (last: %+v, %v)", name, inst, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func mustExec(ctx context.Context, t *testing.T, s Server, name string, cmd ...string) ExecResult {
	t.Helper()

	r, err := s.Exec(ctx, name, cmd)
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}

	return r
}

func TestRealInstanceLifecycle(t *testing.T) {
	s := realServer(t)
	ctx := t.Context()
	name := randomName(t)
	runID := strings.TrimPrefix(name, "rsf-itest-")

	cleanupInstance(t, s, name)

	spec := InstanceSpec{
		Name:     name,
		Image:    itestImage,
		Profiles: []string{itestProfile},
		Config:   map[string]string{itestKey: runID, "user.rsf.itest-other": "x"},
	}

	start := time.Now()

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	if err := s.CreateInstance(cctx, spec); err != nil {
		cancel()
		t.Fatalf("create: %v", err)
	}
	cancel()

	created := time.Since(start)
	inst := waitForIPv4(ctx, t, s, name)
	t.Logf("create returned after %v, IPv4 %s after %v", created.Round(time.Millisecond), inst.IPv4, time.Since(start).Round(time.Millisecond))

	if inst.Status != "Running" || inst.Config[itestKey] != runID || inst.CreatedAt.IsZero() {
		t.Fatalf("unexpected instance: %+v", inst)
	}

	if !strings.HasPrefix(inst.IPv4, "10.77.0.") {
		t.Errorf("IPv4 %s not on %s (10.77.0.0/24)", inst.IPv4, itestNetwork)
	}

	t.Run("CreateExisting", func(t *testing.T) {
		posts := s.createPosts.Load()

		err := s.CreateInstance(ctx, spec)
		if !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("want ErrAlreadyExists, got %v", err)
		}

		if s.createPosts.Load() != posts {
			t.Error("a create request was sent for an existing instance")
		}
	})

	t.Run("Exec", func(t *testing.T) {
		r := mustExec(ctx, t, s, name, "cat", "/etc/os-release")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, "bookworm") {
			t.Fatalf("os-release: %+v", r)
		}

		r = mustExec(ctx, t, s, name, "sh", "-c", "echo out; echo err >&2; exit 7")
		if r.ExitCode != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Fatalf("non-zero exit: %+v", r)
		}

		// Large output must not be truncated (DataDone).
		r = mustExec(ctx, t, s, name, "seq", "1", "200000")
		if lines := strings.Count(r.Stdout, "\n"); r.ExitCode != 0 || lines != 200000 || !strings.HasSuffix(r.Stdout, "\n200000\n") {
			t.Fatalf("seq: exit %d, %d lines", r.ExitCode, lines)
		}

		if _, err := s.Exec(ctx, name, []string{"/nonexistent-binary"}); err == nil {
			r := mustExec(ctx, t, s, name, "/nonexistent-binary")
			if r.ExitCode == 0 {
				t.Fatalf("missing binary exited 0: %+v", r)
			}

			t.Logf("missing binary: exit code %d", r.ExitCode)
		} else {
			t.Logf("missing binary: error %v", err)
		}

		if _, err := s.Exec(ctx, name+"-missing", []string{"true"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("exec in missing instance: %v", err)
		}
	})

	t.Run("WriteFile", func(t *testing.T) {
		const path = "/etc/rsf-itest.conf"

		content := []byte("port 6379\n# " + runID + "\n")
		if err := s.WriteFile(ctx, name, path, content, 0o640, 0, 0); err != nil {
			t.Fatal(err)
		}

		if r := mustExec(ctx, t, s, name, "stat", "-c", "%a %u %g", path); r.Stdout != "640 0 0\n" {
			t.Fatalf("stat: %+v", r)
		}

		if r := mustExec(ctx, t, s, name, "cat", path); r.Stdout != string(content) {
			t.Fatalf("content: %q", r.Stdout)
		}

		// Overwrite: shorter content, new mode and owner (redis user).
		uid := strings.TrimSpace(mustExec(ctx, t, s, name, "id", "-u", "redis").Stdout)
		gid := strings.TrimSpace(mustExec(ctx, t, s, name, "id", "-g", "redis").Stdout)
		u, _ := strconv.ParseInt(uid, 10, 64)
		g, _ := strconv.ParseInt(gid, 10, 64)

		if err := s.WriteFile(ctx, name, path, []byte("x\n"), 0o600, u, g); err != nil {
			t.Fatal(err)
		}

		if r := mustExec(ctx, t, s, name, "stat", "-c", "%a %u %g %s", path); r.Stdout != fmt.Sprintf("600 %s %s 2\n", uid, gid) {
			t.Fatalf("stat after overwrite: %+v", r)
		}

		if r := mustExec(ctx, t, s, name, "sh", "-c", "ls -a /etc | grep -c rsf-itest"); r.Stdout != "1\n" {
			t.Fatalf("temporary files left behind: %+v", r)
		}

		if err := s.WriteFile(ctx, name, "/nonexistent-dir/x", []byte("x"), 0o644, 0, 0); err == nil {
			t.Fatal("write into a missing directory succeeded")
		}

		if err := s.WriteFile(ctx, name+"-missing", path, []byte("x"), 0o644, 0, 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("write into missing instance: %v", err)
		}

		// Mode 0 means 0644, not chmod 0000.
		if err := s.WriteFile(ctx, name, "/tmp/rsf-itest-zero", []byte("z"), 0, 0, 0); err != nil {
			t.Fatal(err)
		}

		if r := mustExec(ctx, t, s, name, "stat", "-c", "%a", "/tmp/rsf-itest-zero"); r.Stdout != "644\n" {
			t.Fatalf("mode 0: %+v", r)
		}
	})

	t.Run("UpdateInstanceDevice", func(t *testing.T) {
		before := realInstanceConfig(t, s, name)

		if err := s.UpdateInstanceDevice(ctx, name, "eth0", map[string]string{"ipv4.address": inst.IPv4}); err != nil {
			t.Fatal(err)
		}

		got, err := s.GetInstance(ctx, name)
		if err != nil {
			t.Fatal(err)
		}

		eth0 := got.Devices["eth0"]
		if eth0["ipv4.address"] != inst.IPv4 || eth0["network"] != itestNetwork || eth0["type"] != "nic" {
			t.Fatalf("eth0 = %v", eth0)
		}

		after := realInstanceConfig(t, s, name)
		for k, v := range before {
			if strings.HasPrefix(k, "volatile.") && after[k] != v && !strings.HasSuffix(k, ".host_name") {
				t.Errorf("%s changed: %q -> %q", k, v, after[k])
			}
		}

		if got.IPv4 != inst.IPv4 {
			t.Errorf("address changed: %s -> %s", inst.IPv4, got.IPv4)
		}

		// Idempotent: same values again is a no-op.
		if err := s.UpdateInstanceDevice(ctx, name, "eth0", map[string]string{"ipv4.address": inst.IPv4}); err != nil {
			t.Fatal(err)
		}

		if err := s.UpdateInstanceDevice(ctx, name, "nosuchdev", map[string]string{"x": "y"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing device: %v", err)
		}
	})

	t.Run("ListInstances", func(t *testing.T) {
		l, err := s.ListInstances(ctx, itestKey, runID)
		if err != nil {
			t.Fatal(err)
		}

		if len(l) != 1 || l[0].Name != name || l[0].IPv4 == "" {
			t.Fatalf("list = %+v", l)
		}

		// Exact key and value match only.
		for _, q := range [][2]string{{itestKey, runID[:4]}, {"user.rsf.itest-o", "x"}, {"user.rsf.it", runID}} {
			l, err := s.ListInstances(ctx, q[0], q[1])
			if err != nil {
				t.Fatal(err)
			}

			for _, i := range l {
				if i.Name == name {
					t.Fatalf("%s=%s matched %s", q[0], q[1], name)
				}
			}
		}
	})

	t.Run("StopStart", func(t *testing.T) {
		for i := range 2 {
			if err := s.StopInstance(ctx, name, false); err != nil {
				t.Fatalf("stop #%d: %v", i+1, err)
			}
		}

		got, err := s.GetInstance(ctx, name)
		if err != nil || got.Status != "Stopped" || got.IPv4 != "" {
			t.Fatalf("after stop: %+v %v", got, err)
		}

		if err := s.StopInstance(ctx, name, true); err != nil {
			t.Fatalf("force stop of stopped: %v", err)
		}

		// Files can be written into a stopped container.
		if err := s.WriteFile(ctx, name, "/etc/rsf-itest-stopped", []byte("s\n"), 0o600, 0, 0); err != nil {
			t.Fatalf("write while stopped: %v", err)
		}

		if _, err := s.Exec(ctx, name, []string{"true"}); err == nil {
			t.Fatal("exec in a stopped instance succeeded")
		}

		for i := range 2 {
			if err := s.StartInstance(ctx, name); err != nil {
				t.Fatalf("start #%d: %v", i+1, err)
			}
		}

		got = waitForIPv4(ctx, t, s, name)
		if got.IPv4 != inst.IPv4 {
			t.Fatalf("pinned address not kept: %s != %s", got.IPv4, inst.IPv4)
		}

		if r := mustExec(ctx, t, s, name, "stat", "-c", "%a %s", "/etc/rsf-itest-stopped"); r.Stdout != "600 2\n" {
			t.Fatalf("file written while stopped: %+v", r)
		}

		if err := s.StartInstance(ctx, name+"-missing"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("start missing: %v", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		if err := s.DeleteInstance(ctx, name); err != nil {
			t.Fatalf("delete running: %v", err)
		}

		if _, err := s.GetInstance(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}

		if err := s.DeleteInstance(ctx, name); err != nil {
			t.Fatalf("delete gone: %v", err)
		}
	})
}

// realInstanceConfig returns the instance's own config straight from Incus.
func realInstanceConfig(t *testing.T, s *server, name string) map[string]string {
	t.Helper()

	inst, _, err := s.c.GetInstance(name)
	if err != nil {
		t.Fatal(err)
	}

	return inst.Config
}

func TestRealLookups(t *testing.T) {
	s := realServer(t)
	ctx := t.Context()

	if _, err := s.GetInstance(ctx, randomName(t)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetInstance missing: want ErrNotFound, got %v", err)
	}

	if err := s.DeleteInstance(ctx, randomName(t)); err != nil {
		t.Fatalf("DeleteInstance missing: %v", err)
	}

	missing := randomName(t)

	for _, c := range []struct {
		what  string
		fn    func(context.Context, string) (bool, error)
		exist string
	}{
		{"image alias", func(ctx context.Context, alias string) (bool, error) {
			_, ok, err := s.ImageProperties(ctx, alias)
			return ok, err
		}, itestImage},
		{"profile", s.ProfileExists, itestProfile},
		{"network", s.NetworkExists, itestNetwork},
		{"storage pool", s.StoragePoolExists, itestPool},
	} {
		if ok, err := c.fn(ctx, c.exist); err != nil || !ok {
			t.Errorf("%s %s: exists=%v err=%v", c.what, c.exist, ok, err)
		}

		if ok, err := c.fn(ctx, missing); err != nil || ok {
			t.Errorf("%s %s: exists=%v err=%v", c.what, missing, ok, err)
		}
	}

	// The lab image says which engine it runs (the operator refuses an
	// image of another engine than the formation's).
	if props, _, err := s.ImageProperties(ctx, itestImage); err != nil || props[engine.Property] != "redis" {
		t.Errorf("image %s: user.rsf.engine=%q err=%v, want redis", itestImage, props[engine.Property], err)
	}

	if _, err := Connect(ctx, Options{Project: "rsf-itest-no-such-project"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing project: %v", err)
	}
}

// TestRealCreateTimeout checks the "never blindly retried" rule: a create
// whose wait is cut short by the context returns an error, the server keeps
// creating, and a second CreateInstance does not send another create.
func TestRealCreateTimeout(t *testing.T) {
	s := realServer(t)
	ctx := t.Context()

	t.Run("1ms", func(t *testing.T) {
		name := randomName(t)
		cleanupInstance(t, s, name)

		posts := s.createPosts.Load()

		short, cancel := context.WithTimeout(ctx, time.Millisecond)
		err := s.CreateInstance(short, InstanceSpec{Name: name, Image: itestImage, Profiles: []string{itestProfile}})

		cancel()

		if err == nil {
			t.Fatal("create with a 1ms deadline succeeded")
		}

		sent := s.createPosts.Load() - posts
		t.Logf("1ms create: %v (create requests sent: %d)", err, sent)

		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrOperationPending) {
			t.Fatalf("want a deadline or pending error, got %v", err)
		}

		if sent == 0 {
			// Nothing reached Incus: the instance must not appear, and a
			// later create is a first create, not a retry.
			time.Sleep(time.Second)

			if _, err := s.GetInstance(ctx, name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("instance appeared without a create request: %v", err)
			}

			if err := s.CreateInstance(ctx, InstanceSpec{Name: name, Image: itestImage, Profiles: []string{itestProfile}}); err != nil {
				t.Fatal(err)
			}

			return
		}

		assertNoBlindRetry(ctx, t, s, name, posts+sent)
	})

	t.Run("WaitCutShort", func(t *testing.T) {
		// Long enough for the request to be accepted, far too short for the
		// container to be created and started.
		for _, d := range []time.Duration{150 * time.Millisecond, 50 * time.Millisecond, 20 * time.Millisecond} {
			name := randomName(t)
			cleanupInstance(t, s, name)

			posts := s.createPosts.Load()

			short, cancel := context.WithTimeout(ctx, d)
			start := time.Now()
			err := s.CreateInstance(short, InstanceSpec{Name: name, Image: itestImage, Profiles: []string{itestProfile}})

			cancel()

			t.Logf("create with %v deadline returned after %v: %v", d, time.Since(start).Round(time.Millisecond), err)

			if err == nil {
				t.Logf("created within %v; trying a shorter deadline", d)
				continue
			}

			if s.createPosts.Load() == posts {
				t.Logf("no request sent within %v; not the case under test", d)
				continue
			}

			if !errors.Is(err, ErrOperationPending) {
				t.Fatalf("want ErrOperationPending, got %v", err)
			}

			if time.Since(start) > d+rereadTimeout+time.Second {
				t.Errorf("create did not return promptly after its deadline")
			}

			// The server-side scan CreateInstance relies on when the
			// instance is not visible yet must see the running create.
			if op, err := s.pendingInstanceOp(ctx, name); err != nil {
				t.Fatal(err)
			} else if op != nil {
				t.Logf("pending operation found: %s %q %v", op.ID, op.Description, op.Resources["instances"])

				// Start/stop/delete do not race with the running create.
				err := s.StartInstance(ctx, name)
				t.Logf("start during create: %v", err)

				if err != nil && !errors.Is(err, ErrOperationPending) {
					t.Fatalf("start during create: want nil or ErrOperationPending, got %v", err)
				}
			} else {
				t.Logf("create operation already finished")
			}

			assertNoBlindRetry(ctx, t, s, name, posts+1)

			return
		}

		t.Skip("could not cut a create wait short on this host")
	})
}

// assertNoBlindRetry: after a cut-short create of name (posts requests sent
// so far), CreateInstance reports pending/exists without sending a new
// request, and the instance the server kept creating becomes reachable.
func assertNoBlindRetry(ctx context.Context, t *testing.T, s *server, name string, posts int64) {
	t.Helper()

	err := s.CreateInstance(ctx, InstanceSpec{Name: name, Image: itestImage, Profiles: []string{itestProfile}})
	t.Logf("immediate second create: %v", err)

	if !errors.Is(err, ErrOperationPending) && !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("second create: want ErrOperationPending or ErrAlreadyExists, got %v", err)
	}

	if got := s.createPosts.Load(); got != posts {
		t.Fatalf("second create sent a request (%d sent, want %d)", got, posts)
	}

	inst := waitForIPv4(ctx, t, s, name)
	t.Logf("server finished the abandoned create: %s %s", inst.Status, inst.IPv4)

	if err := s.CreateInstance(ctx, InstanceSpec{Name: name, Image: itestImage}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("create after completion: want ErrAlreadyExists, got %v", err)
	}

	if got := s.createPosts.Load(); got != posts {
		t.Fatalf("create after completion sent a request")
	}
}

func TestConnectBadRemote(t *testing.T) {
	cert, key := testenv.SelfSignedCert(t, "client")
	serverCert, _ := testenv.SelfSignedCert(t, "server")

	twoCerts := append(append([]byte{}, serverCert...), serverCert...)

	for _, c := range []struct {
		name   string
		remote Remote
		// invalid: refused as ErrInvalidRemote before dialing; otherwise
		// the connection itself fails (nothing listens on port 1).
		invalid bool
	}{
		{"bogus PEM", Remote{URL: "https://127.0.0.1:1", ClientCert: []byte("bogus"), ClientKey: []byte("bogus"), ServerCert: []byte("bogus")}, true},
		{"bogus pinned certificate", Remote{URL: "https://127.0.0.1:1", ClientCert: cert, ClientKey: key, ServerCert: []byte("bogus")}, true},
		{"two pinned certificates", Remote{URL: "https://127.0.0.1:1", ClientCert: cert, ClientKey: key, ServerCert: twoCerts}, true},
		{"key of another certificate", Remote{URL: "https://127.0.0.1:1", ClientCert: serverCert, ClientKey: key, ServerCert: serverCert}, true},
		{"refused", Remote{URL: "https://127.0.0.1:1", ClientCert: cert, ClientKey: key, ServerCert: serverCert}, false},
		{"not https", Remote{URL: "http://127.0.0.1:1", ClientCert: cert, ClientKey: key, ServerCert: serverCert}, true},
		{"no certs", Remote{URL: "https://127.0.0.1:1"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			start := time.Now()

			s, err := Connect(ctx, Options{Remote: &c.remote})
			if err == nil {
				t.Fatalf("connected: %v", s)
			}

			if errors.Is(err, ErrInvalidRemote) != c.invalid || errors.Is(err, ErrServerCertMismatch) || errors.Is(err, ErrNotTrusted) {
				t.Errorf("invalid remote %v, got %v", c.invalid, err)
			}

			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}

			t.Logf("%v", err)
		})
	}
}

// TestConnectRemoteTrust runs a minimal Incus-like HTTPS endpoint on
// loopback: an untrusted client is refused with ErrNotTrusted, a wrong
// pinned certificate with ErrServerCertMismatch, a trusted client connects.
func TestConnectRemoteTrust(t *testing.T) {
	var trusted atomic.Bool

	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/1.0" {
			http.NotFound(w, r)
			return
		}

		auth := "untrusted"
		if trusted.Load() {
			auth = "trusted"
		}

		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"type":"sync","status":"Success","status_code":200,"metadata":{"api_version":"1.0","auth":%q,"auth_methods":["tls"],"api_extensions":[]}}`, auth)
	}))
	defer srv.Close()

	pinned := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cert, key := testenv.SelfSignedCert(t, "client")
	other, _ := testenv.SelfSignedCert(t, "other")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, err := Connect(ctx, Options{Remote: &Remote{URL: srv.URL, ClientCert: cert, ClientKey: key, ServerCert: pinned}})
	if !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("untrusted: want ErrNotTrusted, got %v", err)
	}

	_, err = Connect(ctx, Options{Remote: &Remote{URL: srv.URL, ClientCert: cert, ClientKey: key, ServerCert: other}})
	if !errors.Is(err, ErrServerCertMismatch) || errors.Is(err, ErrNotTrusted) {
		t.Fatalf("wrong pinned cert: want ErrServerCertMismatch, got %v", err)
	}

	t.Logf("wrong pin: %v", err)

	trusted.Store(true)

	if _, err := Connect(ctx, Options{Remote: &Remote{URL: srv.URL, ClientCert: cert, ClientKey: key, ServerCert: pinned}}); err != nil {
		t.Fatalf("trusted: %v", err)
	}
}

// A force stop of a real container reaches a WatchLifecycle stream as an
// instance-stopped event naming it; operations waited meanwhile (they share
// the client's event websocket) still complete.
func TestRealLifecycleEvents(t *testing.T) {
	s := realServer(t)
	ctx := t.Context()
	name := randomName(t)
	cleanupInstance(t, s, name)

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	spec := InstanceSpec{Name: name, Image: itestImage, Profiles: []string{itestProfile}, Config: map[string]string{itestKey: strings.TrimPrefix(name, "rsf-itest-")}}
	if err := s.CreateInstance(cctx, spec); err != nil {
		t.Fatalf("create: %v", err)
	}

	type received struct {
		e  LifecycleEvent
		at time.Time
	}

	events := make(chan received, 64)
	connected := make(chan struct{})
	wctx, stop := context.WithCancel(ctx)
	ended := make(chan error, 1)

	go func() {
		ended <- s.WatchLifecycle(wctx, func() { close(connected) }, func(e LifecycleEvent) { events <- received{e, time.Now()} })
	}()

	select {
	case <-connected:
	case err := <-ended:
		t.Fatalf("WatchLifecycle: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream did not connect in 10 s")
	}

	// wait returns the first event of the instance with action.
	wait := func(action string) received {
		t.Helper()

		timeout := time.After(30 * time.Second)

		for {
			select {
			case r := <-events:
				if r.e.Instance == name && r.e.Action == action {
					return r
				}
			case err := <-ended:
				t.Fatalf("the stream ended waiting for %s: %v", action, err)
			case <-timeout:
				t.Fatalf("no %s event of %s in 30 s", action, name)
			}
		}
	}

	begin := time.Now()
	if err := s.StopInstance(cctx, name, true); err != nil {
		t.Fatalf("force stop: %v", err)
	}

	returned := time.Since(begin)
	r := wait(ActionInstanceStopped)
	t.Logf("instance-stopped received %v after the force stop began (the stop returned after %v); Incus's timestamp is %v after it began",
		r.at.Sub(begin).Round(time.Millisecond), returned.Round(time.Millisecond), r.e.Time.Sub(begin).Round(time.Millisecond))

	if r.e.Project != "default" {
		t.Errorf("project %q, want default", r.e.Project)
	}

	if r.e.Time.IsZero() || r.e.Time.Before(begin.Add(-5*time.Second)) || r.e.Time.After(r.at.Add(5*time.Second)) {
		t.Errorf("event time %v is not around the stop (%v .. %v)", r.e.Time, begin, r.at)
	}

	if err := s.StartInstance(cctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}

	wait(ActionInstanceStarted)

	if err := s.DeleteInstance(cctx, name); err != nil {
		t.Fatalf("delete: %v", err)
	}

	wait(ActionInstanceDeleted)

	stop()

	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("WatchLifecycle ended with %v, want context.Canceled", err)
	}
}

// TestRealStaticAddress: a container created with a pinned address and
// the lab image's static network keys comes up at that address, with the
// static configuration the image's template rendered from the keys;
// NetworkAddressing then lists it in use, and Incus refuses to start a
// second container pinned to the same address.
func TestRealStaticAddress(t *testing.T) {
	s := realServer(t)
	ctx := t.Context()

	a, err := s.NetworkAddressing(ctx, itestNetwork)
	if err != nil {
		t.Fatal(err)
	}

	if !a.Gateway.Addr().Is4() || !slices.Contains(a.InUse, a.Gateway.Addr()) {
		t.Fatalf("addressing of %s: gateway %s, in use %v", itestNetwork, a.Gateway, a.InUse)
	}

	// The highest free address: the operator's formations take the lowest.
	subnet := a.Gateway.Masked()
	var addr netip.Addr
	for c := subnet.Addr(); subnet.Contains(c.Next()); c = c.Next() {
		if c != subnet.Addr() && !slices.Contains(a.InUse, c) {
			addr = c
		}
	}

	config, err := render.StaticNetwork(addr, a.Gateway)
	if err != nil {
		t.Fatal(err)
	}

	config[itestKey] = "static-address"

	pinned := func(name string) InstanceSpec {
		return InstanceSpec{
			Name: name, Image: itestImage, Profiles: []string{itestProfile},
			Config:  config,
			Devices: map[string]map[string]string{"eth0": {"type": "nic", "name": "eth0", "network": itestNetwork, "ipv4.address": addr.String()}},
		}
	}

	name := randomName(t)
	t.Cleanup(func() { _ = s.DeleteInstance(context.Background(), name) })

	if err := s.CreateInstance(ctx, pinned(name)); err != nil {
		t.Fatal(err)
	}

	var inst *Instance
	deadline := time.Now().Add(30 * time.Second)
	for inst == nil || inst.IPv4 == "" {
		if time.Now().After(deadline) {
			t.Fatalf("%s has no address after 30 s: %+v", name, inst)
		}

		time.Sleep(50 * time.Millisecond)

		if inst, err = s.GetInstance(ctx, name); err != nil {
			t.Fatal(err)
		}
	}

	if inst.IPv4 != addr.String() {
		t.Fatalf("%s came up at %s, want %s", name, inst.IPv4, addr)
	}

	res, err := s.Exec(ctx, name, []string{"cat", render.NetworkPath})
	want := []string{"Address=" + config[render.KeyNetworkAddress] + "\n", "Gateway=" + a.Gateway.Addr().String() + "\n"}
	if err != nil || !strings.Contains(res.Stdout, want[0]) || !strings.Contains(res.Stdout, want[1]) || strings.Contains(res.Stdout, "DHCP") {
		t.Fatalf("network file in %s: %q, %v; want the static one with %q", name, res.Stdout, err, want)
	}

	if a, err = s.NetworkAddressing(ctx, itestNetwork); err != nil || !slices.Contains(a.InUse, addr) {
		t.Fatalf("after the create, %s in use: %v (%v)", addr, slices.Contains(a.InUse, addr), err)
	}

	second := randomName(t)
	t.Cleanup(func() { _ = s.DeleteInstance(context.Background(), second) })

	if err := s.CreateInstance(ctx, pinned(second)); err == nil || !strings.Contains(err.Error(), "already defined on another NIC") {
		t.Fatalf("a second container pinned to %s: %v, want Incus's refusal to start it", addr, err)
	}
}
