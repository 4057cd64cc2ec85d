package incus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type nopServer struct{ Server }

func TestConnectorCachesPerOptions(t *testing.T) {
	var dials atomic.Int32

	fail := atomic.Bool{}
	c := NewConnector()
	c.connect = func(context.Context, Options) (Server, error) {
		dials.Add(1)
		time.Sleep(20 * time.Millisecond) // let concurrent callers pile up

		if fail.Load() {
			return nil, errors.New("down")
		}

		return &nopServer{}, nil
	}

	ctx := context.Background()
	local := Options{Project: "p"}

	var wg sync.WaitGroup

	got := make([]Server, 16)
	for i := range got {
		wg.Go(func() {
			s, err := c.Server(ctx, local)
			if err != nil {
				t.Error(err)
			}

			got[i] = s
		})
	}
	wg.Wait()

	if n := dials.Load(); n != 1 {
		t.Fatalf("dials = %d, want 1", n)
	}

	for _, s := range got {
		if s != got[0] {
			t.Fatal("callers got different connections")
		}
	}

	remote := Options{Project: "p", Remote: &Remote{URL: "https://127.0.0.1:8443", ClientCert: []byte("a"), ClientKey: []byte("b"), ServerCert: []byte("c")}}
	if _, err := c.Server(ctx, remote); err != nil {
		t.Fatal(err)
	}

	rotated := Options{Project: "p", Remote: &Remote{URL: "https://127.0.0.1:8443", ClientCert: []byte("a"), ClientKey: []byte("b"), ServerCert: []byte("d")}}
	if _, err := c.Server(ctx, rotated); err != nil {
		t.Fatal(err)
	}

	if n := dials.Load(); n != 3 || c.Len() != 3 {
		t.Fatalf("dials = %d, cached = %d, want 3/3", n, c.Len())
	}

	c.Forget(local)

	fail.Store(true)

	if _, err := c.Server(ctx, local); err == nil {
		t.Fatal("want error")
	}

	if c.Len() != 2 {
		t.Fatalf("failed connection cached: %d", c.Len())
	}

	fail.Store(false)

	if _, err := c.Server(ctx, local); err != nil {
		t.Fatal(err)
	}

	if n := dials.Load(); n != 5 {
		t.Fatalf("dials = %d, want 5", n)
	}
}

func TestOptionsKey(t *testing.T) {
	a := Options{Remote: &Remote{URL: "https://h:8443", ClientCert: []byte("ab"), ClientKey: []byte("c")}}
	b := Options{Remote: &Remote{URL: "https://h:8443", ClientCert: []byte("a"), ClientKey: []byte("bc")}}

	if a.Key() == b.Key() {
		t.Fatal("keys collide when bytes move between fields")
	}

	if (Options{}).Key() != (Options{SocketPath: DefaultSocketPath}).Key() {
		t.Fatal("default socket path not normalised")
	}

	if (Options{Project: "x"}).Key() == (Options{}).Key() {
		t.Fatal("project not in key")
	}
}
