package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/msb-go/msb"
)

// Version is what `containerd-shim-msb-v2 -v` prints.
const Version = "msb shim (task API v2, containerd 1.6+)"

// stateRoot holds one directory per container: the shim's socket and the
// container's MSB_HOME. It is short on purpose: unix socket paths (msb's
// agent.sock among them) must fit in 108 bytes, which a bundle under
// containerd's state directory does not guarantee.
const stateRoot = "/run/msb-shim"

// socketName is the task socket inside the container's state directory.
const socketName = "shim.sock"

// serveAction is the hidden action `start` re-executes the shim with.
const serveAction = "serve"

// listenFD is the task socket's descriptor in the serving process.
const listenFD = 3

// flags are the command line containerd gives a shim.
type flags struct {
	namespace, id, address, publishBinary, bundle string
	debug, version                                bool
	action                                        string
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("containerd-shim-msb-v2", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.namespace, "namespace", "", "namespace that owns the shim")
	fs.StringVar(&f.id, "id", "", "id of the task")
	fs.StringVar(&f.address, "address", "", "grpc address of containerd")
	fs.StringVar(&f.publishBinary, "publish-binary", "", "unused: events go over TTRPC_ADDRESS")
	fs.StringVar(&f.bundle, "bundle", "", "bundle path (delete)")
	fs.StringVar(new(string), "socket", "", "unused")
	fs.StringVar(new(string), "debug-socket", "", "unused")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.BoolVar(&f.version, "v", false, "print the version")
	fs.BoolVar(&f.version, "version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return flags{}, fmt.Errorf("parse flags: %w", err)
	}
	f.action = fs.Arg(0)
	return f, nil
}

// stateDir is the container's directory under stateRoot. The containerd
// instance (its TTRPC_ADDRESS) is part of the key, so two containerds with
// the same namespace and id do not share one.
func stateDir(ttrpcAddress, namespace, id string) string {
	h := sha256.Sum256([]byte(ttrpcAddress + "\x00" + namespace + "\x00" + id))
	return filepath.Join(stateRoot, hex.EncodeToString(h[:8]))
}

// Main runs the shim with containerd's command line (without argv[0]).
func Main(ctx context.Context, args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	if f.version {
		fmt.Println("containerd-shim-msb-v2:", Version)
		return nil
	}
	if f.namespace == "" || f.id == "" {
		return errors.New("-namespace and -id are required")
	}
	setMSBPath()
	bundle := f.bundle
	if bundle == "" {
		// containerd runs start and delete in the bundle.
		bundle, _ = os.Getwd()
	}
	group := f.id
	if f.action != serveAction {
		if spec, err := readSpec(bundle); err == nil {
			group = groupID(spec, f.id)
		}
	}
	dir := stateDir(os.Getenv("TTRPC_ADDRESS"), f.namespace, group)
	switch f.action {
	case "start":
		if group != f.id {
			return joinPod(group, dir)
		}
		return start(f, dir)
	case "delete":
		return deleteAction(ctx, f, bundle, dir, group != f.id)
	case serveAction:
		return serve(ctx, f, dir)
	}
	return fmt.Errorf("unknown action %q (want start or delete)", f.action)
}

// setMSBPath points the SDK at the msb binary installed beside the shim,
// unless MSB_PATH says otherwise; the guest kernel and agentd are then found
// beside msb as usual.
func setMSBPath() {
	if os.Getenv("MSB_PATH") != "" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	p := filepath.Join(filepath.Dir(exe), "msb")
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		os.Setenv("MSB_PATH", p)
	}
}

// joinPod answers `start` for a container of a pod: the pod's shim, started
// for its sandbox container, serves it too. containerd then sends it the
// container's Create on that socket.
func joinPod(pod, dir string) error {
	sock := filepath.Join(dir, socketName)
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("start: the shim of pod %s is not running (%w); its sandbox container must be started first, with this runtime", pod, err)
	}
	c.Close()
	address := "unix://" + sock
	if err := os.WriteFile("address", []byte(address), 0o600); err != nil {
		return fmt.Errorf("start: write address: %w", err)
	}
	_, err = fmt.Print(address)
	return err
}

