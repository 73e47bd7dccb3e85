package agentproto_test

import (
	"bytes"
	"fmt"

	"github.com/msb-go/msb/internal/agentproto"
)

func Example() {
	var conn bytes.Buffer // stands in for the agent connection

	// Host: start a session with id 1.
	req, err := agentproto.New(1, agentproto.TypeExecRequest, agentproto.ExecRequest{
		Cmd:  "echo",
		Args: []string{"hello"},
	})
	if err != nil {
		panic(err)
	}
	if err := agentproto.NewEncoder(&conn).Encode(req); err != nil {
		panic(err)
	}

	// Agent: read the frame and decode its payload.
	m, err := agentproto.NewDecoder(&conn).Decode()
	if err != nil {
		panic(err)
	}
	var got agentproto.ExecRequest
	if err := m.Decode(&got); err != nil {
		panic(err)
	}
	fmt.Println(m.ID, m.Type, m.Flags() == agentproto.FlagSessionStart, got.Cmd, got.Args)
	// Output: 1 core.exec.request true echo [hello]
}
