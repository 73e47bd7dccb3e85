package agent

import "errors"

var (
	// ErrNoAgentPort means no virtio-console port named "agent" appeared.
	ErrNoAgentPort = errors.New("agent: no virtio-console port named \"agent\"")
	// ErrUnknownUser means a user name is not in /etc/passwd.
	ErrUnknownUser = errors.New("unknown user")
	// ErrUnknownGroup means a group name is not in /etc/group.
	ErrUnknownGroup = errors.New("unknown group")
)
