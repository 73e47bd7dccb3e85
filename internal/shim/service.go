package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/msb-go/msb"
)

// sandboxName is the sandbox's name in the shim's private MSB_HOME.
const sandboxName = "task"

// bootTimeout bounds a sandbox's boot (TCG guests are slow).
const bootTimeout = 5 * time.Minute

// service is the task service of one shim: a single container (ctr run),
// or a Kubernetes pod — its sandbox container, whose start boots the VM, and
// the containers the CRI adds to it, which run in the same guest, each
// chrooted to its own root (see pod.go). Its methods are called
// concurrently by ttrpc.
type service struct {
	// ctx lives as long as the shim; the guest commands' sessions and the
	// sandbox outlive the RPC that started them.
	ctx      context.Context
	id       string // the task the shim was started for
	home     string // the shim's MSB_HOME
	log      *slog.Logger
	events   *publisher
	shutdown func() // stops the server; called at most once

	// mu protects the fields below and those of every container and proc.
	mu        sync.Mutex
	tasks     map[string]*container // live (created, not deleted) tasks
	pod       string                // the pod's sandbox container ("": no pod)
	sb        *msb.Sandbox
	pid       uint32        // the sandbox process on the host
	vmStopped chan struct{} // closed when the sandbox is gone (nil: never booted)
}

// container is one task: its bundle, its root and its processes.
type container struct {
	id     string
	role   role
	bundle string
	rootfs string
	// mounted: the shim mounted rootfs (and must unmount it); shared: it
	// is bound into the pod's share too (a pod container).
	mounted, shared bool
	// vcpus and memMiB size the VM a container that owns it boots (0:
	// msb's defaults); see vmSize.
	vcpus, memMiB int
	init          *proc
	execs         map[string]*proc
}

// role says how a container uses the VM.
type role int

const (
	// roleAlone: a container on its own (ctr run): its root is the VM's,
	// its init's exit stops the VM.
	roleAlone role = iota
	// rolePodSandbox: a pod's sandbox (pause) container: as roleAlone, and
	// the VM also serves the pod's share for the containers to come.
	rolePodSandbox
	// rolePodContainer: a container of the pod: its processes run in the
	// VM chrooted to its root, served through the pod's share; its exit
	// ends only itself.
	rolePodContainer
)

// ownsVM reports whether the container's init boots and stops the VM.
func (c *container) ownsVM() bool { return c.role != rolePodContainer }

// proc is one process of a container: the init process (execID "") or an
// exec'd one. Its fields are guarded by service.mu.
type proc struct {
	execID                string
	spec                  process
	stdin, stdout, stderr string
	terminal              bool

	starting bool
	ex       *msb.Execution
	// stdinHold is the shim's own write end of the stdin fifo (see
	// stdio.inHold); CloseIO closes it. nil without a stdin fifo.
	stdinHold io.Closer
	// stdinClosed records a CloseIO that came before Start (ctr sends it
	// as soon as its own stdin ends, which for /dev/null is at once).
	stdinClosed bool
	pid         uint32 // the init: the sandbox process; an exec: its guest pid
	status      task.Status
	exitCode    uint32
	exitedAt    time.Time
	exited      chan struct{} // closed when the process has exited
}

func newProc(execID string, spec process, stdin, stdout, stderr string, terminal bool) *proc {
	return &proc{execID: execID, spec: spec, stdin: stdin, stdout: stdout, stderr: stderr, terminal: terminal,
		status: task.Status_CREATED, exited: make(chan struct{})}
}

var _ taskapi.TTRPCTaskService = (*service)(nil)

