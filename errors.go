package msb

import (
	"errors"
	"fmt"
	"time"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/sandbox"
)

// Errors reported by the SDK, for errors.Is.
var (
	// ErrNotFound: no sandbox of that name.
	ErrNotFound = sandbox.ErrNotFound
	// ErrExists: a sandbox of that name exists already.
	ErrExists = sandbox.ErrExists
	// ErrRunning: the operation needs a stopped sandbox.
	ErrRunning = sandbox.ErrRunning
	// ErrNotRunning: the operation needs a running sandbox.
	ErrNotRunning = sandbox.ErrNotRunning
	// ErrTimeout: a command ran past its WithTimeout (the error is a
	// *TimeoutError).
	ErrTimeout = errors.New("command timed out")
)

// TimeoutError reports a command killed because it ran past its
// WithTimeout. It matches ErrTimeout.
type TimeoutError struct {
	Cmd     string
	Timeout time.Duration
}

func (e *TimeoutError) Error() string { return fmt.Sprintf("command timed out after %s", e.Timeout) }

// Is reports whether target is ErrTimeout.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// ExitCode is 124, the exit code of a timed-out command in timeout(1) and
// the msb CLI.
func (e *TimeoutError) ExitCode() int { return 124 }

// BootError reports a sandbox that failed to start, with the stage that
// failed (mount, build_vm, config, network, image, other), the errno when
// one is known, and a hint when msb can name the likely fix.
type BootError struct {
	Name    string
	Stage   string
	Errno   *int
	Message string
	Hint    string
}

func (e *BootError) Error() string {
	return fmt.Sprintf("failed to start %q: %s: %s", e.Name, e.Stage, e.Message)
}

// ExecFailed reports a command that could not be started in the guest.
type ExecFailed struct {
	Cmd       string
	Kind      string // not_found, bad_cwd, permission_denied, not_executable, bad_args, resource_limit, out_of_memory, other
	Errno     int
	ErrnoName string
	Message   string
}

func (e *ExecFailed) Error() string { return fmt.Sprintf("exec %q: %s: %s", e.Cmd, e.Kind, e.Message) }

// ExitCode is the conventional shell exit code for a command that could not
// start: 127 not found, 126 not executable or not permitted, else 1.
func (e *ExecFailed) ExitCode() int {
	switch e.Kind {
	case "not_found":
		return 127
	case "permission_denied", "not_executable":
		return 126
	}
	return 1
}

// convertErr maps internal errors to the SDK's error values.
func convertErr(err error) error {
	if err == nil {
		return nil
	}
	var be *sandbox.BootError
	if errors.As(err, &be) {
		return &BootError{Name: be.Name, Stage: string(be.Stage), Errno: be.Errno, Message: be.Message,
			Hint: be.Hint()}
	}
	return err
}

func convertExecErr(cmd string, err error) error {
	var fe *agentclient.ExecFailedError
	if errors.As(err, &fe) {
		return &ExecFailed{Cmd: cmd, Kind: fe.Kind, Errno: fe.Errno, ErrnoName: fe.ErrnoName, Message: fe.Message}
	}
	return err
}
