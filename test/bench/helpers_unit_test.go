package bench

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// These run under `make test` (no API server needed).

func TestParseStat(t *testing.T) {
	stat := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200 18446744073709551615"
	d, err := parseStat(stat)
	if err != nil || d != 3*time.Second {
		t.Fatalf("parseStat = %v, %v; want 3s", d, err)
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Fatalf("own /proc/<pid>/stat: %v", err)
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tmanager\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"))
	if err != nil || m.RSS != 40<<20 || m.HWM != 50<<20 {
		t.Fatalf("parseStatus = %+v, %v", m, err)
	}
	if _, err := processMemory(strconv.Itoa(os.Getpid())); err != nil {
		t.Fatalf("own /proc/<pid>/status: %v", err)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]time.Duration{5, 1, 3}); m != 3 {
		t.Errorf("odd median %v", m)
	}
	if m := median([]time.Duration{4, 1, 3, 2}); m != 2 {
		t.Errorf("even median %v", m) // (2+3)/2 in integer nanoseconds
	}
	if median(nil) != 0 || maxOf(nil) != 0 {
		t.Error("empty")
	}
}

func TestRing(t *testing.T) {
	r := newRing(3)
	_, _ = r.Write([]byte("a\nb\n"))
	_, _ = r.Write([]byte("c\nd\n"))
	if got := r.tail(10); got != "b\nc\nd" {
		t.Fatalf("tail = %q", got)
	}
}