func newService(ctx context.Context, id, home string, log *slog.Logger, ev *publisher, shutdown func()) *service {
	return &service{ctx: ctx, id: id, home: home, log: log, events: ev, shutdown: shutdown, tasks: map[string]*container{}}
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

// lookup returns task id and its process execID.
// Preconditions: s.mu is held.
func (s *service) lookup(id, execID string) (*container, *proc, error) {
	c, ok := s.tasks[id]
	if !ok {
		return nil, nil, fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %q: %w", execID, errdefs.ErrNotFound)
	}
	return c, p, nil
}

func (s *service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, notImplemented("create from checkpoint")
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create: %w", err))
	}
	rl, podID, err := podRole(spec)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create %q: %w: %w", r.ID, err, errdefs.ErrInvalidArgument))
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[r.ID]; ok {
		return nil, rpcErr(fmt.Errorf("create %q: %w", r.ID, errdefs.ErrAlreadyExists))
	}
	switch {
	case rl != rolePodContainer && r.ID != s.id:
		return nil, rpcErr(fmt.Errorf("create %q: this shim serves %q: %w", r.ID, s.id, errdefs.ErrInvalidArgument))
	case rl == rolePodContainer && (s.pod == "" || podID != s.pod):
		return nil, rpcErr(fmt.Errorf("create %q: its pod %q is not the one this shim serves (%q): %w", r.ID, podID, s.pod, errdefs.ErrInvalidArgument))
	case rl == rolePodContainer && !validTaskID(r.ID):
		return nil, rpcErr(fmt.Errorf("create %q: not a container id: %w", r.ID, errdefs.ErrInvalidArgument))
	}
	mounted, err := mountRootfs(rootfs, r.Rootfs)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("create: %w", err))
	}
	c := &container{id: r.ID, role: rl, bundle: r.Bundle, rootfs: rootfs, mounted: mounted, execs: map[string]*proc{}}
	c.vcpus, c.memMiB = vmSize(spec, rl)
	switch rl {
	case rolePodSandbox:
		if err := makePodShare(s.home); err != nil {
			s.undoCreate(c)
			return nil, rpcErr(fmt.Errorf("create: %w", err))
		}
		s.pod = r.ID
	case rolePodContainer:
		if err := shareRoot(s.home, r.ID, rootfs); err != nil {
			s.undoCreate(c)
			return nil, rpcErr(fmt.Errorf("create: %w", err))
		}
		c.shared = true
	}
	c.init = newProc("", p, r.Stdin, r.Stdout, r.Stderr, r.Terminal)
	s.tasks[r.ID] = c
	s.events.publish(topicTaskCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskapi.CreateTaskResponse{}, nil
}

// undoCreate unmounts what a failed Create mounted.
func (s *service) undoCreate(c *container) {
	if c.mounted {
		if err := unmountRootfs(c.rootfs); err != nil {
			s.log.Warn("create: undo", "err", err)
		}
	}
}

// Exec adds a process to a running container; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	if r.ExecID == "" {
		return nil, rpcErr(fmt.Errorf("exec: no exec id: %w", errdefs.ErrInvalidArgument))
	}
	if r.Spec == nil {
		return nil, rpcErr(fmt.Errorf("exec: no process spec: %w", errdefs.ErrInvalidArgument))
	}
	var ps specs.Process
	// containerd sends the process as JSON in an Any
	// (types.containerd.io/opencontainers/runtime-spec/1/Process).
	if err := json.Unmarshal(r.Spec.Value, &ps); err != nil {
		return nil, rpcErr(fmt.Errorf("exec: parse process spec: %w: %w", err, errdefs.ErrInvalidArgument))
	}
	p, err := processFromSpec(&specs.Spec{Process: &ps})
	if err != nil {
		return nil, rpcErr(fmt.Errorf("exec: %w: %w", err, errdefs.ErrInvalidArgument))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, init, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, rpcErr(fmt.Errorf("exec: %w", err))
	}
	if init.status != task.Status_RUNNING {
		return nil, rpcErr(fmt.Errorf("exec: task is %s: %w", init.status, errdefs.ErrFailedPrecondition))
	}
	if _, ok := c.execs[r.ExecID]; ok {
		return nil, rpcErr(fmt.Errorf("exec %q: %w", r.ExecID, errdefs.ErrAlreadyExists))
	}
	c.execs[r.ExecID] = newProc(r.ExecID, p, r.Stdin, r.Stdout, r.Stderr, r.Terminal)
	s.events.publish("/tasks/exec-added", &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return &emptypb.Empty{}, nil
}

