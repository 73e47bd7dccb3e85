package msb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
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
