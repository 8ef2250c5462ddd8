// Command pause is the pod sandbox's init process for the e2e node: it sleeps,
// reaps the children that are re-parented to it, and exits on SIGTERM/SIGINT.
// Built static (CGO_ENABLED=0) by build-node.sh and packed as the image that
// containerd's sandbox_image names; no registry is reachable here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
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
