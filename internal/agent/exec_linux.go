package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

const (
	termSignal = int32(unix.SIGTERM)
	killSignal = int32(unix.SIGKILL)
)

// defaultPath is the PATH of an exec whose environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxPendingSignals bounds the signals remembered for a session whose child
// has not started yet.
const maxPendingSignals = 16

// session is one exec: a child process in its own process group, its stdin
// queue and output readers.
type session struct {
	id    uint32
	srv   *server
	req   agentproto.ExecRequest
	stdin *stdinQueue

	exited atomic.Bool // the child has been reaped

	// mu protects the fields below.
	mu      sync.Mutex
	pid     int // 0 until started
	done    bool
	pending []int32
	rows    uint16
	cols    uint16
	ptyM    *os.File // PTY master, nil in pipe mode
}

// startExec registers the session synchronously, so that stdin, resize and
// signal frames that follow the request find it, and spawns it in its own
// goroutine.
func (s *server) startExec(m agentproto.Message) {
	var req agentproto.ExecRequest
	if err := m.Decode(&req); err != nil {
		s.sendFailed(m.ID, agentproto.FailOther, nil, fmt.Sprintf("bad exec request: %v", err), "")
		return
	}
	rows, cols := req.TermSize()
	ss := &session{id: m.ID, srv: s, req: req, stdin: newStdinQueue(stdinQueueBytes, s.stdin), rows: rows, cols: cols}
	s.mu.Lock()
	if s.idInUse(m.ID) {
		s.mu.Unlock()
		s.sendFailed(m.ID, agentproto.FailOther, nil, fmt.Sprintf("session id %d already in use", m.ID), "")
		return
	}
	s.sessions[m.ID] = ss
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ss.run()
	}()
}

func (s *server) sendFailed(id uint32, kind string, errno *syscall.Errno, msg, stage string) {
	f := agentproto.ExecFailed{Kind: kind, Message: msg}
	if errno != nil {
		n := int32(*errno)
		name := unix.ErrnoName(*errno)
		f.Errno = &n
		if name != "" {
			f.ErrnoName = &name
		}
	}
	if stage != "" {
		f.Stage = &stage
	}
	s.send(id, agentproto.TypeExecFailed, f)
}

// spawnError is a failure before the child runs.
type spawnError struct {
	kind  string
	errno *syscall.Errno
	stage string
	msg   string
}

func (ss *session) fail(e *spawnError) {
	ss.finish()
	ss.srv.sendFailed(ss.id, e.kind, e.errno, e.msg, e.stage)
}

// finish marks the session done, releases its stdin queue and frees its
// id before the terminal frame goes out, so the host may reuse the id as
// soon as it sees that frame.
func (ss *session) finish() {
	ss.mu.Lock()
	ss.done = true
	ss.mu.Unlock()
	ss.stdin.kill()
	s := ss.srv
	s.mu.Lock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	s.mu.Unlock()
}

func (ss *session) run() {
	sp, serr := ss.prepare()
	if serr != nil {
		ss.fail(serr)
		return
	}
	cio, serr := ss.openIO()
	if serr != nil {
		ss.fail(serr)
		return
	}
	pid, exitc, serr := ss.spawn(sp, cio)
	if serr != nil {
		cio.closeParent()
		ss.fail(serr)
		return
	}

	ss.srv.send(ss.id, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: uint32(pid)})
	ss.mu.Lock()
	ss.pid = pid
	if ss.req.TTY {
		ss.ptyM = cio.stdin
		// A resize that arrived while the child was starting.
		setWinsize(ss.ptyM, ss.rows, ss.cols)
	}
	pending := ss.pending
	ss.pending = nil
	ss.mu.Unlock()
	for _, sig := range pending {
		ss.signal(sig)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ss.writeStdin(cio.stdin, !ss.req.TTY)
	}()
	var rwg sync.WaitGroup
	for i, r := range cio.readers {
		t := agentproto.TypeExecStdout
		if i == 1 {
			t = agentproto.TypeExecStderr
		}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			ss.readOutput(r, t)
		}()
	}

	ws := <-exitc
	// The child is gone: readers get lingerAfterExit to drain what it
	// (or a grandchild) still writes, then stop.
	ss.exited.Store(true)
	for _, r := range cio.readers {
		r.SetReadDeadline(time.Now().Add(lingerAfterExit))
	}
	rwg.Wait()
	ss.finish()
	// Closing also unblocks a stdin write to a grandchild that holds the
	// pipe but does not read.
	cio.closeParent()
	wg.Wait()
	ss.srv.send(ss.id, agentproto.TypeExecExited, agentproto.ExecExited{Code: exitCode(ws)})
}

