package agentproto

// Capabilities an agent may advertise in Ready.Capabilities.
const (
	CapExecPTY = "exec.pty"
	CapFs      = "fs"
	// CapFsMeta: the agent fills FsEntry.Target and takes the Symlink and
	// SetAttr fs operations.
	CapFsMeta = "fs.meta"
	// CapVsock: the agent listens on vsock port AgentVsockPort and takes
	// the frame stream there (transport upgrade). An agent advertises it
	// only while it is listening, so a host never dials a port nobody
	// serves.
	//
	// The host may then connect a vsock stream to AgentVsockPort and move
	// the whole frame stream onto it. There is no message for the switch:
	// the first frame on the new stream is simply whatever comes next.
	// From the moment the connection is made the host writes every frame
	// to it and nothing more to the console; the agent, once it has
	// adopted the connection, writes every later frame to it (frames it
	// queued before still leave on the console, in order). The host
	// connects before it forwards any client frame, so no request or reply
	// is in flight across the switch and neither side needs anything more
	// from the console. The agent adopts only the first connection, and
	// only from the host (CID 2); frames arriving on the console after the
	// switch are a host protocol violation and are discarded.
	CapVsock = "transport.vsock"
	// CapExecRoot: the agent runs an exec request's command chrooted to
	// ExecRequest.Root. An agent without it would run the command in the
	// guest's own root, so a host must not send Root to it.
	CapExecRoot = "exec.root"
)

// AgentVsockPort is the guest vsock port agentd listens on for the
// transport upgrade (CapVsock).
const AgentVsockPort uint32 = 1024

// Ready is the core.ready payload, sent by agentd with id 0 once it can take
// requests. Times are CLOCK_BOOTTIME nanoseconds.
type Ready struct {
	BootTimeNs  uint64 `cbor:"boot_time_ns"`  // at kernel start (0)
	InitTimeNs  uint64 `cbor:"init_time_ns"`  // when agentd started
	ReadyTimeNs uint64 `cbor:"ready_time_ns"` // when ready was sent
	// ProtocolVersion is an msb extension; 0 (absent) means a 0.4.4 agent.
	ProtocolVersion uint32 `cbor:"protocol_version"`
	// Capabilities is an msb extension, e.g. CapExecPTY; absent from 0.4.4.
	Capabilities []string `cbor:"capabilities"`
	// InitStages is an msb extension: when agentd finished each step of
	// its init, for the host's boot timeline (msb run --timings). At most
	// MaxInitStages are read; the host treats them as hints only.
	InitStages []InitStage `cbor:"init_stages,omitempty"`
}

// InitStage is one step of agentd's init and the CLOCK_BOOTTIME nanoseconds
// at which it ended.
type InitStage struct {
	Name string `cbor:"name"`
	Ns   uint64 `cbor:"ns"`
}

// MaxInitStages bounds how many init stages a host takes from core.ready,
// and MaxInitStageName the length of a name it keeps.
const (
	MaxInitStages    = 32
	MaxInitStageName = 64
)

// Has reports whether the agent advertised capability c.
func (r Ready) Has(c string) bool {
	for _, x := range r.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// Default terminal size when an ExecRequest leaves Rows or Cols zero.
const (
	DefaultRows = 24
	DefaultCols = 80
)

// ExecRequest is the core.exec.request payload.
type ExecRequest struct {
	Cmd     string   `cbor:"cmd"`
	Args    []string `cbor:"args"`
	Env     []string `cbor:"env"` // "K=V"
	Cwd     *string  `cbor:"cwd"`
	User    *string  `cbor:"user"`
	TTY     bool     `cbor:"tty"`
	Rows    uint16   `cbor:"rows"` // DefaultRows when zero
	Cols    uint16   `cbor:"cols"` // DefaultCols when zero
	Rlimits []Rlimit `cbor:"rlimits"`
	// Root, if set, is a guest directory the command runs chrooted to, as
	// a container of a pod (CapExecRoot); Cmd, Cwd and User resolve inside
	// it. Agents mount /proc, /sys and /dev there on first use.
	Root *string `cbor:"root,omitempty"`
}

// TermSize returns the requested terminal size with defaults applied.
func (r ExecRequest) TermSize() (rows, cols uint16) {
	rows, cols = r.Rows, r.Cols
	if rows == 0 {
		rows = DefaultRows
	}
	if cols == 0 {
		cols = DefaultCols
	}
	return rows, cols
}

// ExecStarted is the core.exec.started payload.
type ExecStarted struct {
	PID uint32 `cbor:"pid"`
}

// ExecData is the payload of core.exec.stdin, core.exec.stdout,
// core.exec.stderr and core.fs.data. Empty Data on stdin or fs.data means EOF.
type ExecData struct {
	Data []byte `cbor:"data"`
}

// FsData is the core.fs.data payload.
type FsData = ExecData

// ExecExited is the core.exec.exited payload.
type ExecExited struct {
	// Code is the exit status, or 128+signal when killed by a signal
	// (0.4.4 agentd sends -1 for a signal).
	Code int32 `cbor:"code"`
}

// Kinds of ExecFailed (reference §6.3).
const (
	FailNotFound        = "not_found"
	FailBadCwd          = "bad_cwd"
	FailPermission      = "permission_denied"
	FailNotExecutable   = "not_executable"
	FailBadArgs         = "bad_args"
	FailResourceLimit   = "resource_limit"
	FailOutOfMemory     = "out_of_memory"
	FailUserSetupFailed = "user_setup_failed"
	FailPTYSetupFailed  = "pty_setup_failed"
	FailOther           = "other"
)

// ExecFailed is the core.exec.failed payload: the command could not start.
type ExecFailed struct {
	Kind      string  `cbor:"kind"`       // one of the Fail* kinds
	Errno     *int32  `cbor:"errno"`      // e.g. 2
	ErrnoName *string `cbor:"errno_name"` // e.g. "ENOENT"
	Message   string  `cbor:"message"`    // `spawn "<cmd>": <os error>`
	Stage     *string `cbor:"stage"`      // fork, execvp, Command::spawn
}

// ExecResize is the core.exec.resize payload.
type ExecResize struct {
	Rows uint16 `cbor:"rows"`
	Cols uint16 `cbor:"cols"`
}

// ExecSignal is the core.exec.signal payload.
type ExecSignal struct {
	Signal int32 `cbor:"signal"`
}

// FsRequest is the core.fs.request payload.
type FsRequest struct {
	Op FsOp `cbor:"op"`
}

// FsResponse is the core.fs.response payload.
type FsResponse struct {
	OK    bool          `cbor:"ok"`
	Error *string       `cbor:"error"`
	Data  *FsResultData `cbor:"data"`
}

// FsEntry describes one file system object (from lstat).
type FsEntry struct {
	Path     string `cbor:"path"`
	Kind     string `cbor:"kind"` // file dir symlink other
	Size     uint64 `cbor:"size"`
	Mode     uint32 `cbor:"mode"`     // st_mode
	Modified *int64 `cbor:"modified"` // unix seconds
	// Target is a symlink's target; an msb extension (CapFsMeta), empty
	// from a 0.4.4 agent.
	Target string `cbor:"target,omitempty"`
}
