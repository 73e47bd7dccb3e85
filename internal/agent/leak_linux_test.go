package agent

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/agentproto"
)

// TestServeNoLeaks checks that every goroutine Serve starts (console writer,
// heartbeat, reaper, session, stdin writer, output readers, fs ops) is gone
// once Serve returns, also when the client disconnects mid-session.
func TestServeNoLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("os/signal.signal_recv"), goleak.IgnoreAnyFunction("os/signal.loop")}
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}, HeartbeatPath: t.TempDir() + "/hb.json"})
	r := c.exec(agentproto.ExecRequest{Cmd: "echo", Args: []string{"x"}})
	if r.code != 0 {
		t.Fatalf("got %v", r)
	}
	c.fs(agentproto.FsOp{Kind: agentproto.FsStat, Path: "/"})
	id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}, TTY: true})
	waitStarted(t, ch)
	c.send(id, agentproto.TypeExecStdin, agentproto.ExecData{Data: []byte("never read")})
	_, ch2 := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "cat"})
	waitStarted(t, ch2)
	c.conn.Close()
	if err := c.waitServe(10 * time.Second); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	<-c.readDone
	goleak.VerifyNone(t, opts...)
}