// childIO holds both ends of a session's stdio. Closing an *os.File twice
// is harmless, which keeps the PTY case (one file in several roles) simple.
type childIO struct {
	child   []*os.File // the child's fds 0, 1, 2; closed in the parent after start
	readers []*os.File // stdout and stderr, or the PTY master
	stdin   *os.File   // the stdin pipe's write end, or the PTY master
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func (c *childIO) closeChild()  { closeFiles(c.child...) }
func (c *childIO) closeParent() { closeFiles(append(c.readers, c.stdin)...) }

// openIO creates three pipes, or a PTY sized as requested.
func (ss *session) openIO() (*childIO, *spawnError) {
	if ss.req.TTY {
		master, slave, err := openPTY()
		if err != nil {
			return nil, errnoFailure(agentproto.FailPTYSetupFailed, "openpty", ss.req.Cmd, err)
		}
		ss.mu.Lock()
		rows, cols := ss.rows, ss.cols
		ss.mu.Unlock()
		if err := setWinsize(master, rows, cols); err != nil {
			closeFiles(master, slave)
			return nil, errnoFailure(agentproto.FailPTYSetupFailed, "winsize", ss.req.Cmd, err)
		}
		return &childIO{child: []*os.File{slave, slave, slave}, readers: []*os.File{master}, stdin: master}, nil
	}
	var p [6]*os.File // r0 w0 r1 w1 r2 w2
	for i := 0; i < len(p); i += 2 {
		r, w, err := sessionPipe(i == 0)
		if err != nil {
			closeFiles(p[:i]...)
			return nil, errnoFailure(classifyErrno(err), "pipe", ss.req.Cmd, err)
		}
		p[i], p[i+1] = r, w
	}
	return &childIO{child: []*os.File{p[0], p[3], p[5]}, readers: []*os.File{p[2], p[4]}, stdin: p[1]}, nil
}

// sessionPipe makes one of a session's stdio pipes. The child's end stays
// blocking and out of the runtime's poller (it only goes to the child);
// agentd's end is non-blocking and polled, so that read deadlines and Close
// interrupt a blocked Read or Write. (os.Pipe and then Fd() to size the
// pipe would put agentd's end back into blocking mode: a background child
// that kept stdout open then held the exit until it ended.) childReads
// says which end is the child's: the read end for stdin.
func sessionPipe(childReads bool) (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	// A pipe of 64 KiB (the default) makes a bulk stream 64 KiB frames
	// with a wake-up on both sides for each; larger pipes let one read
	// fill a whole chunk. Best effort: the size may be capped
	// (fs.pipe-max-size, the user's pipe quota).
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	ours := fds[0]
	if childReads {
		ours = fds[1]
	}
	if err := unix.SetNonblock(ours, true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}

// spawn starts the child in its own process group (pipe mode) or session
// (PTY mode), through the exec shim when there are rlimits, and registers
// it with the reaper. On error the child's ends are closed and, if a
// child was started, it has been reaped.
func (ss *session) spawn(sp *spawnPlan, cio *childIO) (int, <-chan unix.WaitStatus, *spawnError) {
	attr := &syscall.SysProcAttr{Credential: sp.cred, Chroot: sp.root}
	if sp.root != "" {
		// A container's process gets its own mount namespace (made
		// private before the chroot), so what it mounts stays its own.
		attr.Unshareflags = syscall.CLONE_NEWNS
	}
	if ss.req.TTY {
		// The child leads a new session with the PTY as its controlling
		// terminal, so job control and ^C reach its process group.
		attr.Setsid, attr.Setctty, attr.Ctty = true, true, 0
	} else {
		attr.Setpgid = true
	}
	exe, argv, files := sp.path, append([]string{ss.req.Cmd}, ss.req.Args...), cio.child
	var shimR *os.File
	if sp.limits != "" {
		r, w, err := os.Pipe()
		if err != nil {
			cio.closeChild()
			return 0, nil, errnoFailure(classifyErrno(err), "pipe", ss.req.Cmd, err)
		}
		defer r.Close()
		defer w.Close()
		shimR = r
		exe, argv = shimExe, append([]string{shimArg0, sp.limits, sp.path}, argv...)
		files = append(slices.Clone(files), w)
	}
	pid, exitc, err := ss.srv.reaper.spawn(func() (int, error) {
		p, err := withDefaultSlack(func() (*os.Process, error) {
			return os.StartProcess(exe, argv, &os.ProcAttr{Dir: sp.cwd, Env: sp.env, Files: files, Sys: attr})
		})
		if err != nil {
			return 0, err
		}
		pid := p.Pid
		p.Release()
		return pid, nil
	})
	closeFiles(files...)
	if err != nil {
		return 0, nil, errnoFailure(classifyErrno(err), "spawn", ss.req.Cmd, err)
	}
	if shimR != nil {
		// Wait for the shim's exec, so that a failing setrlimit or execve
		// becomes core.exec.failed like any other spawn error.
		if stage, err := readShimReport(shimR); err != nil {
			<-exitc
			failStage := "execvp"
			if stage == shimStageRlimit {
				failStage = "setrlimit"
			}
			return 0, nil, errnoFailure(classifyErrno(err), failStage, ss.req.Cmd, err)
		}
	}
	return pid, exitc, nil
}

// pipeSize is the buffer size asked for the pipes of a session's stdin,
// stdout and stderr: outputBufs output chunks, so that a child that writes
// faster than the host drains fills whole frames, several to a read. The
// kernel allocates a pipe's pages as they are written, so a quiet pipe
// costs no more than the default one.
const pipeSize = outputBufs * agentproto.MaxExecChunk

// outputBufs is the most chunks one read of a child's output fills. Each
// time agentd drains the pipe the child wakes, and each switch between
// the two processes changes address space, which under TCG flushes the
// whole emulated TLB. Draining 1 MiB at a time instead of 256 KiB, a
// 256 MiB stdout in a TCG guest made 2250 context switches instead of
// 3750 and took 475 ms of QEMU's CPU instead of 520 (medians of 8
// alternating runs; 8 chunks and a 2 MiB pipe gained nothing more).
const outputBufs = 4

// readOutput forwards r to the host in chunks of at most MaxExecChunk bytes.
// Once the child has exited, every read gets a deadline of lingerAfterExit,
// renewed before each read so that time spent blocked on a full output
// queue never cuts the drain short.
//
// The chunks are read into pooled bulk buffers, which the console writer
// gives back: with a fresh 128 KiB buffer per chunk (the old way) zeroing
// and faulting in the buffers on each hop held a 256 MiB stdout to
// 290 MB/s where fs.data moved 600. A read fills one buffer, or up to
// outputBufs once a read has filled one (a bulk stream), so that a
// session whose child writes a line at a time holds a single buffer.
func (ss *session) readOutput(r *os.File, t agentproto.Type) {
	rc, err := r.SyscallConn()
	if err != nil {
		ss.srv.log.Error("exec output", "id", ss.id, "err", err)
		return
	}
	var bufs [outputBufs][]byte
	defer func() {
		for _, b := range bufs {
			if b != nil {
				agentproto.PutBulk(b)
			}
		}
	}()
	var iov [outputBufs][]byte
	want := 1
	for {
		if ss.exited.Load() {
			r.SetReadDeadline(time.Now().Add(lingerAfterExit))
		}
		for i := range want {
			if bufs[i] == nil {
				bufs[i] = agentproto.GetBulk()
			}
			// Read straight into the frames: a full chunk goes out
			// without a copy.
			iov[i] = bufs[i][agentproto.DataHeadroom:]
		}
		n, err := readv(rc, iov[:want])
		if n >= len(iov[0]) {
			want = outputBufs
		} else if want > 1 {
			want = 1
			for i := 1; i < outputBufs; i++ {
				if bufs[i] != nil {
					agentproto.PutBulk(bufs[i])
					bufs[i] = nil
				}
			}
		}
		for i := 0; n > 0; i++ {
			m := min(n, len(iov[i]))
			if !ss.srv.sendData(ss.id, t, bufs[i], m) {
				bufs[i] = nil
			}
			n -= m
		}
		if err != nil {
			// EOF (pipe), EIO (PTY without slave), deadline or close.
			return
		}
	}
}

// readv reads into iov through the runtime's poller, so that read
// deadlines and Close interrupt it as they do os.File.Read. A read of
// nothing is io.EOF.
func readv(rc syscall.RawConn, iov [][]byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Readv(int(fd), iov)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, os.NewSyscallError("readv", rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// writeStdin copies the stdin queue to w. In pipe mode EOF closes w; in PTY
// mode EOF is a no-op (reference §3.2), w is the master and stays open.
//
// It writes every chunk queued (up to stdinBatch) with one writev: each
// write wakes the child, and under TCG every switch between agentd and the
// child flushes the emulated TLB, so a bulk stdin moved 256 KiB a write
// paid for four times the switches of one moved 1 MiB a write (the size
// of the pipe, see pipeSize).
func (ss *session) writeStdin(w *os.File, closeOnEOF bool) {
	rc, err := w.SyscallConn()
	if err != nil {
		ss.srv.log.Error("exec stdin", "id", ss.id, "err", err)
		ss.stdin.kill()
		return
	}
	var batch [stdinBatch]stdinChunk
	var iov [stdinBatch][]byte
	for {
		n, eof, ok := ss.stdin.popBatch(batch[:])
		if !ok {
			return
		}
		if eof {
			if closeOnEOF {
				w.Close()
			}
			return
		}
		for i := range n {
			iov[i] = batch[i].data
		}
		err := writev(rc, iov[:n])
		for i := range n {
			batch[i].release()
			batch[i], iov[i] = stdinChunk{}, nil
		}
		if err != nil {
			ss.stdin.kill()
			return
		}
	}
}

// stdinBatch is the most stdin chunks one write takes: a pipe's worth.
const stdinBatch = outputBufs

// writev writes all of iov through the runtime's poller, so that Close
// interrupts it as it does os.File.Write; a short write goes on with the
// rest.
func writev(rc syscall.RawConn, iov [][]byte) error {
	for len(iov) > 0 {
		var n int
		var werr error
		err := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = unix.Writev(int(fd), iov)
				if werr != unix.EINTR {
					return werr != unix.EAGAIN
				}
			}
		})
		if err != nil {
			return err
		}
		if werr != nil {
			return os.NewSyscallError("writev", werr)
		}
		for n > 0 {
			m := min(n, len(iov[0]))
			iov[0] = iov[0][m:]
			n -= m
			if len(iov[0]) == 0 {
				iov = iov[1:]
			}
		}
		for len(iov) > 0 && len(iov[0]) == 0 {
			iov = iov[1:]
		}
	}
	return nil
}

func (ss *session) resize(rows, cols uint16) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if rows == 0 || cols == 0 {
		return
	}
	ss.rows, ss.cols = rows, cols
	if ss.ptyM != nil && !ss.done {
		setWinsize(ss.ptyM, rows, cols)
	}
}

