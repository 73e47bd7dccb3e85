package shim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Event topics containerd expects from a task shim.
const (
	topicTaskCreate = "/tasks/create"
	topicTaskStart  = "/tasks/start"
	topicTaskExit   = "/tasks/exit"
	topicTaskDelete = "/tasks/delete"
)

// nsHeader is the ttrpc metadata key containerd reads the namespace from.
const nsHeader = "containerd-namespace-ttrpc"

// publisher forwards task events to containerd's ttrpc events service
// (TTRPC_ADDRESS). Events are best effort: containerd's task API answers
// (Wait, State) carry the same facts, so a lost event is logged, not fatal.
type publisher struct {
	addr, ns string
	log      *slog.Logger

	// mu serializes publishing, so containerd sees events in order, and
	// guards client.
	mu     sync.Mutex
	client *ttrpc.Client
}

func newPublisher(addr, ns string, log *slog.Logger) *publisher {
	return &publisher{addr: strings.TrimPrefix(addr, "unix://"), ns: ns, log: log}
}

// publish sends one event; it gives up after 5 s so a stuck containerd does
// not stall the task API call that caused the event.
func (p *publisher) publish(topic string, ev any) {
	if p.addr == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.forward(topic, ev); err != nil {
		p.log.Warn("publish event", "topic", topic, "err", err)
	}
}

// Preconditions: p.mu is held.
func (p *publisher) forward(topic string, ev any) error {
	a, err := typeurl.MarshalAnyToProto(ev)
	if err != nil {
		return fmt.Errorf("marshal event: %w", err)
	}
	if p.client == nil {
		conn, err := net.DialTimeout("unix", p.addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dial containerd: %w", err)
		}
		p.client = ttrpc.NewClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{nsHeader: []string{p.ns}})
	_, err = eventsapi.NewTTRPCEventsClient(p.client).Forward(ctx, &eventsapi.ForwardRequest{
		Envelope: &types.Envelope{Timestamp: timestamppb.Now(), Namespace: p.ns, Topic: topic, Event: a},
	})
	if err != nil {
		// A broken connection is redialled next time.
		p.client.Close()
		p.client = nil
		return fmt.Errorf("forward: %w", err)
	}
	return nil
}

func (p *publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		p.client.Close()
		p.client = nil
	}
}
