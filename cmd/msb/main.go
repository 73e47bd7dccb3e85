// Command msb creates and runs microVM sandboxes for untrusted code.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/msb-go/msb/internal/cli"
	"github.com/msb-go/msb/internal/hostmem"
	"github.com/msb-go/msb/internal/supervisor"
)

func main() {
	// `msb sandbox` is the hidden entry of the sandbox process (the runsc
	// `boot` pattern): msb spawns itself with it, its configuration on an
	// inherited pipe. It is dispatched here so that the CLI package, like
	// the SDK, never links the VMM.
	if len(os.Args) == 2 && os.Args[1] == "sandbox" {
		os.Exit(supervisor.Main(context.Background()))
	}
	// The sandbox process's helper for guest RAM in huge pages, run in a
	// user namespace of its own when it lacks CAP_SYS_ADMIN.
	if len(os.Args) > 1 && os.Args[1] == hostmem.HelperArg {
		os.Exit(hostmem.HelperMain(os.Args[2:]))
	}
	// SIGHUP too (the user's terminal went away): commands then end their
	// sessions and restore the terminal settings instead of dying at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Run(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
