package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/msb-go/msb"
)

// sandboxName is the sandbox's name in the container's private MSB_HOME.
const sandboxName = "task"

// bootTimeout bounds a sandbox's boot (TCG guests are slow).
const bootTimeout = 5 * time.Minute

// service is the task service of one container. Its methods are called
// concurrently by ttrpc.
type service struct {
	// ctx lives as long as the shim; the guest command's session and the
	// sandbox outlive the RPC that started them.
	ctx      context.Context
	id       string
	home     string // the container's MSB_HOME
	log      *slog.Logger
	events   *publisher
	shutdown func() // stops the server; called at most once

	// mu protects the fields below.
	mu        sync.Mutex
	created   bool
	deleted   bool
	starting  bool
	bundle    string
	rootfs    string
	mounted   bool
	proc      process
	stdin     string
	stdout    string
	stderr    string
	terminal  bool
	sb        *msb.Sandbox
	ex        *msb.Execution
	pid       uint32 // the sandbox process on the host
	status    task.Status
	exitCode  uint32
	exitedAt  time.Time
	exited    chan struct{} // closed when the process has exited
	vmStopped chan struct{} // closed when the sandbox is gone (nil: never booted)
}

var _ taskapi.TTRPCTaskService = (*service)(nil)

func newService(ctx context.Context, id, home string, log *slog.Logger, ev *publisher, shutdown func()) *service {
	return &service{ctx: ctx, id: id, home: home, log: log, events: ev, shutdown: shutdown, exited: make(chan struct{})}
}

// rpcErr converts err for containerd, which maps the gRPC codes back to its
// errdefs (NotFound, NotImplemented, FailedPrecondition…).
func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func notImplemented(op string) error {
	return errgrpc.ToGRPC(fmt.Errorf("msb shim: %s: %w", op, errdefs.ErrNotImplemented))
}

// checkID refuses another container's id and exec processes, which this
// first version of the shim does not run.
func (s *service) checkID(id, execID string) error {
	if id != s.id {
		return fmt.Errorf("task %q: %w (this shim serves %q)", id, errdefs.ErrNotFound, s.id)
	}
	if execID != "" {
		return fmt.Errorf("exec %q: %w", execID, errdefs.ErrNotFound)
	}
	return nil
}

func (s *service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	if r.ID != s.id {
		return nil, rpcErr(fmt.Errorf("create %q: this shim serves %q: %w", r.ID, s.id, errdefs.ErrInvalidArgument))
	}
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, notImplemented("create from checkpoint")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created {
		return nil, rpcErr(fmt.Errorf("create %q: %w", r.ID, errdefs.ErrAlreadyExists))
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create: %w", err))
	}
	p, err := processFromSpec(spec)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create: %w: %w", err, errdefs.ErrInvalidArgument))
	}
	if spec.Root == nil {
		return nil, rpcErr(fmt.Errorf("create: spec has no root: %w", errdefs.ErrInvalidArgument))
	}
	rootfs, err := rootfsPath(r.Bundle, spec.Root.Path)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create: %w", err))
	}
	mounted, err := mountRootfs(rootfs, r.Rootfs)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create: %w", err))
	}
	s.created, s.bundle, s.rootfs, s.mounted, s.proc = true, r.Bundle, rootfs, mounted, p
	s.stdin, s.stdout, s.stderr, s.terminal = r.Stdin, r.Stdout, r.Stderr, r.Terminal
	s.status = task.Status_CREATED
	s.events.publish(topicTaskCreate, &eventstypes.TaskCreate{
		ContainerID: s.id, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskapi.CreateTaskResponse{}, nil
}

// stdio is the container's end of containerd's fifos.
type stdio struct {
	in, out, err io.ReadWriteCloser // nil when containerd gave no path
}

func (st *stdio) Close() {
	for _, f := range []io.Closer{st.in, st.out, st.err} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// openStdio opens the fifos containerd created; containerd's side already
// has them open, so the opens do not wait long.
func openStdio(ctx context.Context, in, out, errPath string, terminal bool) (*stdio, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := &stdio{}
	var err error
	if in != "" {
		if st.in, err = fifo.OpenFifo(ctx, in, syscall.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stdin: %w", err)
		}
	}
	if out != "" {
		if st.out, err = fifo.OpenFifo(ctx, out, syscall.O_WRONLY, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stdout: %w", err)
		}
	}
	// With a terminal, stdout carries both streams, as with runc.
	if errPath != "" && !terminal {
		if st.err, err = fifo.OpenFifo(ctx, errPath, syscall.O_WRONLY, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stderr: %w", err)
		}
	}
	return st, nil
}

func (s *service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	if err := s.checkID(r.ID, r.ExecID); err != nil {
		return nil, rpcErr(err)
	}
	s.mu.Lock()
	if !s.created || s.status != task.Status_CREATED || s.starting {
		st := s.status
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("start: task is %s: %w", st, errdefs.ErrFailedPrecondition))
	}
	s.starting = true
	p, rootfs := s.proc, s.rootfs
	in, out, errPath, terminal := s.stdin, s.stdout, s.stderr, s.terminal
	s.mu.Unlock()

	pid, err := s.boot(ctx, p, rootfs, in, out, errPath, terminal)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.starting = false
	if err != nil {
		return nil, rpcErr(fmt.Errorf("start: %w", err))
	}
	s.events.publish(topicTaskStart, &eventstypes.TaskStart{ContainerID: s.id, Pid: pid})
	return &taskapi.StartResponse{Pid: pid}, nil
}

// boot creates the sandbox, starts the command in it and wires its stdio.
// Preconditions: s.starting is set, s.mu is not held.
func (s *service) boot(ctx context.Context, p process, rootfs, in, out, errPath string, terminal bool) (uint32, error) {
	st, err := openStdio(ctx, in, out, errPath, terminal)
	if err != nil {
		return 0, err
	}
	opts := []msb.Option{msb.WithHome(s.home), msb.WithRootfs(rootfs), msb.WithReplace()}
	if p.Hostname != "" {
		opts = append(opts, msb.WithHostname(p.Hostname))
	}
	bctx, cancel := context.WithTimeout(s.ctx, bootTimeout)
	defer cancel()
	sb, err := msb.Create(bctx, sandboxName, opts...)
	if err != nil {
		st.Close()
		return 0, fmt.Errorf("boot sandbox: %w", err)
	}
	info, err := sb.Info(bctx)
	if err != nil {
		_ = sb.Kill(s.ctx)
		_ = sb.Close()
		st.Close()
		return 0, fmt.Errorf("sandbox info: %w", err)
	}
	eopts := []msb.ExecOption{msb.WithCwd(p.Cwd), msb.WithExecUser(p.User)}
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		eopts = append(eopts, msb.WithExecEnv(k, v))
	}
	if terminal {
		eopts = append(eopts, msb.WithTTY(24, 80))
	}
	vmStopped := make(chan struct{})
	ex, err := sb.ExecStream(s.ctx, p.Args[0], p.Args[1:], eopts...)
	if err != nil {
		// The command could not start (not found…): Start fails, as
		// runc's does, and the task ends with the shell's status so a
		// pending Wait returns.
		st.Close()
		s.mu.Lock()
		s.sb, s.pid, s.vmStopped = sb, uint32(info.PID), vmStopped
		s.mu.Unlock()
		s.exit(exitStatus(0, err))
		go s.stopSandbox(sb, vmStopped)
		return 0, fmt.Errorf("run %s: %w", p.Args[0], err)
	}
	pid := uint32(info.PID)
	s.mu.Lock()
	s.sb, s.ex, s.pid, s.vmStopped = sb, ex, pid, vmStopped
	s.status = task.Status_RUNNING
	s.mu.Unlock()
	go s.run(sb, ex, st, vmStopped)
	return pid, nil
}

