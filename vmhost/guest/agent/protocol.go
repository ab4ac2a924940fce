package agent

import "encoding/json"

// Operations.
const (
	OpPing      = "ping"
	OpExec      = "exec"
	OpReadFile  = "read_file"
	OpWriteFile = "write_file"
	OpState     = "state"
)

// Message types. Every line carries one, so that anything else on the wire
// (a request echoed by a serial line not yet in raw mode, noise from a
// previous connection) is never taken for an answer.
const (
	typeRequest  = "request"
	typeResponse = "response"
)

// Limits. A serial line is slow, and the agent is for control, not bulk
// data: under TCG here, host to guest moves about 100 KiB/s of payload and
// guest to host about 300 KiB/s (base64 in JSON included).
const (
	// MaxFileSize is the most ReadFile returns and WriteFile accepts.
	MaxFileSize = 1 << 20
	// MaxOutput is how much of each of an exec's stdout and stderr is kept.
	MaxOutput = 1 << 20
	// maxLine bounds one JSON line (base64 inflates by 4/3; an exec result
	// carries two outputs).
	maxLine = 4 << 20
	// DefaultExecTimeout applies when ExecRequest.Timeout is zero.
	DefaultExecTimeout = 30 // seconds
)

// request is one line from the host.
type request struct {
	Type string          `json:"type"`
	ID   uint64          `json:"id"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// response is one line from the agent.
type response struct {
	Type   string          `json:"type"`
	ID     uint64          `json:"id"`
	Error  *Error          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Error is a failed request, as reported by the agent.
type Error struct {
	// Code is one of the Code* constants.
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "agent: " + e.Code + ": " + e.Message }

// Error codes.
const (
	CodeInvalidRequest = "invalid_request"
	CodeNotFound       = "not_found"
	CodeTooLarge       = "too_large"
	CodeFailed         = "failed"
)

// Pong answers ping.
type Pong struct {
	Version string `json:"version"`
}

// ExecRequest runs a program.
type ExecRequest struct {
	// Argv[0] is looked up on the guest's PATH.
	Argv  []string `json:"argv"`
	Stdin []byte   `json:"stdin,omitempty"`
	// Timeout in seconds; the process is killed when it runs longer.
	// Zero means DefaultExecTimeout.
	Timeout float64 `json:"timeout,omitempty"`
}

// ExecResult is how a program ended.
type ExecResult struct {
	ExitCode int    `json:"exit_code"` // -1 when killed or not started
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	TimedOut bool   `json:"timed_out,omitempty"`
	// Truncated: output beyond MaxOutput was dropped.
	Truncated bool `json:"truncated,omitempty"`
}

// FileRequest names a file (read_file) or gives its content (write_file).
type FileRequest struct {
	Path string `json:"path"`
	Data []byte `json:"data,omitempty"`
	Mode uint32 `json:"mode,omitempty"` // default 0644
}

// FileResult is a file's content.
type FileResult struct {
	Data []byte `json:"data"`
}

// State is what the guest keeps only in its RAM: it proves, after a
// restore, that the memory came back.
type State struct {
	// BootID is random, chosen when the agent started, never written to
	// disk.
	BootID string `json:"boot_id"`
	// Counter advances by one every CounterInterval while the guest runs.
	Counter uint64 `json:"counter"`
	// Uptime is the guest kernel's uptime in seconds (/proc/uptime).
	Uptime float64 `json:"uptime"`
}