// start binds the task socket, starts the serving shim with it and prints
// its address for containerd. containerd reads this process's combined
// output as the address, so nothing else may be written, and the server
// must not inherit stdout or stderr (containerd would wait for them).
func start(f flags, dir string) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		if err != nil {
			_ = removeState(dir)
		}
	}()
	sock := filepath.Join(dir, socketName)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("start: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("start: listen: %w", err)
	}
	// The server owns the socket from here: closing this copy must not
	// unlink it.
	l.SetUnlinkOnClose(false)
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer lf.Close()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	args := []string{"-namespace", f.namespace, "-id", f.id, "-address", f.address}
	if f.debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(exe, append(args, serveAction)...)
	cmd.Dir, _ = os.Getwd() // the bundle
	cmd.ExtraFiles = []*os.File{lf}
	// Its own process group, so a signal to containerd's group does not
	// reach the shim (and the sandbox it supervises).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	address := "unix://" + sock
	// containerd 1.6 reconnects after a restart from bundle/address.
	if err := os.WriteFile("address", []byte(address), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("start: write address: %w", err)
	}
	_ = cmd.Process.Release()
	_, err = fmt.Print(address)
	return err
}

// openLog opens the log fifo containerd reads shim logs from (bundle/log);
// without a reader the shim logs nowhere.
func openLog() io.Writer {
	f, err := os.OpenFile("log", os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return io.Discard
	}
	// Blocking writes from here on: a slow containerd slows logging down
	// rather than losing lines.
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return io.Discard
	}
	return f
}

// serve runs the task service on the socket start handed over, until
// Shutdown or SIGTERM.
func serve(ctx context.Context, f flags, dir string) error {
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(openLog(), &slog.HandlerOptions{Level: level})).With("id", f.id, "ns", f.namespace)
	lfile := os.NewFile(listenFD, "shim.sock")
	l, err := net.FileListener(lfile)
	lfile.Close()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev := newPublisher(os.Getenv("TTRPC_ADDRESS"), f.namespace, log)
	defer ev.Close()
	done := make(chan struct{})
	var once sync.Once
	svc := newService(ctx, f.id, dir, log, ev, func() { once.Do(func() { close(done) }) })
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	taskapi.RegisterTTRPCTaskService(srv, svc)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		if err := srv.Serve(ctx, l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	}()
	log.Info("shim serving", "socket", filepath.Join(dir, socketName))
	select {
	case <-done:
	case s := <-sigs:
		log.Info("shim stopping", "signal", s.String())
	}
	// Let the Shutdown reply reach containerd before the socket closes.
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	// A shim told to go with a live sandbox takes it along.
	svc.close()
	cancel()
	if err := removeState(dir); err != nil {
		log.Warn("shim stopping", "err", err)
	}
	return nil
}

// deleteAction cleans up after a shim that is gone (containerd runs
// `shim -bundle B delete` then): remove the sandbox, unmount the rootfs,
// and report the task as killed. For a pod's container (inPod) only its
// own root is undone: the sandbox and state are its pod's.
func deleteAction(ctx context.Context, f flags, bundle, dir string, inPod bool) error {
	var errs []error
	if inPod {
		if validTaskID(f.id) {
			errs = append(errs, unshareRoot(dir, f.id))
		}
	} else if _, err := os.Stat(dir); err == nil {
		if err := msb.Remove(ctx, sandboxName, true, msb.WithHome(dir)); err != nil && !errors.Is(err, msb.ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove sandbox: %w", err))
		}
	}
	if spec, err := readSpec(bundle); err == nil && spec.Root != nil {
		if rootfs, err := rootfsPath(bundle, spec.Root.Path); err == nil {
			errs = append(errs, unmountRootfs(rootfs))
		}
	}
	if !inPod {
		errs = append(errs, removeState(dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	b, err := proto.Marshal(&taskapi.DeleteResponse{
		ExitStatus: signalStatus(uint32(syscall.SIGKILL)),
		ExitedAt:   timestamppb.Now(),
	})
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	_, err = os.Stdout.Write(b)
	return err
}
