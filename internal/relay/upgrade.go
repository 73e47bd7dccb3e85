package relay

import (
	"errors"
	"fmt"
	"io"
)

// ErrUpgraded is returned by a second Upgrade.
var ErrUpgraded = errors.New("relay: already upgraded")

// Upgrade moves the guest stream from the console to conn, a connection to
// the agent's vsock port (agentproto.AgentVsockPort, offered with
// agentproto.CapVsock). From the call on, every frame
// for the guest is written to conn and nothing more to the console; the
// frames read from conn are routed as the console's were, and conn's end
// (EOF or error) is the guest stream's end, failing the relay. Whatever
// still arrives on the console is discarded, and its end no longer matters.
// Close closes conn too.
//
// Preconditions: WaitReady has returned (the ready frame came on the
// console) and no client frame has been forwarded yet, i.e. Upgrade is
// called before Serve. The agent adopts the connection as soon as it is
// made and discards what it reads on the console from then on, so a frame
// written to the console in between would be lost.
//
// It returns ErrNotReady before ready, ErrUpgraded on a second call,
// ErrRelayClosed after Close, and the guest error once the guest stream
// failed; conn then stays the caller's to close.
func (r *Relay) Upgrade(conn io.ReadWriteCloser) error {
	select {
	case <-r.readyCh:
	default:
		return fmt.Errorf("upgrade: %w", ErrNotReady)
	}
	select {
	case <-r.done:
		// Close also ends the guest stream, so check it first.
		return fmt.Errorf("upgrade: %w", ErrRelayClosed)
	default:
	}
	select {
	case <-r.guestDone:
		return fmt.Errorf("upgrade: %w", r.guestErr)
	default:
	}
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return fmt.Errorf("upgrade: %w", ErrRelayClosed)
	case r.upConn != nil:
		r.mu.Unlock()
		return fmt.Errorf("upgrade: %w", ErrUpgraded)
	case r.readers == 0:
		// The console reader ended, so the guest stream has failed.
		r.mu.Unlock()
		<-r.guestDone
		return fmt.Errorf("upgrade: %w", r.guestErr)
	}
	r.upConn = conn
	r.readers++
	// Under mu, as Close sets closed before it waits for wg.
	r.wg.Add(1)
	r.mu.Unlock()

	if r.consoleWritten.Load() {
		r.log.Warn("relay: transport upgrade after frames went to the console; the agent may have discarded some")
	}
	// The console reader routes nothing once upgraded is set; a frame it
	// is routing now is finished before the new reader's first (routeMu).
	r.upgraded.Store(true)
	r.upgradeCh <- conn
	go r.readUpgraded(conn)
	r.log.Debug("relay: guest stream moved to the upgraded connection")
	return nil
}

// Upgraded reports whether Upgrade has moved the guest stream.
func (r *Relay) Upgraded() bool { return r.upgraded.Load() }
