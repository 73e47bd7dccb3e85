package supervisor

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/store"
)

// supervise serves the relay and watches every stop source — signals, the
// parent's death, the idle timeout and max duration, the VM's own exit —
// until one fires, stops the guest, and joins every goroutine it started
// before returning, so nothing writes to the store after it closes.
func (s *sandbox) supervise(ctx context.Context) (store.TerminationReason, int) {
	l := s.launch
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	stopReq, request := s.stopReq, s.requestStop

	g.Go(func() error { return ignoreCanceled(s.relay.Serve(gctx, s.listener)) })
	g.Go(func() error { watchSignals(gctx, request); return nil })
	if l.Attached {
		g.Go(func() error { watchParent(gctx, launch.WatchdogFD, request); return nil })
	}
	if l.IdleTimeout > 0 || l.MaxDuration > 0 {
		activity := Touched{Source: s.relay, Path: s.home.TouchPath(l.Name), Ready: time.Now()}
		w := &Watcher{IdleTimeout: l.IdleTimeout, MaxDuration: l.MaxDuration, Activity: activity}
		reasons := make(chan Reason, 1)
		g.Go(func() error {
			if err := w.Run(gctx, reasons); err != nil {
				return nil
			}
			request(store.TerminationReason(<-reasons))
			return nil
		})
	}
	g.Go(func() error { s.sampleMetrics(gctx); return nil })
	g.Go(func() error { s.publishClock(gctx); return nil })

	// The relay is serving: the parent may connect now.
	s.ready()
	trimResident(s.text)

	var exit machine.Exit
	select {
	case <-s.vm.Done():
		exit = s.vm.Wait()
	case reason := <-stopReq:
		s.setReason(reason)
		s.log.Info("stopping", "reason", reason)
		exit = s.stopGuest()
	}
	// Every goroutine above returns once gctx is done.
	cancel()
	if err := g.Wait(); err != nil {
		s.log.Warn("relay", "err", err)
	}
	return s.exitReason(exit)
}

func ignoreCanceled(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// stopGuest asks agentd to shut down (it ends sessions, syncs and remounts
// the root read-only) and kills the VM if it has not ended after stopGrace.
func (s *sandbox) stopGuest() machine.Exit {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := s.relay.Shutdown(ctx); err != nil {
		s.log.Warn("shutdown request", "err", err)
	}
	select {
	case <-s.vm.Done():
	case <-ctx.Done():
		s.log.Warn("guest did not shut down in time; killing the VM", "grace", stopGrace)
		_ = s.vm.Kill()
	}
	return s.vm.Wait()
}

// watchSignals turns SIGTERM, SIGINT and SIGHUP (msb stop) into a requested,
// graceful end (0.4.4 records it by the VM's exit code, which is Completed
// for a clean shutdown).
func watchSignals(ctx context.Context, request func(store.TerminationReason)) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
		request(store.ReasonCompleted)
	case <-ctx.Done():
	}
}

// watchParent requests a stop when the watchdog pipe fd reaches EOF: the
// parent that holds its write end has exited. It returns when ctx is done
// even while the parent is alive (an SDK's Stop keeps its end open until the
// sandbox process has exited, and supervise joins this goroutine first).
func watchParent(ctx context.Context, fd int, request func(store.TerminationReason)) {
	// The fd arrives in blocking mode (os/exec hands files over through
	// Fd(), which clears O_NONBLOCK). A blocking read cannot be interrupted
	// by Close, so make it pollable first; Close then wakes the Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "watchdog")
	if f == nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	buf := make([]byte, 1)
	for {
		if _, err := f.Read(buf); err != nil {
			if ctx.Err() == nil {
				request(store.ReasonSignal)
			}
			return
		}
	}
}

func (s *sandbox) sampleMetrics(ctx context.Context) {
	vmPID := s.vm.PID()
	sm := &Sampler{
		Interval: metricInterval,
		PIDs:     func() []int { return []int{os.Getpid(), vmPID} },
	}
	_ = sm.Run(ctx, func(m Sample) {
		row := store.Metric{
			SandboxID: s.launch.SandboxID, CPUPercent: m.CPUPercent, MemoryBytes: int64(m.RSSBytes),
			DiskReadBytes: int64(m.ReadBytes), DiskWriteBytes: int64(m.WriteBytes), SampledAt: m.Time,
		}
		if s.net != nil {
			c := s.net.Counters()
			row.NetRxBytes, row.NetRxPackets = int64(c.GuestToHostBytes), int64(c.GuestToHostPackets)
			row.NetTxBytes, row.NetTxPackets = int64(c.HostToGuestBytes), int64(c.HostToGuestPackets)
			row.NetFlowsDenied = int64(c.FlowsDenied)
		}
		err := s.store.InsertMetric(ctx, row)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("metric", "err", err)
		}
	})
}
