package incus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lxc/incus/v6/shared/api"
)

// Lifecycle actions of instances the operator acts on (api.EventLifecycle*).
const (
	ActionInstanceStarted   = api.EventLifecycleInstanceStarted
	ActionInstanceStopped   = api.EventLifecycleInstanceStopped
	ActionInstanceShutdown  = api.EventLifecycleInstanceShutdown
	ActionInstanceRestarted = api.EventLifecycleInstanceRestarted
	ActionInstanceDeleted   = api.EventLifecycleInstanceDeleted
	ActionInstancePaused    = api.EventLifecycleInstancePaused
	ActionInstanceResumed   = api.EventLifecycleInstanceResumed
	ActionInstanceRenamed   = api.EventLifecycleInstanceRenamed
)

// Cluster events the operator acts on. Incus announces an evacuation or a
// restore by lifecycle event only once it is over; the operation that
// carries it out is reported as it starts (and at each step), which is
// when a master on the member must hand its role over.
const (
	ActionClusterMemberEvacuating = "cluster-member-evacuating"
	ActionClusterMemberRestoring  = "cluster-member-restoring"
	ActionClusterMemberEvacuated  = api.EventLifecycleClusterMemberEvacuated
	ActionClusterMemberRestored   = api.EventLifecycleClusterMemberRestored
)

// clusterOperations are the descriptions of Incus's cluster member
// operations (its operationtype.ClusterMemberEvacuate and
// ClusterMemberRestore), by the action they are reported as.
var clusterOperations = map[string]string{
	"Evacuating cluster member": ActionClusterMemberEvacuating,
	"Restoring cluster member":  ActionClusterMemberRestoring,
}

// LifecycleEvent is an Incus lifecycle event of an instance, or of the
// cluster (Instance "", the ActionCluster* actions).
type LifecycleEvent struct {
	// Time is Incus's timestamp of the event.
	Time time.Time
	// Action is e.g. "instance-stopped" (the Action* constants).
	Action   string
	Instance string
	// Project is the instance's Incus project ("default" for the default
	// one).
	Project string
}

// WatchLifecycle implements Server. It listens on the connection's project
// with GetEvents and filters lifecycle events with the handler: a listener
// filtered by type at the server would share its websocket with the
// client's operation waits, which would then miss their events.
func (s *server) WatchLifecycle(ctx context.Context, connected func(), handle func(LifecycleEvent)) error {
	if err := ctx.Err(); err != nil {
		return err
	}

	// Bounded by the websocket handshake timeout (5 s).
	listener, err := s.c.GetEvents()
	if err != nil {
		return fmt.Errorf("incus: listening to events: %w", err)
	}

	defer listener.Disconnect()

	// The client calls handlers each in its own goroutine; they hand the
	// event over so that handle runs in the caller's (guarded) goroutine.
	events := make(chan api.Event)
	done := make(chan struct{})
	defer close(done)

	_, err = listener.AddHandler([]string{api.EventTypeLifecycle, api.EventTypeOperation}, func(e api.Event) {
		select {
		case events <- e:
		case <-done:
		}
	})
	if err != nil {
		return fmt.Errorf("incus: listening to events: %w", err)
	}

	ended := make(chan error, 1)
	go func() { ended <- listener.Wait() }()

	connected()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ended:
			return fmt.Errorf("incus: event stream ended: %w", cmp.Or(err, errors.New("closed")))
		case e := <-events:
			if le, ok := instanceLifecycle(e); ok {
				handle(le)
			} else if le, ok := clusterEvent(e); ok {
				handle(le)
			}
		}
	}
}

// clusterEvent reads an evacuation or a restore of a cluster member: its
// lifecycle event at the end, or its operation while it runs.
func clusterEvent(e api.Event) (LifecycleEvent, bool) {
	switch e.Type {
	case api.EventTypeOperation:
		var op api.Operation
		if err := json.Unmarshal(e.Metadata, &op); err != nil || op.StatusCode != api.Running {
			return LifecycleEvent{}, false
		}
		action, ok := clusterOperations[op.Description]
		return LifecycleEvent{Time: e.Timestamp, Action: action}, ok
	case api.EventTypeLifecycle:
		var lc api.EventLifecycle
		if err := json.Unmarshal(e.Metadata, &lc); err != nil {
			return LifecycleEvent{}, false
		}
		if lc.Action == ActionClusterMemberEvacuated || lc.Action == ActionClusterMemberRestored {
			return LifecycleEvent{Time: e.Timestamp, Action: lc.Action}, true
		}
	}
	return LifecycleEvent{}, false
}

// instanceLifecycle reads an instance's lifecycle event; other lifecycle
// events (of snapshots, backups, profiles, ...) are not.
func instanceLifecycle(e api.Event) (LifecycleEvent, bool) {
	if e.Type != api.EventTypeLifecycle {
		return LifecycleEvent{}, false
	}
	var lc api.EventLifecycle
	if err := json.Unmarshal(e.Metadata, &lc); err != nil {
		return LifecycleEvent{}, false
	}

	// Source is /1.0/instances/<name>?project=<project>.
	u, err := url.Parse(lc.Source)
	if err != nil {
		return LifecycleEvent{}, false
	}

	name, ok := strings.CutPrefix(u.Path, "/1.0/instances/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return LifecycleEvent{}, false
	}

	return LifecycleEvent{
		Time:     e.Timestamp,
		Action:   lc.Action,
		Instance: name,
		Project:  cmp.Or(lc.Project, u.Query().Get("project"), e.Project, "default"),
	}, true
}
