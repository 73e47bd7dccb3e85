package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/msb-go/msb"
)

// Background commands (`run -d -- CMD`, `exec -d`).
//
// The relay kills every session of a client that disconnects (reference
// §3.4), so a command cannot outlive the msb process that started it. Two
// other designs were set aside: detaching inside the guest (setsid sh -c
// 'CMD' >/dev/null &) loses the output, which reaches exec.log only as the
// frames of an exec session; and a "detached" flag in the agent protocol
// would let a session outlive its client's relay slot, whose ids the
// slot's next client reuses. Instead msb re-executes itself as a small
// helper, in its own session with /dev/null for stdio, that holds the
// connection for as long as CMD runs: the relay logs CMD's output to
// exec.log (`msb logs NAME`) as for any exec, --timeout still applies, and
// the helper exits with CMD, or when the sandbox stops.

// backgroundStarted is the line the helper writes on its stderr pipe once
// CMD runs in the guest, before it closes the pipe.
const backgroundStarted = "\x00msb: started\n"

// backgroundStartTimeout bounds the wait for the helper's report.
const backgroundStartTimeout = 60 * time.Second

// startBackground runs `msb exec --background ARGS…` as a detached helper
// and returns once the command has started in the guest, or with the
// helper's rendered error (and exit code) when it could not.
func startBackground(ctx context.Context, stdio Stdio, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("background command: %w", err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("background command: %w", err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("background command: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, append([]string{"exec", "--background"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("background command: %w", err)
	}
	_ = r.SetReadDeadline(time.Now().Add(backgroundStartTimeout))
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now()) })
	out, rerr := io.ReadAll(r)
	stop()
	if bytes.HasSuffix(out, []byte(backgroundStarted)) {
		stdio.Err.Write(bytes.TrimSuffix(out, []byte(backgroundStarted)))
		// The helper now runs on its own; init reaps it.
		return cmd.Process.Release()
	}
	if rerr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("background command did not report its start: %w", rerr)
	}
	stdio.Err.Write(out)
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return &exitError{code: ee.ExitCode()}
	}
	return &exitError{code: 1}
}

// execBackground is the helper's side: it starts argv, reports the start
// on stdio.Err and closes it, then waits for the command with stdin at EOF
// and its output discarded here (the relay has logged it).
func execBackground(ctx context.Context, stdio Stdio, sb *msb.Sandbox, argv []string, f execFlags) (int, error) {
	ex, err := sb.ExecStream(ctx, argv[0], argv[1:], execOptions(f)...)
	if err != nil {
		return 0, err
	}
	fmt.Fprint(stdio.Err, backgroundStarted)
	if c, ok := stdio.Err.(io.Closer); ok {
		_ = c.Close()
	}
	_ = ex.Stdin().Close()
	go func() { _, _ = io.Copy(io.Discard, ex.Stdout()) }()
	go func() { _, _ = io.Copy(io.Discard, ex.Stderr()) }()
	return ex.Wait()
}