func (s *service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	s.mu.Lock()
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("start: %w", err))
	}
	if p.status != task.Status_CREATED || p.starting {
		st := p.status
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("start: process is %s: %w", st, errdefs.ErrFailedPrecondition))
	}
	sb := s.sb
	boots := p.execID == "" && c.ownsVM()
	switch {
	case p.execID != "" && (sb == nil || c.init.status != task.Status_RUNNING):
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("start exec: task is not running: %w", errdefs.ErrFailedPrecondition))
	case !boots && sb == nil:
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("start: the pod's sandbox is not running: %w", errdefs.ErrFailedPrecondition))
	case boots && sb != nil:
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("start: the sandbox is already running: %w", errdefs.ErrFailedPrecondition))
	}
	p.starting = true
	s.mu.Unlock()

	if boots {
		var err error
		if sb, err = s.boot(c, p.spec.Hostname, p.spec.NetNS); err != nil {
			s.mu.Lock()
			p.starting = false
			s.mu.Unlock()
			return nil, rpcErr(fmt.Errorf("start: %w", err))
		}
	}
	pid, err := s.startProc(ctx, sb, c, p)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("start: %w", err))
	}
	if p.execID == "" {
		s.events.publish(topicTaskStart, &eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	} else {
		s.events.publish("/tasks/exec-started", &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: p.execID, Pid: pid})
	}
	return &taskapi.StartResponse{Pid: pid}, nil
}

// boot creates the sandbox on c's root, served live over virtio-fs (so the
// container's writes land in its snapshot, as with runc, and no image is
// packed at start), in the pod's network namespace when the spec names
// one; a pod's sandbox also shares the pod's directory.
func (s *service) boot(c *container, hostname, netns string) (*msb.Sandbox, error) {
	opts := []msb.Option{msb.WithHome(s.home), msb.WithRootfsLive(c.rootfs), msb.WithReplace()}
	if hostname != "" {
		opts = append(opts, msb.WithHostname(hostname))
	}
	if netns != "" {
		opts = append(opts, msb.WithNetworkNamespace(netns))
	}
	if c.role == rolePodSandbox {
		opts = append(opts, msb.WithVolumeSubmounts(podShareDir(s.home), guestPodDir))
	}
	if c.vcpus > 0 {
		opts = append(opts, msb.WithCPUs(c.vcpus))
	}
	if c.memMiB > 0 {
		opts = append(opts, msb.WithMemory(c.memMiB))
	}
	ctx, cancel := context.WithTimeout(s.ctx, bootTimeout)
	defer cancel()
	sb, err := msb.Create(ctx, sandboxName, opts...)
	if err != nil {
		return nil, fmt.Errorf("boot sandbox: %w", err)
	}
	info, err := sb.Info(ctx)
	if err != nil {
		_ = sb.Kill(s.ctx)
		_ = sb.Close()
		return nil, fmt.Errorf("sandbox info: %w", err)
	}
	s.mu.Lock()
	s.sb, s.pid, s.vmStopped = sb, uint32(info.PID), make(chan struct{})
	s.mu.Unlock()
	return sb, nil
}

