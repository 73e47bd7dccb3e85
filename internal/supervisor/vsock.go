package supervisor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/virtio/vhostuser"
	"github.com/msb-go/msb/internal/virtio/virtiovsock"
)

// guestCID is every guest's vsock context id: each sandbox has a device of
// its own, so ids need not differ between sandboxes.
const guestCID = 3

// vsockDialTimeout bounds the connection to agentd's vsock port; past it
// the sandbox keeps the console, which carries the same protocol.
const vsockDialTimeout = 5 * time.Second

// wireVsock gives the guest a virtio-vsock device, the agent's bulk
// transport. The device lives in this process on both backends: the native
// VMM puts it on virtio-mmio, QEMU gets it over vhost-user (served from
// now on, because QEMU does the handshake while it starts).
func (s *sandbox) wireVsock(spec *machine.Spec, backend string, undo *cleanups) error {
	dev, err := virtiovsock.New(virtiovsock.Config{GuestCID: guestCID})
	if err != nil {
		return launch.Fail(launch.PrefixBuildVM, err)
	}
	s.vsock = dev
	spec.Vsock = &machine.Vsock{Device: dev}
	undo.add(func() { dev.Close() })
	if backend != machine.BackendQEMU {
		return nil
	}
	uc, theirs, err := vhostUserPair("vhost-user-vsock")
	if err != nil {
		return err
	}
	spec.Vsock.Conn = theirs
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	undo.add(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := vhostuser.Serve(ctx, uc, dev, s.log); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("vhost-user vsock ended", "err", err)
		}
	}()
	return nil
}

// upgradeAgent moves the relay's frame stream from the console to a vsock
// connection to agentd when the agent offers it. Any failure leaves the
// console in use: it is slower, not wrong.
func (s *sandbox) upgradeAgent(ctx context.Context, ready agentproto.Ready) {
	if s.vsock == nil || !ready.Has(agentproto.CapVsock) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, vsockDialTimeout)
	defer cancel()
	conn, err := s.vsock.Dial(ctx, agentproto.AgentVsockPort)
	if err != nil {
		s.log.Warn("agent: vsock connection failed; staying on the console", "err", err)
		return
	}
	if err := s.relay.Upgrade(conn); err != nil {
		conn.Close()
		s.log.Warn("agent: vsock upgrade failed; staying on the console", "err", err)
		return
	}
	s.tl.Mark("sandbox process: agent stream on vsock")
	s.log.Info("agent: frame stream on vsock", "port", agentproto.AgentVsockPort)
}
