package runtime_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/msb-go/msb/internal/runtime"
)

// Example wires the building blocks the way the sandbox process does: the
// relay on the agent stream, an idle/max-duration watcher fed by the relay's
// host-side activity, and the metrics sampler. agent is the host end of the
// guest's agent port and ln the bound runtime/agent.sock.
func Example() {
	var agent *os.File      // host end of the agent socketpair
	var ln net.Listener     // runtime/agent.sock
	var logger *slog.Logger // runtime.log
	if agent == nil {
		return // this example only shows the wiring
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	execLog, err := runtime.OpenExecLog("logs/exec.log", runtime.DefaultMaxLogBytes)
	if err != nil {
		logger.Warn("exec log unavailable", "err", err)
	}
	relay := runtime.NewRelay(agent, runtime.RelayOptions{
		ExecLog:    execLog,
		Logger:     logger,
		OnShutdown: cancel,
	})
	defer relay.Close()

	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	_, err = relay.WaitReady(readyCtx)
	readyCancel()
	if err != nil {
		_ = runtime.WriteBootError("logs/boot-error.json", runtime.NewBootError(err))
		return
	}
	go relay.Serve(ctx, ln)

	reasons := make(chan runtime.Reason, 1)
	w := &runtime.Watcher{IdleTimeout: 5 * time.Minute, Activity: relay, MaxDuration: time.Hour}
	go w.Run(ctx, reasons)

	s := &runtime.Sampler{PIDs: func() []int { return []int{os.Getpid()} }}
	go s.Run(ctx, func(m runtime.Sample) { logger.Debug("metrics", "cpu", m.CPUPercent, "rss", m.RSSBytes) })

	select {
	case reason := <-reasons:
		logger.Info("stopping", "reason", reason)
	case <-ctx.Done():
	}
	if execLog != nil {
		_ = execLog.Stopped()
		_ = execLog.Close()
	}
}