// startProc runs p of c in the sandbox with its stdio wired.
// Preconditions: p.starting is set, s.mu is not held.
func (s *service) startProc(ctx context.Context, sb *msb.Sandbox, c *container, p *proc) (uint32, error) {
	st, err := openStdio(ctx, p.stdin, p.stdout, p.stderr, p.terminal)
	if err == nil {
		eopts := []msb.ExecOption{msb.WithCwd(p.spec.Cwd), msb.WithExecUser(p.spec.User)}
		for _, kv := range p.spec.Env {
			k, v, _ := strings.Cut(kv, "=")
			eopts = append(eopts, msb.WithExecEnv(k, v))
		}
		if p.terminal {
			eopts = append(eopts, msb.WithTTY(p.spec.Rows, p.spec.Cols))
		}
		for _, rl := range p.spec.Rlimits {
			eopts = append(eopts, msb.WithExecRlimit(rl.Name, rl.Soft, rl.Hard))
		}
		if c.role == rolePodContainer {
			eopts = append(eopts, msb.WithExecRoot(guestRoot(c.id)))
		}
		var ex *msb.Execution
		if ex, err = sb.ExecStream(s.ctx, p.spec.Args[0], p.spec.Args[1:], eopts...); err == nil {
			s.mu.Lock()
			p.starting, p.ex, p.status, p.stdinHold = false, ex, task.Status_RUNNING, st.inHold
			if p.stdinClosed && st.inHold != nil {
				_ = st.inHold.Close()
			}
			p.pid = ex.PID()
			if p.execID == "" {
				// A task's pid is a host process: the VM's.
				p.pid = s.pid
			}
			pid := p.pid
			s.mu.Unlock()
			go s.run(c, p, ex, st)
			return pid, nil
		}
		st.Close()
		err = fmt.Errorf("run %s: %w", p.spec.Args[0], err)
	}
	// The command could not start: Start fails, as runc's does, and the
	// process ends with the shell's status (127 not found…) so a pending
	// Wait returns. Without its init the sandbox has no purpose.
	s.mu.Lock()
	p.starting = false
	s.mu.Unlock()
	s.exit(c, p, exitStatus(0, err))
	if p.execID == "" && c.ownsVM() {
		s.stopSandbox()
	}
	return 0, err
}

// run copies a process's stdio until it exits and records its status; the
// exit of an init that owns the VM stops it: a container (or pod) is over
// when its init is.
func (s *service) run(c *container, p *proc, ex *msb.Execution, st *stdio) {
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
		s.log.Warn("guest command", "task", c.id, "exec", p.execID, "err", err)
	}
	st.Close()
	s.exit(c, p, exitStatus(code, err))
	if p.execID == "" && c.ownsVM() {
		s.stopSandbox()
	}
}

// exit records p's status once, wakes Wait and publishes TaskExit.
func (s *service) exit(c *container, p *proc, status uint32) {
	s.mu.Lock()
	if p.status == task.Status_STOPPED {
		s.mu.Unlock()
		return
	}
	p.status, p.exitCode, p.exitedAt = task.Status_STOPPED, status, time.Now()
	close(p.exited)
	pid, at := p.pid, p.exitedAt
	s.mu.Unlock()
	id := p.execID
	if id == "" {
		id = c.id
	}
	s.events.publish(topicTaskExit, &eventstypes.TaskExit{
		ContainerID: c.id, ID: id, Pid: pid, ExitStatus: status, ExitedAt: timestamppb.New(at),
	})
}

// stopSandbox kills the sandbox (its disk is thrown away with the
// container, so it needs no clean shutdown), waits for its process and
// closes vmStopped. Every process in it ends with it.
func (s *service) stopSandbox() {
	s.mu.Lock()
	sb, done := s.sb, s.vmStopped
	s.sb = nil
	s.mu.Unlock()
	if sb == nil {
		return
	}
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sb.Kill(ctx); err != nil && !errors.Is(err, msb.ErrNotRunning) {
		s.log.Warn("kill sandbox", "err", err)
	}
	_ = sb.Close()
}

// close stops a sandbox still running when the shim goes (Shutdown with
// Now, SIGTERM) and unmounts every root, so no VM or mount outlives its
// shim.
func (s *service) close() {
	s.stopSandbox()
	s.mu.Lock()
	tasks := slices.Collect(maps.Values(s.tasks))
	s.tasks = map[string]*container{}
	s.mu.Unlock()
	for _, c := range tasks {
		if err := s.unmount(c); err != nil {
			s.log.Warn("close", "task", c.id, "err", err)
		}
	}
	if err := removePodShare(s.home); err != nil {
		s.log.Warn("close", "err", err)
	}
}

// unmount undoes what Create mounted for c.
func (s *service) unmount(c *container) error {
	var errs []error
	if c.shared {
		errs = append(errs, unshareRoot(s.home, c.id))
	}
	if c.mounted {
		errs = append(errs, unmountRootfs(c.rootfs))
	}
	return errors.Join(errs...)
}

