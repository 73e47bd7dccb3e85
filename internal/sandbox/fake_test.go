package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
)

// Modes of the fake sandbox process.
const (
	fakeReady      = "ready"      // gets ready; stops on SIGTERM or watchdog EOF
	fakeIgnoreTerm = "ignoreterm" // gets ready and ignores SIGTERM
	fakeBootError  = "booterror"  // writes boot-error.json and exits 1
	fakeExit       = "exit"       // exits 3 without a ready line or boot error
	fakeHang       = "hang"       // prints its pid and never gets ready
)

// fakeBootErr is what fakeBootError writes.
var fakeBootErr = launch.BootError{
	Stage: launch.StageBuildVM, Errno: ptr(int(syscall.ENOENT)),
	Message: "build VM: kernel: open /nonexistent/vmlinux: no such file or directory",
}

func ptr[T any](v T) *T { return &v }

// fakeSandbox plays `msb sandbox` without a VM, speaking the contract of
// internal/launch: it reads the launch document from launch.LaunchFD, prints
// the pid line on the startup pipe, records its run like the real one and
// prints the ready line; an attached one stops at EOF on launch.WatchdogFD.
// It leaves marker files (fake-<event>) in the sandbox directory for the
// tests to check.
func fakeSandbox(mode string) int {
	l, err := launch.ReadLaunch(launch.OpenFD())
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake sandbox:", err)
		return 2
	}
	h, err := home.At(l.Home)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake sandbox:", err)
		return 2
	}
	mark := func(event, content string) {
		_ = os.WriteFile(fakeMarker(h, l.Name, event), []byte(content), 0o600)
	}
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(launch.Startup{PID: os.Getpid()})
	mark("pid", strconv.Itoa(os.Getpid()))
	if b, err := json.Marshal(l.Mounts); err == nil {
		mark("mounts", string(b))
	}
	mark("root", fmt.Sprintf("share=%s ro=%v lower=%s upper=%s", l.RootShare, l.RootReadOnly, l.Lower, l.Upper))
	switch mode {
	case fakeBootError:
		be := fakeBootErr
		be.Time = time.Now()
		_ = launch.WriteBootError(h.BootErrorPath(l.Name), be)
		return 1
	case fakeExit:
		return 3
	case fakeHang:
		time.Sleep(time.Hour)
		return 0
	}
	return fakeRun(l, h, out, mode == fakeIgnoreTerm, mark)
}

// fakeRun records the run, prints the ready line and waits for SIGTERM or
// the parent's death.
func fakeRun(l *launch.Launch, h home.Home, out *json.Encoder, ignoreTerm bool, mark func(event, content string)) int {
	ctx := context.Background()
	st, err := store.Open(ctx, h.DBPath())
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake sandbox:", err)
		return 2
	}
	defer st.Close()
	run, err := st.InsertRun(ctx, l.SandboxID, os.Getpid())
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake sandbox:", err)
		return 2
	}
	sigs := make(chan os.Signal, 1)
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	parentGone := make(chan struct{})
	if l.Attached {
		go func() {
			_, _ = io.Copy(io.Discard, os.NewFile(launch.WatchdogFD, "watchdog"))
			close(parentGone)
		}()
	}
	_ = out.Encode(launch.Startup{Ready: true})
	os.Stdout.Close()
	select {
	case <-sigs:
		mark("sigterm", "")
	case <-parentGone:
		mark("watchdog-eof", "")
	}
	if err := st.FinishRun(ctx, run.ID, store.ReasonSignal, nil); err != nil {
		fmt.Fprintln(os.Stderr, "fake sandbox:", err)
		return 2
	}
	return 0
}

// fakeMarker is the file the fake writes when event happens.
func fakeMarker(h home.Home, name, event string) string {
	return filepath.Join(h.SandboxDir(name), "fake-"+event)
}
