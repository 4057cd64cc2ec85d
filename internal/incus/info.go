package incus

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lxc/incus/v6/shared/api"
)

// Info implements Server. It asks the server afresh (not the copy cached
// at connect), so a host's status follows upgrades and cluster changes.
func (s *server) Info(ctx context.Context) (ServerInfo, error) {
	srv, err := do(ctx, func() (*api.Server, error) {
		srv, _, err := s.c.GetServer()
		return srv, err
	})
	if err != nil {
		return ServerInfo{}, fmt.Errorf("incus: reading the server: %w", err)
	}
	info := ServerInfo{Version: srv.Environment.ServerVersion, Clustered: srv.Environment.ServerClustered}
	if !info.Clustered {
		return info, nil
	}
	info.Members, err = s.ClusterMembers(ctx)
	return info, err
}

// ClusterMembers implements Server.
func (s *server) ClusterMembers(ctx context.Context) ([]ClusterMember, error) {
	if !s.c.IsClustered() {
		return nil, nil
	}
	members, err := do(ctx, s.c.GetClusterMembers)
	if err != nil {
		return nil, fmt.Errorf("incus: reading the cluster members: %w", err)
	}
	out := make([]ClusterMember, 0, len(members))
	for _, m := range members {
		out = append(out, ClusterMember{Name: m.ServerName, Status: m.Status, Groups: slices.Clone(m.Groups)})
	}
	slices.SortFunc(out, func(a, b ClusterMember) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
