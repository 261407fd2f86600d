// The sandbox ("pause") process of every pod on the strongroom e2e node: it
// holds the pod's namespaces open, reaps orphaned children and exits on
// SIGINT/SIGTERM. No registry is reachable here, so the node cannot pull
// registry.k8s.io/pause; this stands in for it. Standard library only, so it
// builds with a bare `go build pause.go`.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
