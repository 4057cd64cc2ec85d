package incus

import (
	"context"
	"fmt"
	"sort"

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
	members, err := do(ctx, s.c.GetClusterMembers)
	if err != nil {
		return ServerInfo{}, fmt.Errorf("incus: reading the cluster members: %w", err)
	}
	for _, m := range members {
		info.Members = append(info.Members, fmt.Sprintf("%s (%s)", m.ServerName, m.Status))
	}
	sort.Strings(info.Members)
	return info, nil
}
