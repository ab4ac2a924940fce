package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hangar-vm/hangar/vmhost"
	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// ErrNotReady: the guest agent did not answer in time, or the VM exited
// first. The error text carries the end of the guest's console.
var ErrNotReady = errors.New("guest not ready")

// WaitReady connects to vm's guest agent and waits until it answers, until
// ctx ends or the VM exits, whichever comes first. Use it after Start (boot)
// and after Restore (the agent answers at once: it never stopped).
func WaitReady(ctx context.Context, vm vmhost.VM) (*agent.Client, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-vm.Done():
			cancel(vmhost.ErrVMExited)
		case <-ctx.Done():
		}
	}()
	c, err := agent.Dial(ctx, vm.Paths().AgentSocket)
	if err != nil {
		if errors.Is(context.Cause(ctx), vmhost.ErrVMExited) {
			st, _ := vm.Wait(context.Background())
			err = fmt.Errorf("%w (%s)", vmhost.ErrVMExited, st)
		}
		return nil, fmt.Errorf("%w: vm %s: %w%s", ErrNotReady, vm.Config().Name, err, consoleTail(vm.Paths().ConsoleLog))
	}
	return c, nil
}

// consoleTail is the last lines of the guest console, for error messages.
func consoleTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 1500
	if st, err := f.Stat(); err == nil && st.Size() > max {
		f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if s == "" {
		return "; console " + path + " is empty"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	return "; console " + path + ": " + strings.Join(lines, " | ")
}
