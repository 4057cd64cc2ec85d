package testenv

import "sync"

// Counter counts calls per key; tests hand its Add to code that reports
// from its own goroutines (recovered panics, canary probes, forgets).
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// Add counts one call for key.
func (c *Counter) Add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
}

// Count is how many calls key had.
func (c *Counter) Count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}
