// Command pause is the pod sandbox of the image tests' nodes
// (test/harness, KubeCluster): the process that holds a pod's namespaces.
// It waits for SIGTERM or SIGINT and reaps the children it inherits. Built
// here because no registry, and so no registry.k8s.io/pause, is reachable.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 {
				break
			}
		}
	}
}