// run copies the command's stdio until it exits, records its status, and
// stops the sandbox: a container is over when its process is.
func (s *service) run(sb *msb.Sandbox, ex *msb.Execution, st *stdio, vmStopped chan struct{}) {
	var wg sync.WaitGroup
	if st.in != nil {
		go func() {
			_, _ = io.Copy(ex.Stdin(), st.in)
			_ = ex.Stdin().Close()
		}()
	} else {
		_ = ex.Stdin().Close()
	}
	copyOut := func(w io.Writer, r io.Reader) {
		defer wg.Done()
		if w == nil {
			w = io.Discard
		}
		_, _ = io.Copy(w, r)
	}
	wg.Add(2)
	go copyOut(st.out, ex.Stdout())
	go copyOut(st.err, ex.Stderr())
	code, err := ex.Wait()
	wg.Wait()
	if err != nil {
		s.log.Warn("guest command", "err", err)
	}
	st.Close()
	s.exit(exitStatus(code, err))
	s.stopSandbox(sb, vmStopped)
}

// exit records the process's status once, wakes Wait and publishes
// TaskExit.
func (s *service) exit(status uint32) {
	s.mu.Lock()
	if s.status == task.Status_STOPPED {
		s.mu.Unlock()
		return
	}
	s.status, s.exitCode, s.exitedAt = task.Status_STOPPED, status, time.Now()
	close(s.exited)
	pid, at := s.pid, s.exitedAt
	s.mu.Unlock()
	s.events.publish(topicTaskExit, &eventstypes.TaskExit{
		ContainerID: s.id, ID: s.id, Pid: pid, ExitStatus: status, ExitedAt: timestamppb.New(at),
	})
}

// stopSandbox kills the sandbox (its disk is thrown away with the
// container, so it needs no clean shutdown) and waits for its process.
func (s *service) stopSandbox(sb *msb.Sandbox, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	if err := sb.Kill(ctx); err != nil && !errors.Is(err, msb.ErrNotRunning) {
		s.log.Warn("kill sandbox", "err", err)
	}
	_ = sb.Close()
}

