// Package incus is the narrow interface of the Incus calls the
// RedisSentinelFormation operator makes, implemented with
// github.com/lxc/incus/v6/client.
//
// Connections go to the local unix socket by default, or over HTTPS with a
// client certificate and a pinned server certificate for remote hosts.
// Every call takes a context. Incus operations are waited with that
// context; a context that expires does not cancel the server-side
// operation, so a timed-out (or otherwise unresolved) operation is re-read
// and reported as ErrOperationPending instead of being retried blindly.
package incus

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"os"
	"time"
)

var (
	// ErrNotFound is returned (wrapped) when the instance does not exist.
	ErrNotFound = errors.New("incus: not found")

	// ErrAlreadyExists is returned (wrapped) by CreateInstance when an
	// instance of that name already exists.
	ErrAlreadyExists = errors.New("incus: already exists")

	// ErrOperationPending is returned (wrapped) when an Incus operation was
	// started but its outcome is not known yet: the context expired while
	// waiting (the server keeps running the operation), or the wait failed
	// and the re-read state does not show the requested result. Callers
	// should re-read state on the next reconcile instead of repeating the
	// write. CreateInstance itself refuses to POST a second create while a
	// create operation for the same name is still running on the server.
	ErrOperationPending = errors.New("incus: operation still pending")

	// ErrNotTrusted is returned (wrapped) by Connect when a remote server
	// accepted the TLS connection but does not trust the client certificate
	// (incusd completes the handshake with any client certificate and
	// reports auth "untrusted" in GET /1.0).
	ErrNotTrusted = errors.New("incus: client certificate is not trusted by the server")

	// ErrServerCertMismatch is returned (wrapped) by Connect when a remote
	// server presented a certificate other than the pinned one; the message
	// names the SHA-256 fingerprints of both. Only the exact pinned
	// certificate is accepted: no CA, no name check.
	ErrServerCertMismatch = errors.New("incus: server certificate does not match the pinned certificate")

	// ErrInvalidRemote is returned (wrapped) by Connect when the remote
	// itself is unusable before any connection is attempted: the URL is not
	// https://host[:port], or the client certificate, key or pinned server
	// certificate is missing or does not parse.
	ErrInvalidRemote = errors.New("incus: invalid remote")

	// ErrNoAddressing is returned (wrapped) by NetworkAddressing for a
	// network whose IPv4 addresses Incus does not hand out.
	ErrNoAddressing = errors.New("incus: the network has no Incus-managed IPv4 subnet")

	// ErrNotBridged is returned (wrapped) by NetworkAddressing for a
	// network that is not an Incus bridge (a macvlan, a physical network):
	// an instance's address on it can be neither chosen nor pinned.
	ErrNotBridged = errors.New("incus: the network is not an Incus bridge")
)

// InstanceSpec describes a container to create.
type InstanceSpec struct {
	Name string
	// Image is an image alias on the server.
	Image string
	// Profiles to apply. nil means the server's "default" profile (Incus
	// semantics); an empty non-nil slice means no profile at all.
	Profiles []string
	// Config is the instance's own config (e.g. user.rsf.* ownership keys,
	// limits.*).
	Config map[string]string
	// Devices are instance-local devices (e.g. an eth0 nic override with
	// ipv4.address, a root disk on a given pool).
	Devices map[string]map[string]string
	// Target is the cluster member; "" lets Incus choose.
	Target string
}

// Addressing is a managed network's IPv4 plan: the subnet an address may
// be chosen from and what in it is taken already.
type Addressing struct {
	// Gateway is the network's own address with the subnet's prefix
	// (ipv4.address), e.g. 10.77.0.1/24.
	Gateway netip.Prefix
	// DHCPRanges are the network's dynamic ranges (ipv4.dhcp.ranges);
	// none means DHCP may hand out any address of the subnet.
	DHCPRanges []AddressRange
	// InUse are the addresses Incus knows to be taken: the network's own,
	// every instance's static allocation and every DHCP lease.
	InUse []netip.Addr
}

// AddressRange is an inclusive range of addresses.
type AddressRange struct{ First, Last netip.Addr }

// Instance is the observed state of an instance.
type Instance struct {
	Name string
	// Status is the Incus status: "Running", "Stopped", "Frozen", "Error", ...
	Status string
	// Config is the instance's own config (not the expanded one); the
	// user.* keys live there.
	Config map[string]string
	// Devices are the instance-local devices (not the expanded ones).
	Devices map[string]map[string]string
	// IPv4 is the first global-scope IPv4 address of eth0 from the instance
	// state; "" when there is none yet or the instance is not running.
	IPv4      string
	Location  string
	CreatedAt time.Time
}

