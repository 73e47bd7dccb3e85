package msb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/msb-go/msb"
)

// A sandbox from a root directory, one command, and clean-up.
func ExampleCreate() {
	ctx := context.Background()
	sb, err := msb.Create(ctx, "", msb.WithRootfs("./rootfs"), msb.WithMemory(256))
	if err != nil {
		var be *msb.BootError
		if errors.As(err, &be) {
			log.Fatalf("%s failed at %s: %s (hint: %s)", be.Name, be.Stage, be.Message, be.Hint)
		}
		log.Fatal(err)
	}
	defer msb.Remove(ctx, sb.Name(), true)
	defer sb.Close()

	res, err := sb.Exec(ctx, "sh", []string{"-c", "echo hello; exit 3"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s exit=%d\n", res.Stdout, res.ExitCode)
}

// Streaming stdin to a command and reading its output as it comes.
func ExampleSandbox_ExecStream() {
	ctx := context.Background()
	sb, err := msb.Get(ctx, "dev")
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	ex, err := sb.ExecStream(ctx, "wc", []string{"-l"})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		fmt.Fprint(ex.Stdin(), strings.Repeat("line\n", 1000))
		ex.Stdin().Close()
	}()
	out, _ := io.ReadAll(ex.Stdout())
	code, err := ex.Wait()
	fmt.Println(strings.TrimSpace(string(out)), code, err)
}

// An interactive shell on the user's terminal, as `msb attach` does: raw
// mode, resizes, and Ctrl-] to detach.
func ExampleSandbox_Attach() {
	ctx := context.Background()
	sb, err := msb.Get(ctx, "dev")
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	res, err := sb.Attach(ctx, msb.WithTerminal(os.Stdin, os.Stdout), msb.WithDetachKeys("ctrl-p,ctrl-q"))
	switch {
	case errors.Is(err, msb.ErrNotTerminal):
		fmt.Println("stdin is not a terminal: use Exec or Shell")
	case err != nil:
		log.Fatal(err)
	case res.Detached:
		fmt.Println("detached; dev keeps running")
	default:
		fmt.Println("shell exited with", res.ExitCode)
	}
}

// A script through the shell, and keeping an idle-limited sandbox up while
// work elsewhere goes on.
func ExampleSandbox_Shell() {
	ctx := context.Background()
	sb, err := msb.Get(ctx, "dev")
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	res, err := sb.Shell(ctx, "cd /tmp && echo $((6 * 7)) > answer && cat answer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", res.Stdout)
	if err := sb.Touch(ctx); err != nil {
		log.Fatal(err)
	}
}
