//go:build !linux

package agent

import (
	"fmt"
	"os"
)

// Main is agentd's entry point. agentd is the init of a Linux guest and
// serves through Linux-only calls (ptys, reaping, netlink), so elsewhere it
// only says so.
func Main() {
	fmt.Fprintln(os.Stderr, "agentd: runs only inside a Linux guest")
	os.Exit(1)
}
