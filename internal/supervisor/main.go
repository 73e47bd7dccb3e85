package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/timeline"
)

// Main is the sandbox process: `msb sandbox` runs it with the launch
// configuration on launch.LaunchFD. It returns the process exit code.
// Everything it cannot recover from before the relay is ready is written to
// logs/boot-error.json for the parent to show.
func Main(ctx context.Context) int {
	// The startup pipe's reader may be gone (an attached parent killed
	// during boot): a write to it must fail with EPIPE, not kill this
	// process with SIGPIPE (Go's default for fds 1 and 2), so that the
	// parent's death is handled as a stop.
	signal.Ignore(syscall.SIGPIPE)
	tl := timeline.New("sandbox", time.Now())
	tl.Mark("sandbox process: main")
	l, err := launch.ReadLaunch(launch.OpenFD())
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: %v\n", err)
		return 1
	}
	h, err := home.At(l.Home)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: home: %v\n", err)
		return 1
	}
	// The pid goes out before anything that can block, so the parent
	// learns it even if boot then fails. stdout stays the startup pipe
	// until the ready line.
	startup := os.NewFile(1, "startup")
	tl.Mark("sandbox process: launch read")
	writeStartup(startup, launch.Startup{PID: os.Getpid()})
	logs, err := redirectStderr(h.RuntimeLogPath(l.Name))
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: logs: %v\n", err)
		return 1
	}
	defer logs.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: launch.SlogLevel(l.LogLevel, slog.LevelInfo)}))
	logger.Debug("log level", "level", l.LogLevel)
	text, err := textRanges()
	if err != nil {
		logger.Warn("executable mappings unknown; its pages stay resident", "err", err)
	}

	if os.Getenv(CPUProfileEnv) != "" {
		stop, err := startCPUProfile(filepath.Join(h.LogsDir(l.Name), "cpu.pprof"))
		if err != nil {
			logger.Warn("cpu profile", "err", err)
		} else {
			defer stop()
		}
	}

	s := &sandbox{launch: l, home: h, log: logger, tl: tl, text: text, stopReq: make(chan store.TerminationReason, 1), ready: func() {
		tl.Mark("sandbox process: ready line sent")
		writeStartup(startup, launch.Startup{Ready: true, Timings: timings(tl)})
		closeStartup()
	}}
	// The sandbox process handles SIGTERM and SIGINT itself (a graceful
	// guest shutdown); the caller's signal-cancelled context must not kill
	// the VM.
	err = s.run(context.WithoutCancel(ctx))
	closeStartup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox error: %v\n", err)
		if !s.relayReady {
			if werr := launch.WriteBootError(h.BootErrorPath(l.Name), launch.NewBootError(err)); werr != nil {
				logger.Error("write boot error", "err", werr)
			}
		}
		return 1
	}
	return 0
}

// timings converts the sandbox process's marks for the ready line.
func timings(tl *timeline.Recorder) []launch.Timing {
	var out []launch.Timing
	for _, m := range tl.Marks() {
		out = append(out, launch.Timing{Name: m.Stage, At: m.At, By: m.By})
	}
	return out
}

func writeStartup(f *os.File, s launch.Startup) {
	line, _ := json.Marshal(s)
	_, _ = f.Write(append(line, '\n'))
}

// closeStartup points fd 1 at /dev/null, which ends the parent's read of
// the startup pipe. Nothing else writes to stdout.
func closeStartup() {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	_ = syscall.Dup2(int(null.Fd()), 1)
	null.Close()
}

// redirectStderr points fd 2 into the rotating runtime.log (through a pipe,
// so rotation also applies to what the Go runtime itself writes to fd 2,
// panics included).
func redirectStderr(path string) (io.Closer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	rf, err := launch.Open(path, launch.DefaultMaxLogBytes)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if err := syscall.Dup2(int(w.Fd()), 2); err != nil {
		return nil, fmt.Errorf("redirect stderr: %w", err)
	}
	w.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(rf, r)
	}()
	return closerFunc(func() error {
		// Closing fd 2 ends the copy once every writer is gone.
		os.Stderr.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return rf.Close()
	}), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// cleanups is a stack of undo steps run in reverse order, so each build step
// registers its own undo next to the code that made the thing.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}