// signal sends sig to the session's process group (the child leads it), or
// remembers it until the child has started.
func (ss *session) signal(sig int32) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.done || sig < 0 || sig > 64 {
		return
	}
	if ss.pid == 0 {
		if len(ss.pending) < maxPendingSignals {
			ss.pending = append(ss.pending, sig)
		}
		return
	}
	unix.Kill(-ss.pid, syscall.Signal(sig))
}

func exitCode(ws unix.WaitStatus) int32 {
	switch {
	case ws.Exited():
		return int32(ws.ExitStatus())
	case ws.Signaled():
		return 128 + int32(ws.Signal())
	}
	return -1
}

// spawnPlan is everything resolved before fork.
type spawnPlan struct {
	path string
	cwd  string
	env  []string
	cred *syscall.Credential
	// limits are the per-exec rlimits in the exec shim's format; "" = none
	// (no shim).
	limits string
	// root is the directory the child is chrooted to; "" = the guest's
	// root. path and cwd are inside it.
	root string
}

// prepare resolves user, environment, cwd and executable. The cwd is checked
// first so that a missing cwd is reported as bad_cwd, not as the ENOENT of
// the chdir in the forked child (which 0.4.4 reported as not_found).
func (ss *session) prepare() (*spawnPlan, *spawnError) {
	req := ss.req
	if req.Cmd == "" {
		return nil, &spawnError{kind: agentproto.FailBadArgs, stage: "spawn", msg: `spawn "": empty command`}
	}
	for _, s := range append(append([]string{req.Cmd}, req.Args...), req.Env...) {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, &spawnError{kind: agentproto.FailBadArgs, stage: "spawn", msg: fmt.Sprintf("spawn %q: argument contains NUL", req.Cmd)}
		}
	}
	for _, kv := range req.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, &spawnError{kind: agentproto.FailBadArgs, stage: "spawn", msg: fmt.Sprintf("spawn %q: env entry %q: want K=V", req.Cmd, truncate(kv, 64))}
		}
	}
	limits, err := formatShimLimits(req.Rlimits)
	if err != nil {
		return nil, &spawnError{kind: agentproto.FailBadArgs, stage: "setrlimit", msg: fmt.Sprintf("spawn %q: %v", req.Cmd, err)}
	}
	spec := ss.srv.opts.DefaultUser
	if req.User != nil && *req.User != "" {
		spec = *req.User
	}
	if spec == "" {
		spec = "0"
	}
	root := ""
	if req.Root != nil && *req.Root != "" {
		root = *req.Root
		if err := checkRoot(root); err != nil {
			return nil, errnoFailure(agentproto.FailBadArgs, "root", req.Cmd, err)
		}
		if err := prepareRoot(root); err != nil {
			return nil, errnoFailure(agentproto.FailOther, "root", req.Cmd, err)
		}
	}
	passwdFile, groupFile := ss.srv.opts.passwdFile, ss.srv.opts.groupFile
	if root != "" {
		// The root's own accounts; a root without them has none (numeric
		// users only).
		passwdFile, groupFile = rootAccountFile(root, passwdPath), rootAccountFile(root, groupPath)
	}
	cred, err := resolveUser(spec, passwdFile, groupFile)
	if err != nil {
		return nil, &spawnError{kind: agentproto.FailUserSetupFailed, stage: "user", msg: fmt.Sprintf("spawn %q: %v", req.Cmd, err)}
	}
	env := buildEnv(ss.srv.opts.Env, req.Env, cred.Home, req.TTY)

	cwd := "/"
	if req.Cwd != nil && *req.Cwd != "" {
		cwd = *req.Cwd
	}
	checkCwd := cwd
	if root != "" {
		checkCwd, err = inRoot(root, cwd)
		if err != nil {
			return nil, errnoFailure(agentproto.FailBadCwd, "chdir", req.Cmd, err)
		}
	}
	if fi, err := os.Stat(checkCwd); err != nil {
		e := errnoFailure(agentproto.FailBadCwd, "chdir", req.Cmd, err)
		return nil, e
	} else if !fi.IsDir() {
		en := syscall.ENOTDIR
		return nil, &spawnError{kind: agentproto.FailBadCwd, errno: &en, stage: "chdir", msg: fmt.Sprintf("spawn %q: cwd %s: %v", req.Cmd, cwd, en)}
	}

	exe, err := lookPath(req.Cmd, envValue(env, "PATH"), cwd, root)
	if err != nil {
		return nil, errnoFailure(classifyErrno(err), "execvp", req.Cmd, err)
	}
	var c *syscall.Credential
	if cred.UID != uint32(os.Getuid()) || cred.GID != uint32(os.Getgid()) || len(cred.Groups) > 0 || req.User != nil || ss.srv.opts.DefaultUser != "" {
		c = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
	}
	return &spawnPlan{path: exe, cwd: cwd, env: env, cred: c, limits: limits, root: root}, nil
}

