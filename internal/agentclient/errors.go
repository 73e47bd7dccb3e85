package agentclient

import (
	"errors"
	"io/fs"
	"strings"
)

var (
	// ErrClosed reports that the agent or relay went away, or that the
	// Client was closed.
	ErrClosed = errors.New("agentclient: connection closed")
	// ErrSessionFinished reports a write to a session that has ended.
	ErrSessionFinished = errors.New("agentclient: session finished")
	// ErrProtocol reports a reply that breaks the agent protocol.
	ErrProtocol = errors.New("agentclient: protocol violation")
)

// ExecFailedError is a core.exec.failed reply: the command could not be
// started in the guest.
type ExecFailedError struct {
	Kind      string // agentproto.Fail* kind, e.g. "not_found"
	Errno     int    // 0 when the agent sent none
	ErrnoName string // e.g. "ENOENT"; empty when the agent sent none
	Message   string // e.g. `spawn "x": No such file or directory (os error 2)`
	Stage     string // e.g. "execvp"; empty when the agent sent none
}

func (e *ExecFailedError) Error() string {
	s := e.Kind + ": " + e.Message
	if e.ErrnoName != "" {
		s += " (" + e.ErrnoName + ")"
	}
	return s
}

// FsError is a core.fs.response with ok=false.
type FsError struct {
	Op      string // "stat", "read", "write", …
	Path    string // the path, or "src -> dst" for Copy and Rename
	Message string // the agent's error text, e.g. "stat: No such file or directory (os error 2)"
}

// Error returns the agent's message, which names the failed step; callers
// wrap it with the operation and path.
func (e *FsError) Error() string { return e.Message }

// Unwrap maps the agent's error text to the io/fs sentinels, so that
// errors.Is(err, fs.ErrNotExist) works. The text is all the protocol
// carries; it matches both Rust (io::Error) and Go (syscall.Errno) wording.
func (e *FsError) Unwrap() error {
	m := strings.ToLower(e.Message)
	switch {
	case strings.Contains(m, "no such file or directory"), strings.Contains(m, "not found"):
		return fs.ErrNotExist
	case strings.Contains(m, "file exists"):
		return fs.ErrExist
	case strings.Contains(m, "permission denied"), strings.Contains(m, "operation not permitted"):
		return fs.ErrPermission
	}
	return nil
}
