package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
)

// waitFlags are --wait and --wait-timeout of the commands that start a
// long job.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "block until "+what+", with a progress bar on a terminal")
	cmd.Flags().DurationVar(&w.timeout, "wait-timeout", 0, "give up waiting after this long (0: no limit)")
}

// pollStep reads the resource once: done when the wait is over, the job's
// progress if any, and a short status for a timeout message.
type pollStep func(ctx context.Context) (done bool, p *api.Progress, status string, err error)

// poll calls step every PollInterval until it is done, fails, or ctx or the
// wait timeout ends, drawing a byte progress bar on stderr when it is a
// terminal and --json is off.
func (a *app) poll(ctx context.Context, w waitFlags, desc string, step pollStep) error {
	if w.timeout < 0 {
		return usageErrorf("--wait-timeout %v is negative", w.timeout)
	}
	if w.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.timeout)
		defer cancel()
	}
	var bar *progressbar.ProgressBar
	defer func() {
		if bar != nil {
			_ = bar.Exit()
			fmt.Fprintln(a.o.Stderr)
		}
	}()
	tick := time.NewTicker(a.o.PollInterval)
	defer tick.Stop()
	status := "not read yet"
	for {
		done, p, st, err := step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return a.waitError(ctx, desc, status)
			}
			return err
		}
		status = st
		if p != nil && p.TotalBytes > 0 && !a.json && a.o.IsTerminal(a.o.Stderr) {
			if bar == nil {
				bar = progressbar.NewOptions64(p.TotalBytes,
					progressbar.OptionSetWriter(a.o.Stderr),
					progressbar.OptionSetDescription(desc),
					progressbar.OptionShowBytes(true),
					progressbar.OptionShowCount(),
					progressbar.OptionUseIECUnits(true),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionFullWidth(),
					progressbar.OptionThrottle(100*time.Millisecond),
				)
			}
			if bar.GetMax64() != p.TotalBytes {
				bar.ChangeMax64(p.TotalBytes)
			}
			_ = bar.Set64(min(p.RawBytes, p.TotalBytes))
		}
		if done {
			if bar != nil {
				_ = bar.Set64(bar.GetMax64())
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return a.waitError(ctx, desc, status)
		case <-tick.C:
		}
	}
}

func (a *app) waitError(ctx context.Context, desc, status string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: gave up waiting (--wait-timeout): %s", desc, status)
	}
	return fmt.Errorf("%s: %w (last seen: %s)", desc, ctx.Err(), status)
}

// pollGet polls: get reads the resource, check judges what it read (as a
// pollStep does). It returns what get read last, nil if it never answered.
func pollGet[T any](a *app, ctx context.Context, w waitFlags, desc string,
	get func(context.Context) (*T, error), check func(*T) (done bool, p *api.Progress, status string, err error)) (*T, error) {
	var last *T
	err := a.poll(ctx, w, desc, func(ctx context.Context) (bool, *api.Progress, string, error) {
		v, err := get(ctx)
		if err != nil {
			return false, nil, "", err
		}
		last = v
		return check(v)
	})
	return last, err
}

// waitCentral polls a snapshot until it is central: its upload committed,
// restorable on any host. A snapshot in state error fails the wait with the
// snapshot's error message.
func (a *app) waitCentral(ctx context.Context, c *api.ClientWithResponses, w waitFlags, id string) (*api.Snapshot, error) {
	get := func(ctx context.Context) (*api.Snapshot, error) { return getSnapshot(ctx, c, id) }
	return pollGet(a, ctx, w, "uploading "+id, get, func(s *api.Snapshot) (bool, *api.Progress, string, error) {
		status := "state " + string(s.State)
		if s.Progress != nil {
			status += ", " + progressOf(s.Progress)
		}
		switch s.State {
		case api.SnapshotStateCentral:
			return true, s.Progress, status, nil
		case api.SnapshotStateError:
			return false, nil, status, fmt.Errorf("snapshot %s: upload failed: %s", id, str(s.Error))
		}
		return false, s.Progress, status, nil
	})
}

// waitInstance polls an instance until no job runs on it and it is no
// longer Creating (a restore or fork has resumed the VM). An instance in
// state Error, or a failed job, fails the wait.
func (a *app) waitInstance(ctx context.Context, c *api.ClientWithResponses, w waitFlags, desc, id string) (*api.Instance, error) {
	get := func(ctx context.Context) (*api.Instance, error) { return getInstance(ctx, c, id) }
	return pollGet(a, ctx, w, desc, get, func(i *api.Instance) (bool, *api.Progress, string, error) {
		status := "state " + string(i.State)
		var p *api.Progress
		if i.Job != nil {
			status += fmt.Sprintf(", job %s %s %s", i.Job.Kind, i.Job.State, progressOf(i.Job.Progress))
			p = i.Job.Progress
			if i.Job.State == api.JobStateFailed {
				return false, nil, status, fmt.Errorf("instance %s: %s job failed: %s", id, i.Job.Kind, str(i.Job.Error))
			}
		}
		if i.State == api.InstanceStateError {
			return false, nil, status, fmt.Errorf("instance %s is in state Error: %s", id, str(i.Error))
		}
		running := i.Job != nil && i.Job.State == api.JobStateRunning
		return i.State != api.InstanceStateCreating && !running, p, status, nil
	})
}
