package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// ClusterLabInfo is the file `make lab-cluster` writes for tests: the
// members' URLs, the cluster certificate, the node container of each member
// and the machine client certificate the cluster trusts.
const ClusterLabInfo = "/var/lib/rsf-lab/cluster.json"

// ClusterLab is the cluster lab (`make lab-cluster`): three Incus cluster
// members, each an incusd in a container (its node) of the machine's
// incusd.
type ClusterLab struct {
	// URLs are the members' HTTPS endpoints (https://10.79.0.11:8443, ...).
	URLs []string
	// ServerCert is the cluster certificate (PEM), which every member
	// presents: the pin.
	ServerCert []byte

	nodes      map[string]string // member -> node container on the machine
	clientCert string
	clientKey  string
	machine    incusclient.InstanceServer
}

type clusterLabFile struct {
	URLs              []string          `json:"urls"`
	ServerCertificate string            `json:"server_certificate"`
	NodeContainers    map[string]string `json:"node_containers"`
	ClientCertificate string            `json:"client_certificate"`
	ClientKey         string            `json:"client_key"`
}

// NewClusterLab reads ClusterLabInfo and connects to the machine's incusd
// (unix socket). A missing file or socket, or no member answering, is a
// testenv.UnavailableError (run `make lab-cluster`).
func NewClusterLab(ctx context.Context) (*ClusterLab, error) {
	raw, err := os.ReadFile(ClusterLabInfo)
	if err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("cluster lab: %w (run `make lab-cluster`)", err)}
	}
	var f clusterLabFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("cluster lab: %s: %w", ClusterLabInfo, err)
	}
	cert, err := os.ReadFile(f.ClientCertificate)
	if err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("cluster lab client certificate: %w", err)}
	}
	key, err := os.ReadFile(f.ClientKey)
	if err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("cluster lab client key: %w", err)}
	}
	// The client keeps its context for every later request.
	machine, err := incusclient.ConnectIncusUnixWithContext(context.WithoutCancel(ctx), "", nil)
	if err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("incusd unix socket: %w", err)}
	}
	c := &ClusterLab{
		URLs: f.URLs, ServerCert: []byte(f.ServerCertificate), nodes: f.NodeContainers,
		clientCert: string(cert), clientKey: string(key), machine: machine,
	}
	if _, err := c.server(ctx); err != nil {
		return nil, &testenv.UnavailableError{Err: err}
	}
	return c, nil
}

// server connects to the first member that answers within a few seconds
// (members may be down on purpose); its requests use ctx.
func (c *ClusterLab) server(ctx context.Context) (incusclient.InstanceServer, error) {
	var errs []error
	for _, url := range c.URLs {
		args := &incusclient.ConnectionArgs{
			TLSServerCert: string(c.ServerCert), IdenticalCertificate: true,
			TLSClientCert: c.clientCert, TLSClientKey: c.clientKey,
		}
		probeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := incusclient.ConnectIncusWithContext(probeCtx, url, args)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", url, err))
			continue
		}
		args.SkipGetServer = true
		return incusclient.ConnectIncusWithContext(ctx, url, args)
	}
	return nil, fmt.Errorf("no cluster lab member answers: %w", errors.Join(errs...))
}

// TrustedClient creates a client certificate and adds it to the cluster's
// trust store under name for t's duration (removed at cleanup). It returns
// the certificate and key (PEM).
func (c *ClusterLab) TrustedClient(t testing.TB, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	// The cleanup runs after the test's contexts are gone.
	return trustedClient(t, name, "the cluster", func() (incusclient.InstanceServer, error) { return c.server(context.Background()) })
}

// Members maps each member's name to its status as Incus reports it:
// "Online", "Offline", "Evacuated" (Incus 6.0 reports it for the whole
// evacuation, and for an evacuated member whose node is down; newer Incus
// also has "Evacuating" and "Restoring"), "Blocked".
func (c *ClusterLab) Members(ctx context.Context) (map[string]string, error) {
	s, err := c.server(ctx)
	if err != nil {
		return nil, err
	}
	members, err := s.GetClusterMembers()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(members))
	for _, m := range members {
		out[m.ServerName] = m.Status
	}
	return out, nil
}

// InstanceLocations maps the name of every instance (default project)
// whose config has key=value to the member it is on. Instances on an
// offline member are listed by Incus without their config (status
// "Error"), so they are not matched.
func (c *ClusterLab) InstanceLocations(ctx context.Context, key, value string) (map[string]string, error) {
	s, err := c.server(ctx)
	if err != nil {
		return nil, err
	}
	instances, err := s.GetInstances(api.InstanceTypeAny)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, i := range instances {
		if v, ok := i.Config[key]; ok && v == value {
			out[i.Name] = i.Location
		}
	}
	return out, nil
}

// StopNode hard-stops member's node container on the machine (`incus stop
// --force`): the member vanishes without leaving the cluster.
func (c *ClusterLab) StopNode(ctx context.Context, member string) error {
	return c.nodeState(ctx, member, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1})
}

// StartNode starts member's node container again; its incusd rejoins the
// cluster by itself (see WaitMembersOnline).
func (c *ClusterLab) StartNode(ctx context.Context, member string) error {
	return c.nodeState(ctx, member, api.InstanceStatePut{Action: "start", Timeout: -1})
}

func (c *ClusterLab) nodeState(ctx context.Context, member string, state api.InstanceStatePut) error {
	node, ok := c.nodes[member]
	if !ok {
		return fmt.Errorf("cluster lab has no member %q", member)
	}
	op, err := c.machine.UpdateInstanceState(node, state, "")
	if err != nil {
		return fmt.Errorf("%s node %s: %w", state.Action, node, err)
	}
	if err := op.WaitContext(ctx); err != nil {
		return fmt.Errorf("%s node %s: %w", state.Action, node, err)
	}
	return nil
}

// Evacuate evacuates member (`incus cluster evacuate`) and waits until the
// operation is done.
func (c *ClusterLab) Evacuate(ctx context.Context, member string) error {
	return c.memberState(ctx, member, "evacuate")
}

// Restore restores an evacuated member (`incus cluster restore`) and waits.
func (c *ClusterLab) Restore(ctx context.Context, member string) error {
	return c.memberState(ctx, member, "restore")
}

func (c *ClusterLab) memberState(ctx context.Context, member, action string) error {
	s, err := c.server(ctx)
	if err != nil {
		return err
	}
	op, err := s.UpdateClusterMemberState(member, api.ClusterMemberStatePost{Action: action})
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, member, err)
	}
	if err := op.WaitContext(ctx); err != nil {
		return fmt.Errorf("%s %s: %w", action, member, err)
	}
	return nil
}

// WaitMembersOnline waits until every member reports "Online" or ctx ends
// (an evacuated member stays "Evacuated" until Restore).
func (c *ClusterLab) WaitMembersOnline(ctx context.Context) error {
	for {
		members, err := c.Members(ctx)
		var notOnline []string
		for name, status := range members {
			if status != "Online" {
				notOnline = append(notOnline, name+"="+status)
			}
		}
		if err == nil && len(members) > 0 && len(notOnline) == 0 {
			return nil
		}
		sort.Strings(notOnline)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster lab members not online (%v, last error %v): %w", notOnline, err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
