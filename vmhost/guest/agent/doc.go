// Package agent is the guest agent's protocol, its implementation (run in
// the guest by cmd/hangar-agent) and the host-side client.
//
// Transport: the guest's second serial port, /dev/ttyS1 in raw mode; on
// the host, the unix socket QEMU connects to that port (vmhost.Paths
// AgentSocket). The line survives standby and restore from the guest's
// point of view; the host reconnects to the new hypervisor's socket
// (Client.Reconnect) and the agent carries on.
//
// Protocol: newline-delimited JSON. A request is
// {"type":"request","id":N,"op":OP,"args":{...}}; the answer is
// {"type":"response","id":N,"result":{...}} or {...,"error":{"code","message"}}.
// Operations: ping, exec (argv, stdin, timeout → exit code, stdout,
// stderr), read_file, write_file (atomic), state (a boot id and a counter
// that exist only in guest memory, and the uptime). Both ends ignore lines
// that are not messages of the expected type: a serial line carries noise,
// and before the agent sets it raw the guest's tty echoes what it gets.
package agent