func (s *service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("state: %w", err))
	}
	resp := &taskapi.StateResponse{
		ID: c.id, ExecID: p.execID, Bundle: c.bundle, Pid: p.pid, Status: p.status,
		Stdin: p.stdin, Stdout: p.stdout, Stderr: p.stderr, Terminal: p.terminal,
	}
	if p.status == task.Status_STOPPED {
		resp.ExitStatus, resp.ExitedAt = p.exitCode, timestamppb.New(p.exitedAt)
	}
	return resp, nil
}

func (s *service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	s.mu.Lock()
	_, p, err := s.lookup(r.ID, r.ExecID)
	s.mu.Unlock()
	if err != nil {
		return nil, rpcErr(fmt.Errorf("wait: %w", err))
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, rpcErr(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.WaitResponse{ExitStatus: p.exitCode, ExitedAt: timestamppb.New(p.exitedAt)}, nil
}

func (s *service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("kill: %w", err))
	}
	status, ex, starting := p.status, p.ex, p.starting
	s.mu.Unlock()
	switch {
	case status == task.Status_STOPPED:
		return nil, rpcErr(fmt.Errorf("kill: process already finished: %w", errdefs.ErrNotFound))
	case starting:
		return nil, rpcErr(fmt.Errorf("kill: process is starting: %w", errdefs.ErrUnavailable))
	case status == task.Status_CREATED:
		// Nothing runs yet: the signal ends the process, as it would end
		// runc's waiting init.
		s.exit(c, p, signalStatus(r.Signal))
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
	s.mu.Lock()
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("delete: %w", err))
	}
	if p.status == task.Status_RUNNING || p.starting {
		s.mu.Unlock()
		return nil, rpcErr(fmt.Errorf("delete: process is running: %w", errdefs.ErrFailedPrecondition))
	}
	if p.status == task.Status_CREATED {
		// Deleting a process that never started ends it.
		s.mu.Unlock()
		s.exit(c, p, signalStatus(uint32(syscall.SIGKILL)))
		s.mu.Lock()
	}
	pid, code, at := p.pid, p.exitCode, p.exitedAt
	resp := &taskapi.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at)}
	ev := &eventstypes.TaskDelete{ContainerID: c.id, ID: c.id, Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at)}
	if p.execID != "" {
		delete(c.execs, p.execID)
		s.mu.Unlock()
		ev.ID = p.execID
		s.events.publish(topicTaskDelete, ev)
		return resp, nil
	}
	delete(s.tasks, c.id)
	var vmStopped chan struct{}
	if c.ownsVM() {
		vmStopped = s.vmStopped
	}
	s.mu.Unlock()

	if vmStopped != nil {
		select {
		case <-vmStopped:
		case <-ctx.Done():
			return nil, rpcErr(fmt.Errorf("delete: waiting for the sandbox to stop: %w", ctx.Err()))
		}
	}
	errs := []error{s.unmount(c)}
	if c.ownsVM() {
		errs = append(errs, removeHome(s.home))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, rpcErr(fmt.Errorf("delete: %w", err))
	}
	s.events.publish(topicTaskDelete, ev)
	return resp, nil
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
		if e.Name() == podShareName {
			// Never recursively: the containers' roots are bound there.
			errs = append(errs, removePodShare(home))
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

func (s *service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	_, p, err := s.lookup(r.ID, r.ExecID)
	var ex *msb.Execution
	if err == nil {
		ex = p.ex
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		return nil, rpcErr(fmt.Errorf("resize pty: %w", err))
	case ex == nil:
		return nil, rpcErr(fmt.Errorf("resize pty: process not started: %w", errdefs.ErrFailedPrecondition))
	case r.Width > 0xffff || r.Height > 0xffff:
		return nil, rpcErr(fmt.Errorf("resize pty: %dx%d: %w", r.Width, r.Height, errdefs.ErrInvalidArgument))
	}
	if err := ex.Resize(uint16(r.Height), uint16(r.Width)); err != nil {
		return nil, rpcErr(fmt.Errorf("resize pty: %w", err))
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes the process's stdin (containerd's only use of it) once
// everything written to the stdin fifo has reached it: it drops the shim's
// own write end of the fifo, so the copy into the process ends at the
// fifo's EOF and then closes the process's stdin. Closing the process's
// stdin here directly lost what the copy had not yet moved: ctr sends
// CloseIO right after its last write.
func (s *service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	_, p, err := s.lookup(r.ID, r.ExecID)
	var hold io.Closer
	if err == nil && r.Stdin {
		hold, p.stdinClosed = p.stdinHold, true
	}
	s.mu.Unlock()
	if err != nil {
		return nil, rpcErr(fmt.Errorf("close io: %w", err))
	}
	if hold != nil && r.Stdin {
		// Closing twice (a second CloseIO) is harmless.
		_ = hold.Close()
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.pid}, nil
}

func (s *service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	live := len(s.tasks) > 0
	s.mu.Unlock()
	// A shim with a live task stays, unless containerd insists. (In a pod,
	// containerd asks after each container's delete.)
	if live && !r.Now {
		return &emptypb.Empty{}, nil
	}
	s.shutdown()
	return &emptypb.Empty{}, nil
}

// Pids lists the container's processes as this shim knows them: the init
// (the task's pid, msb's sandbox process on the host) and each exec that
// has started and not exited (its pid in the guest), with its exec id as
// runc's shim gives it, so `ctr task ps` shows which is which.
func (s *service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, rpcErr(fmt.Errorf("pids: %w", err))
	}
	var out []*task.ProcessInfo
	if c.init.status == task.Status_RUNNING {
		out = append(out, &task.ProcessInfo{Pid: c.init.pid})
	}
	for _, id := range slices.Sorted(maps.Keys(c.execs)) {
		p := c.execs[id]
		if p.status != task.Status_RUNNING {
			continue
		}
		info, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: id})
		if err != nil {
			return nil, rpcErr(fmt.Errorf("pids: %w", err))
		}
		out = append(out, &task.ProcessInfo{Pid: p.pid, Info: info})
	}
	return &taskapi.PidsResponse{Processes: out}, nil
}