// errnoFailure builds a spawn failure whose message is `spawn "<cmd>": <os
// error>`; kind is used as given.
func errnoFailure(kind, stage, cmd string, err error) *spawnError {
	e := &spawnError{kind: kind, stage: stage, msg: fmt.Sprintf("spawn %q: %v", cmd, osErrorText(err))}
	var en syscall.Errno
	if errors.As(err, &en) {
		e.errno = &en
	}
	return e
}

// osErrorText strips Go's "fork/exec <path>: " wrapping, keeping the errno text.
func osErrorText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Op == "fork/exec" {
		return pe.Err.Error()
	}
	return err.Error()
}

// classifyErrno maps an errno to an ExecFailed kind (reference §6.3).
func classifyErrno(err error) string {
	var en syscall.Errno
	if !errors.As(err, &en) {
		return agentproto.FailOther
	}
	switch en {
	case unix.ENOENT:
		return agentproto.FailNotFound
	case unix.ENOTDIR:
		return agentproto.FailBadCwd
	case unix.EACCES, unix.EPERM:
		return agentproto.FailPermission
	case unix.ENOEXEC, unix.EISDIR, unix.ETXTBSY:
		return agentproto.FailNotExecutable
	case unix.E2BIG, unix.ELOOP, unix.ENAMETOOLONG, unix.EFAULT:
		return agentproto.FailBadArgs
	case unix.EMFILE, unix.ENFILE, unix.EAGAIN:
		return agentproto.FailResourceLimit
	case unix.ENOMEM:
		return agentproto.FailOutOfMemory
	}
	return agentproto.FailOther
}

