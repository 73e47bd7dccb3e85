package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/netstack"
	"github.com/msb-go/msb/internal/relay"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/timeline"
	"github.com/msb-go/msb/internal/virtio/virtiovsock"
)

// Timings of the sandbox process (reference §1.4, with msb's stop window).
const (
	readyTimeout = 60 * time.Second
	// stopGrace is how long a guest gets to shut down after core.shutdown
	// before the VM is killed (0.4.4 exited at once and lost unsynced data).
	stopGrace      = 10 * time.Second
	metricInterval = time.Second
)

// sandbox is one run of the sandbox process: what build made, and what
// supervise watches.
type sandbox struct {
	launch *launch.Launch
	home   home.Home
	log    *slog.Logger
	// tl records the stages of the start for the ready line.
	tl *timeline.Recorder
	// text are the executable's read-only mappings (textRanges), which
	// trimResident releases once the sandbox is up.
	text [][2]uintptr
	// ready is called once, when the agent is ready and agent.sock bound.
	ready func()

	// Set by build.
	store      *store.Store
	runID      int64
	execLog    *launch.ExecLog
	relay      *relay.Relay
	vm         machine.Running
	panics     *machine.PanicWatcher
	sock       string
	listener   net.Listener
	qemuBinary string // resolved QEMU executable, for the Landlock rules
	net        *netstack.Stack
	vsock      *virtiovsock.Device
	guestCA    []byte // the interception CA the guest trusts (PEM), if any
	relayReady bool

	// stopReq carries the first stop request (requestStop) to supervise.
	stopReq chan store.TerminationReason

	mu     sync.Mutex
	reason store.TerminationReason // first reason to stop wins
}

// requestStop asks supervise to stop the sandbox; the first request wins.
// It never blocks and may be called from any goroutine, before supervise
// runs too.
func (s *sandbox) requestStop(r store.TerminationReason) {
	select {
	case s.stopReq <- r:
	default: // a stop is already requested
	}
}

// setReason records why the sandbox is stopping unless a reason is set.
func (s *sandbox) setReason(r store.TerminationReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason == "" {
		s.reason = r
	}
}

func (s *sandbox) getReason() store.TerminationReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// run builds and boots the sandbox, supervises it until it stops and records
// the end. The store closes only after every goroutine supervise started has
// returned.
func (s *sandbox) run(ctx context.Context) error {
	st, err := store.OpenRunWriter(ctx, s.home.DBPath())
	if err != nil {
		return launch.Fail(launch.PrefixDatabaseConnect, err)
	}
	defer st.Close()
	s.tl.Mark("sandbox process: store open")
	s.store = st
	run, err := st.InsertRun(ctx, s.launch.SandboxID, os.Getpid())
	if err != nil {
		return launch.Fail(launch.PrefixInsertRun, err)
	}
	s.runID = run.ID
	s.tl.Mark("sandbox process: run recorded")

	// A previous run killed before it could clean up may have left its
	// boot environment behind; this run never needs it.
	_ = s.home.RemoveSecretFiles(s.launch.Name)
	var undo cleanups
	defer undo.run()
	if err := s.build(ctx, &undo); err != nil {
		reason := store.ReasonInternalError
		if s.vm != nil {
			reason = store.ReasonFailed
		}
		s.finish(reason, nil)
		return err
	}
	reason, code := s.supervise(ctx)
	s.finish(reason, &code)
	s.log.Info("sandbox stopped", "reason", reason)
	return nil
}

// finish records the end of the run. It must record even when ctx is gone.
func (s *sandbox) finish(reason store.TerminationReason, code *int) {
	_ = s.home.RemoveSecretFiles(s.launch.Name)
	if s.execLog != nil {
		_ = s.execLog.Stopped()
		_ = s.execLog.Close()
		s.execLog = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.FinishRun(ctx, s.runID, reason, code); err != nil {
		s.log.Error("record run end", "err", err)
	}
}

// exitReason turns how the VM ended into the recorded reason and exit code.
func (s *sandbox) exitReason(exit machine.Exit) (store.TerminationReason, int) {
	if exit.Err != nil {
		s.log.Warn("vm ended with an error", "err", exit.Err)
	}
	reason, code, hint := verdict(s.getReason(), exit.Err, s.panics.Panicked())
	if hint != "" {
		s.log.Warn(hint)
	}
	return reason, code
}

// verdict decides how a run ended from the host's view. requested is the
// reason the host recorded when it asked the guest to stop ("" if it never
// did); vmmErr is the VMM's own failure; panicked says the console showed
// "Kernel panic". The console is guest-controlled text (any process that can
// write to /dev/console can print the marker), so it never decides the
// verdict by itself: an exit the host did not request is a failure whatever
// the console says, and a requested stop stays what it was. A panic only
// adds a hint for the log.
func verdict(requested store.TerminationReason, vmmErr error, panicked bool) (reason store.TerminationReason, code int, hint string) {
	switch {
	case requested == "":
		reason, code = store.ReasonFailed, 1
		hint = "the VM exited without a stop request (guest poweroff, reboot or crash)"
	case vmmErr != nil:
		reason, code = requested, 1
		if reason == store.ReasonCompleted {
			reason = store.ReasonFailed
		}
	default:
		reason, code = requested, 0
	}
	if panicked {
		if hint != "" {
			hint += "; "
		}
		hint += "the guest console showed a kernel panic (see kernel.log)"
	}
	return reason, code, hint
}

// errVM describes a VM failure. The agent not becoming ready is the
// failure; panic text on the (guest-controlled) console only adds a hint.
func (s *sandbox) errVM(err error) error {
	if s.panics.Panicked() {
		return launch.Fail(launch.PrefixVMEnter, fmt.Errorf("agent not ready (the guest console showed a kernel panic; see kernel.log): %w", err))
	}
	return launch.Fail(launch.PrefixVMEnter, fmt.Errorf("agent not ready: %w", err))
}
