package safe

import (
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
)

func TestRunRecoversLogsAndCounts(t *testing.T) {
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	var counted []string
	g := Guard{Log: log, Count: func(c string) { counted = append(counted, c) }}

	ran := false
	g.Run("quiet", func() { ran = true })
	if !ran || len(counted) != 0 || len(logged) != 0 {
		t.Fatalf("a goroutine that does not panic: ran %v, counted %v, logged %v", ran, counted, logged)
	}

	g.Run("watcher", func() { panic("boom") })
	if len(counted) != 1 || counted[0] != "watcher" {
		t.Errorf("counted %v, want [watcher]", counted)
	}
	if len(logged) != 1 {
		t.Fatalf("logged %d lines, want 1", len(logged))
	}
}

func TestGoRecoversInItsOwnGoroutine(t *testing.T) {
	var wg sync.WaitGroup
	wg.Add(1)
	var mu sync.Mutex
	var counted []string
	g := Guard{Count: func(c string) { mu.Lock(); counted = append(counted, c); mu.Unlock(); wg.Done() }}
	g.Go("canary", func() { var m map[string]int; m["x"]++ }) // a nil-map write panics
	wg.Wait()
	if len(counted) != 1 || counted[0] != "canary" {
		t.Errorf("counted %v, want [canary]", counted)
	}
}