// lookPath resolves cmd like execvp: a name with a slash is used as is
// (relative to cwd), otherwise PATH is searched; a candidate that exists
// but is not executable gives EACCES when nothing better is found. With a
// root, candidates are looked up inside it (see inRoot) and the path
// returned is the one the chrooted child executes.
func lookPath(cmd, pathEnv, cwd, root string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	var firstErr error = syscall.ENOENT
	for dir := range strings.SplitSeq(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		cand := path.Join(dir, cmd)
		check := cand
		if !path.IsAbs(check) {
			check = path.Join(cwd, check)
		}
		if root != "" {
			var err error
			if check, err = inRoot(root, check); err != nil {
				continue
			}
		}
		fi, err := os.Stat(check)
		if err != nil {
			continue
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			if !path.IsAbs(cand) && !strings.HasPrefix(cand, ".") {
				cand = "./" + cand
			}
			return cand, nil
		}
		if firstErr == syscall.ENOENT {
			firstErr = syscall.EACCES
		}
	}
	return "", firstErr
}

// buildEnv overlays the request env on the default env, prepends the
// scripts dir to PATH, sets HOME from passwd unless the request gives it and
// TERM for a TTY unless the request gives it.
func buildEnv(base, req []string, home string, tty bool) []string {
	env := MergeEnv(base, req)
	var extra []string
	if p, ok := lookupEnv(env, "PATH"); ok && p != "" {
		if p != scriptsDir && !strings.HasPrefix(p, scriptsDir+":") {
			extra = append(extra, "PATH="+scriptsDir+":"+p)
		}
	} else {
		extra = append(extra, "PATH="+scriptsDir+":"+defaultPath)
	}
	if _, ok := lookupEnv(req, "HOME"); !ok {
		if home == "" {
			if _, ok := lookupEnv(env, "HOME"); !ok {
				extra = append(extra, "HOME=/")
			}
		} else {
			extra = append(extra, "HOME="+home)
		}
	}
	if _, ok := lookupEnv(req, "TERM"); tty && !ok {
		extra = append(extra, "TERM=xterm")
	}
	return MergeEnv(env, extra)
}

func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func envValue(env []string, key string) string {
	v, _ := lookupEnv(env, key)
	return v
}
