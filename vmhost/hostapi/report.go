package hostapi

import (
	"context"
	"fmt"
	"strings"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
	"github.com/hangar-vm/hangar/vmhost/manager"
)

// maxReportItems is the spec's bound on each list of a heartbeat.
const maxReportItems = 10000

// Report builds a heartbeat: capacity and allocation, every instance, the
// snapshots whose files the host holds (standby and named), the running jobs, the cache
// summary and the host's health. It implements register.Reporter.
func (s *Server) Report(ctx context.Context) (hostapi.Heartbeat, error) {
	ins, err := s.m.List(ctx)
	if err != nil {
		return hostapi.Heartbeat{}, fmt.Errorf("list instances: %w", err)
	}
	jobs, err := s.jobsByID(ctx)
	if err != nil {
		return hostapi.Heartbeat{}, fmt.Errorf("list jobs: %w", err)
	}
	hb := hostapi.Heartbeat{
		Capacity:  s.opts.Capacity,
		Instances: []api.Instance{},
		Snapshots: []api.Snapshot{},
		Jobs:      []api.Job{},
		Health:    hostapi.HostHealth{Status: hostapi.HostHealthStatusOk},
	}
	s.mu.Lock()
	hb.Allocated = s.allocatedLocked(ins)
	s.mu.Unlock()
	for i := len(ins) - 1; i >= 0 && len(hb.Instances) < maxReportItems; i-- {
		in := ins[i]
		hb.Instances = append(hb.Instances, s.instance(in, jobs))
		if in.Snapshot != nil && in.Snapshot.Local && len(hb.Snapshots) < maxReportItems {
			hb.Snapshots = append(hb.Snapshots, s.snapshot(in, jobs))
		}
	}
	// Named snapshots outlive their instances, so they are reported apart
	// from them: the server learns of their uploads and of a host that
	// still holds their files from here, as for standby snapshots.
	named, err := s.LocalNamedSnapshots(ctx)
	if err != nil {
		return hostapi.Heartbeat{}, fmt.Errorf("list named snapshots: %w", err)
	}
	for _, sn := range named {
		if len(hb.Snapshots) >= maxReportItems {
			break
		}
		hb.Snapshots = append(hb.Snapshots, sn)
	}
	var problems []string
	for _, j := range jobs {
		if len(hb.Jobs) < maxReportItems && j.State != manager.JobFailed {
			hb.Jobs = append(hb.Jobs, job(j))
		}
		if j.Error != "" {
			problems = append(problems, fmt.Sprintf("upload %s: %s", j.ID, j.Error))
		}
	}
	if s.opts.Cache != nil {
		st := s.opts.Cache.Stats()
		hb.Cache = hostapi.CacheSummary{Chunks: st.Entries, Bytes: st.Bytes, LimitBytes: st.MaxBytes}
	}
	if s.opts.Health != nil {
		if err := s.opts.Health(); err != nil {
			problems = append([]string{err.Error()}, problems...)
		}
	}
	if len(problems) > 0 {
		msg := strings.Join(problems, "; ")
		if len(msg) > 4096 {
			msg = msg[:4093] + "..."
		}
		hb.Health = hostapi.HostHealth{Status: hostapi.HostHealthStatusDegraded, Message: &msg}
	}
	return hb, nil
}
