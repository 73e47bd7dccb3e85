// Command containerd-shim-msb-v2 is containerd's runtime v2 shim for msb:
// containerd runs it for the runtime io.containerd.msb.v2, and each container
// becomes a microVM sandbox. See docs/kubernetes.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/msb-go/msb/internal/shim"
)

func main() {
	if err := shim.Main(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-shim-msb-v2: %v\n", err)
		os.Exit(1)
	}
}
