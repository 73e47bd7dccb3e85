package relay

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

// upgradeEnv upgrades env's relay to a second fake guest (the vsock
// stream) and returns it. Cleanup ends that guest.
func upgradeEnv(t *testing.T, env *relayEnv) *fakeGuest {
	t.Helper()
	hostUp, guestUp := net.Pipe()
	g := newFakeGuest(guestUp)
	g.wg.Go(g.serve)
	t.Cleanup(func() {
		guestUp.Close()
		g.wg.Wait()
	})
	if err := env.relay.Upgrade(hostUp); err != nil {
		hostUp.Close()
		t.Fatalf("Upgrade = %v", err)
	}
	if !env.relay.Upgraded() {
		t.Errorf("Upgraded() = false after Upgrade")
	}
	return g
}

func TestRelayUpgrade(t *testing.T) {
	tests := []struct {
		name    string
		execLog bool
	}{
		{"plain", false},
		{"with exec log", true}, // the tap queue outlives the console reader
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env *relayEnv
			if tt.execLog {
				env, _ = execLogRelay(t)
			} else {
				env = newRelayEnv(t, RelayOptions{})
			}
			up := upgradeEnv(t, env)
			a := env.dial(t)

			// A round trip goes over the new stream only.
			if out, errOut, code := a.exec(a.offset+1, "echo", "hi"); out != "out:hi" || errOut != "err:hi" || code != 0 {
				t.Errorf("exec = %q, %q, %d; want out:hi, err:hi, 0", out, errOut, code)
			}
			a.send(a.offset+2, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsStat, Path: "/"}})
			if m := a.recv(); m.Type != agentproto.TypeFsResponse || m.ID != a.offset+2 {
				t.Errorf("fs reply = %s id %d; want fs.response id %d", m.Type, m.ID, a.offset+2)
			}
			if got := env.guest.received(); len(got) != 0 {
				t.Errorf("console received %d frames after the upgrade (first %s); want none", len(got), got[0].Type)
			}
			if got := len(up.received()); got != 2 {
				t.Errorf("upgraded stream received %d frames; want 2", got)
			}

			// The relay's own frames take the new stream too.
			if err := env.relay.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			up.waitFor(t, "core.shutdown", func(m agentproto.Message) bool { return m.Type == agentproto.TypeShutdown })
			if got := env.guest.received(); len(got) != 0 {
				t.Errorf("console received %s; want nothing", got[0].Type)
			}
		})
	}
}

// TestRelayUpgradeConsoleIgnored: once upgraded, what the console still
// carries is not routed, and its end does not end the relay.
func TestRelayUpgradeConsoleIgnored(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	up := upgradeEnv(t, env)
	a := env.dial(t)
	id := a.offset + 1
	a.send(id, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep"})
	if m := a.recv(); m.Type != agentproto.TypeExecStarted {
		t.Fatalf("first frame %s; want exec.started", m.Type)
	}
	// Output for the open session, on the console: dropped.
	env.guest.send(id, agentproto.TypeExecStdout, data("from console"))
	eventually(t, "the console frame to be discarded", func() bool {
		return strings.Contains(env.logs.String(), "discarding console frames")
	})
	up.send(id, agentproto.TypeExecStdout, data("from vsock"))
	m := a.recv()
	var d agentproto.ExecData
	if err := m.Decode(&d); err != nil || m.Type != agentproto.TypeExecStdout || string(d.Data) != "from vsock" {
		t.Fatalf("frame = %s %q (%v); want stdout %q", m.Type, d.Data, err, "from vsock")
	}

	// The console ends: nothing changes.
	env.guest.conn.Close()
	time.Sleep(50 * time.Millisecond)
	if out, _, _ := a.exec(a.offset+2, "echo", "still"); out != "out:still" {
		t.Errorf("exec after console EOF = %q; want out:still", out)
	}
	select {
	case err := <-env.serveErr:
		t.Fatalf("Serve = %v after the console ended; want it to go on", err)
	default:
	}
}

// TestRelayUpgradedStreamEOF: the upgraded stream's end is the guest's end.
func TestRelayUpgradedStreamEOF(t *testing.T) {
	env := newRelayEnv(t, RelayOptions{})
	up := upgradeEnv(t, env)
	a := env.dial(t)
	if out, _, _ := a.exec(a.offset+1, "echo", "x"); out != "out:x" {
		t.Fatalf("exec = %q; want out:x", out)
	}
	up.conn.Close()
	a.expectClosed()
	env.expectGuestClosed(t, "the upgraded stream ended")
}

func TestRelayUpgradeErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) *Relay
		want  error
	}{
		{"before ready", func(t *testing.T) *Relay {
			hostEnd, guestEnd := net.Pipe()
			r := NewRelay(hostEnd, RelayOptions{})
			t.Cleanup(func() { r.Close(); guestEnd.Close() })
			return r
		}, ErrNotReady},
		{"twice", func(t *testing.T) *Relay {
			env := newRelayEnv(t, RelayOptions{})
			upgradeEnv(t, env)
			return env.relay
		}, ErrUpgraded},
		{"after close", func(t *testing.T) *Relay {
			env := newRelayEnv(t, RelayOptions{})
			env.relay.Close()
			return env.relay
		}, ErrRelayClosed},
		{"console gone", func(t *testing.T) *Relay {
			env := newRelayEnv(t, RelayOptions{})
			env.guest.conn.Close()
			<-env.relay.guestDone
			return env.relay
		}, ErrGuestClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.setup(t)
			hostUp, guestUp := net.Pipe()
			defer guestUp.Close()
			defer hostUp.Close()
			if err := r.Upgrade(hostUp); !errors.Is(err, tt.want) {
				t.Errorf("Upgrade = %v; want %v", err, tt.want)
			}
		})
	}
}
