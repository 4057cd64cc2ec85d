// Package safe runs the goroutines the operator starts (Sentinel
// subscriptions, canary probes, parallel observations and creates) so that
// a panic in one is recovered, logged and counted instead of ending the
// process and with it every formation's reconciles.
package safe

import (
	"fmt"
	"runtime/debug"

	"github.com/go-logr/logr"
)

// Guard recovers panics. The zero value recovers without logging or
// counting.
type Guard struct {
	Log logr.Logger
	// Count is called with the component whose goroutine panicked (e.g. a
	// metric's counter); nil counts nothing.
	Count func(component string)
}

// Go runs fn in a new goroutine under the guard.
func (g Guard) Go(component string, fn func()) {
	go g.Run(component, fn)
}

// Run runs fn in the calling goroutine; a panic in fn is recovered, logged
// with its stack and counted, and Run returns normally.
func (g Guard) Run(component string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			g.Log.Error(fmt.Errorf("panic: %v", r), "recovered a panic; the goroutine ended, the operator keeps running",
				"component", component, "stack", string(debug.Stack()))
			if g.Count != nil {
				g.Count(component)
			}
		}
	}()
	fn()
}