// statsTimeout bounds the reads of the guest's procfs for one Stats.
const statsTimeout = 10 * time.Second

// Stats reports the guest's CPU time, memory in use and task count as
// cgroup v2 metrics (`ctr task metrics`; the CRI's container stats), read
// from its /proc: the whole guest, for a pod's containers too (they are not
// accounted apart yet).
func (s *service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	s.mu.Lock()
	_, init, err := s.lookup(r.ID, "")
	sb, running := s.sb, err == nil && init.status == task.Status_RUNNING
	s.mu.Unlock()
	if err != nil {
		return nil, rpcErr(fmt.Errorf("stats: %w", err))
	}
	if sb == nil || !running {
		return nil, rpcErr(fmt.Errorf("stats: task %q is not running: %w", r.ID, errdefs.ErrFailedPrecondition))
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	files := make([][]byte, len(guestProcFiles))
	for i, name := range guestProcFiles {
		rc, err := sb.FS().ReadStream(ctx, name)
		if err != nil {
			return nil, rpcErr(fmt.Errorf("stats: %w", err))
		}
		// One byte more than allowed, so that guestMetrics sees a file
		// that is too large as such, without holding more of it.
		files[i], err = io.ReadAll(io.LimitReader(rc, maxProcFile+1))
		rc.Close()
		if err != nil {
			return nil, rpcErr(fmt.Errorf("stats: %s: %w", name, err))
		}
	}
	m, err := guestMetrics(files[0], files[1], files[2], files[3])
	if err != nil {
		return nil, rpcErr(fmt.Errorf("stats: %w", err))
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, rpcErr(fmt.Errorf("stats: %w", err))
	}
	return &taskapi.StatsResponse{Stats: a}, nil
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