// ExecResult is the outcome of a finished command.
type ExecResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// Server is the set of Incus calls the operator uses.
type Server interface {
	// GetInstance returns the instance with its state; ErrNotFound if absent.
	GetInstance(ctx context.Context, name string) (*Instance, error)
	// ListInstances returns the instances whose own config[configKey] == value.
	ListInstances(ctx context.Context, configKey, value string) ([]Instance, error)
	// UnreadableInstances returns the instances Incus lists without their
	// config, so that ListInstances cannot match them: those on an offline
	// cluster member (Config nil, Status "Error", Location set). None on a
	// standalone server.
	UnreadableInstances(ctx context.Context) ([]Instance, error)
	// CreateInstance creates and starts the instance in one operation and
	// waits for it. ErrAlreadyExists if the name is taken;
	// ErrOperationPending if the wait did not resolve (or a create for that
	// name is still running on the server). A create cut short after the
	// instance exists may leave it stopped: a plain start then boots it as
	// the create would have (the image's create templates apply at its
	// first start).
	CreateInstance(ctx context.Context, spec InstanceSpec) error
	// StartInstance starts the instance; starting a running one is a no-op.
	// ErrOperationPending if another task (e.g. a cut-short create) is still
	// running on the instance.
	StartInstance(ctx context.Context, name string) error
	// StopInstance stops the instance; stopping a stopped one is a no-op.
	// Non-forced stops give the instance 30 s to shut down cleanly.
	StopInstance(ctx context.Context, name string, force bool) error
	// DeleteInstance force-stops the instance if it is running, then deletes
	// it. Returns nil if it is already gone; ErrOperationPending as for
	// StartInstance.
	DeleteInstance(ctx context.Context, name string) error
	// UpdateInstanceDevice merges values into the instance-local device
	// (creating it from the expanded, profile-provided one if needed) with a
	// full PUT guarded by the ETag. volatile.* config keys are preserved. No
	// write happens when the device already has the values.
	UpdateInstanceDevice(ctx context.Context, name, device string, values map[string]string) error
	// WriteFile writes (replaces atomically) a file in the instance, with
	// the given permission bits and owner (negative uid/gid mean 0). A zero
	// mode is treated as 0644. The directory must exist.
	WriteFile(ctx context.Context, instance, path string, content []byte, mode os.FileMode, uid, gid int64) error
	// Exec runs a command (no stdin) and returns its output and exit code.
	// A non-zero exit code is not an error.
	Exec(ctx context.Context, instance string, command []string) (ExecResult, error)
	// ImageProperties reads the properties of the image an alias points to
	// (user.rsf.engine names its engine); exists is false when there is
	// no such alias.
	ImageProperties(ctx context.Context, alias string) (props map[string]string, exists bool, err error)
	ProfileExists(ctx context.Context, name string) (bool, error)
	NetworkExists(ctx context.Context, name string) (bool, error)
	StoragePoolExists(ctx context.Context, name string) (bool, error)
	// NetworkAddressing reads a network's IPv4 plan; ErrNotBridged when it
	// is not a bridge, ErrNoAddressing when Incus does not manage IPv4
	// addresses on it (no ipv4.address).
	NetworkAddressing(ctx context.Context, network string) (Addressing, error)
	// Info describes the server: its version and, when it is a cluster
	// member, the cluster's members.
	Info(ctx context.Context) (ServerInfo, error)
	// ClusterMembers lists the members of the server's Incus cluster, with
	// their status and groups; none on a standalone server.
	ClusterMembers(ctx context.Context) ([]ClusterMember, error)
	// WatchLifecycle follows the lifecycle events of the instances of the
	// connection's project, and the evacuations and restores of the
	// cluster's members (LifecycleEvent): connected is called once the stream is
	// established, then handle for each event, in the calling goroutine. It
	// blocks until ctx ends (returning ctx.Err()) or the stream breaks
	// (returning why); events while no stream runs are lost.
	WatchLifecycle(ctx context.Context, connected func(), handle func(LifecycleEvent)) error
}

// ServerInfo is what an IncusHost's status shows of the server.
type ServerInfo struct {
	Version   string
	Clustered bool
	// Members are the cluster's members, sorted by name.
	Members []ClusterMember
}

// ClusterMember is a member of an Incus cluster.
type ClusterMember struct {
	Name string
	// Status is Incus's: MemberOnline, "Offline", "Evacuated", ...
	Status string
	// Groups are the cluster groups it belongs to.
	Groups []string
}

// MemberOnline is the status of a cluster member that is up and takes
// instances (not offline, not evacuated).
const MemberOnline = "Online"

// Remote is an HTTPS Incus endpoint. All certificates and the key are PEM.
type Remote struct {
	URL string
	// FallbackURLs are other addresses of the same server (an Incus
	// cluster's other members), tried in order after URL.
	FallbackURLs []string
	ClientCert   []byte
	ClientKey    []byte
	// ServerCert is pinned: only a server presenting this certificate is
	// accepted.
	ServerCert []byte
}

// URLs are the remote's addresses in the order they are tried.
func (r *Remote) URLs() []string { return append([]string{r.URL}, r.FallbackURLs...) }

// Options selects the Incus server and project.
type Options struct {
	// Project is the Incus project; "" means the server's default.
	Project string
	// Remote selects HTTPS; nil means the local unix socket.
	Remote *Remote
	// SocketPath is the unix socket; "" means DefaultSocketPath.
	SocketPath string
}

// DefaultSocketPath is the unix socket used when Options.SocketPath is "".
const DefaultSocketPath = "/var/lib/incus/unix.socket"

// CloneDevices deep-copies a device map (device name -> its config).
func CloneDevices(in map[string]map[string]string) map[string]map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]map[string]string, len(in))
	for k, v := range in {
		out[k] = maps.Clone(v)
	}
	return out
}
