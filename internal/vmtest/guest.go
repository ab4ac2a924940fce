package vmtest

import (
	"context"
	"fmt"
	"time"

	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

// WaitCounterPast polls the guest's in-memory counter through c until it
// is past from, which proves the guest runs (the counter advances only
// while it does). It gives up when ctx ends, with an error that names the
// counter where it stuck; an agent error is returned as is.
func WaitCounterPast(ctx context.Context, c *agent.Client, from uint64) error {
	for {
		st, err := c.State(ctx)
		if err != nil {
			return err
		}
		if st.Counter > from {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("counter stuck at %d (want past %d): %w", st.Counter, from, ctx.Err())
		case <-time.After(agent.CounterInterval):
		}
	}
}