// close stops a sandbox still running when the shim goes (Shutdown with
// Now, SIGTERM) and unmounts the rootfs, so no VM outlives its shim.
func (s *service) close() {
	s.mu.Lock()
	sb, vmStopped, rootfs, mounted, deleted := s.sb, s.vmStopped, s.rootfs, s.mounted, s.deleted
	s.mu.Unlock()
	if sb != nil && vmStopped != nil {
		select {
		case <-vmStopped: // stopped with its process, or by Delete
		default:
			// Killing the sandbox ends the command, and run then
			// stops the sandbox and closes vmStopped.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_ = sb.Kill(ctx)
			cancel()
			<-vmStopped
		}
	}
	if mounted && !deleted {
		if err := unmountRootfs(rootfs); err != nil {
			s.log.Warn("close", "err", err)
		}
	}
}

func (s *service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	if err := s.checkID(r.ID, r.ExecID); err != nil {
		return nil, rpcErr(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.created {
		return nil, rpcErr(fmt.Errorf("state: %w", errdefs.ErrNotFound))
	}
	resp := &taskapi.StateResponse{
		ID: s.id, Bundle: s.bundle, Pid: s.pid, Status: s.status,
		Stdin: s.stdin, Stdout: s.stdout, Stderr: s.stderr, Terminal: s.terminal,
	}
	if s.status == task.Status_STOPPED {
		resp.ExitStatus, resp.ExitedAt = s.exitCode, timestamppb.New(s.exitedAt)
	}
	return resp, nil
}

func (s *service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	if err := s.checkID(r.ID, r.ExecID); err != nil {
		return nil, rpcErr(err)
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
		return nil, rpcErr(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.WaitResponse{ExitStatus: s.exitCode, ExitedAt: timestamppb.New(s.exitedAt)}, nil
}

func (s *service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	if err := s.checkID(r.ID, r.ExecID); err != nil {
		return nil, rpcErr(err)
	}
	s.mu.Lock()
	created, status, ex, starting := s.created, s.status, s.ex, s.starting
	s.mu.Unlock()
	switch {
	case !created:
		return nil, rpcErr(fmt.Errorf("kill: %w", errdefs.ErrNotFound))
	case status == task.Status_STOPPED:
		return nil, rpcErr(fmt.Errorf("kill: process already finished: %w", errdefs.ErrNotFound))
	case starting:
		return nil, rpcErr(fmt.Errorf("kill: task is starting: %w", errdefs.ErrUnavailable))
	case status == task.Status_CREATED:
		// Nothing runs yet: the signal ends the task, as it would end
		// runc's waiting init.
		s.exit(signalStatus(r.Signal))
		return &emptypb.Empty{}, nil
	}
	// The agent signals the command's process group, which is what
	// containerd's All flag asks for too.
	if err := ex.Signal(int(r.Signal)); err != nil {
		return nil, rpcErr(fmt.Errorf("kill: %w", err))
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	if err := s.checkID(r.ID, r.ExecID); err != nil {
		return nil, rpcErr(err)
	}
	s.mu.Lock()
	if !s.created || s.deleted {
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("delete: %w", errdefs.ErrNotFound))
	}
	if s.status == task.Status_RUNNING || s.starting {
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("delete: task is running: %w", errdefs.ErrFailedPrecondition))
	}
	if s.status == task.Status_CREATED {
		// Deleting a task that never started ends it.
		s.mu.Unlock()
		s.exit(signalStatus(uint32(syscall.SIGKILL)))
		s.mu.Lock()
	}
	s.deleted = true
	vmStopped, rootfs, mounted := s.vmStopped, s.rootfs, s.mounted
	pid, code, at := s.pid, s.exitCode, s.exitedAt
	s.mu.Unlock()

	if vmStopped != nil {
		select {
		case <-vmStopped:
		case <-ctx.Done():
			return nil, rpcErr(fmt.Errorf("delete: waiting for the sandbox to stop: %w", ctx.Err()))
		}
	}
	var errs []error
	if mounted {
		errs = append(errs, unmountRootfs(rootfs))
	}
	errs = append(errs, removeHome(s.home))
	if err := errors.Join(errs...); err != nil {
		return nil, rpcErr(fmt.Errorf("delete: %w", err))
	}
	s.events.publish(topicTaskDelete, &eventstypes.TaskDelete{
		ContainerID: s.id, ID: s.id, Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at),
	})
	return &taskapi.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at)}, nil
}

// removeHome removes the container's msb state but keeps the directory
// itself, which holds the shim's socket until the shim exits.
func removeHome(home string) error {
	ents, err := os.ReadDir(home)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove msb state: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == socketName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(home, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove msb state: %w", err)
	}
	return nil
}

func (s *service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.pid}, nil
}

func (s *service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	live := s.created && !s.deleted
	s.mu.Unlock()
	// A shim with a live task stays, unless containerd insists.
	if live && !r.Now {
		return &emptypb.Empty{}, nil
	}
	s.shutdown()
	return &emptypb.Empty{}, nil
}

func (s *service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("resize pty")
}

func (s *service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	return nil, notImplemented("close io")
}

func (s *service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("exec")
}

func (s *service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	return nil, notImplemented("pids")
}

func (s *service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	return nil, notImplemented("stats")
}

func (s *service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("pause")
}

func (s *service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("resume")
}

func (s *service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("checkpoint")
}

func (s *service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("update")
}
