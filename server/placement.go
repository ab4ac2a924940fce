package server

import (
	"fmt"
	"sort"

	"github.com/hangar-vm/hangar/api"
)

// candidate is one host as placement sees it.
type candidate struct {
	ID        string
	Available bool
	Free      api.Resources
	// HasLocal: the host holds the snapshot's raw files (a restore there
	// downloads nothing). HasCached: its chunk cache probably holds the
	// snapshot's chunks (it uploaded, restored or forked it before).
	HasLocal, HasCached bool
}

// demand is what an instance needs, and the host asked for, if any.
type demand struct {
	MemoryMiB int64
	VCPUs     int32
	Host      string
}

// Placement reasons, recorded in the placements metric.
const (
	reasonExplicit = "explicit"
	reasonLocal    = "local"
	reasonCached   = "cached"
	reasonFree     = "free"
)

func (c candidate) fits(d demand) bool {
	return c.Free.MemoryMib >= d.MemoryMiB && c.Free.Vcpus >= d.VCPUs
}

// place chooses the host for d among cands. An explicit host is honoured
// or refused: unknown 404 not_found, unavailable 503 host_unavailable,
// without room 503 no_capacity. Otherwise, among the available hosts with
// room: one holding the snapshot's files, then one whose cache holds its
// chunks, then the one with the most free memory (then vCPUs, then id, so
// the choice is deterministic). It returns the host id and the reason.
func place(cands []candidate, d demand) (string, string, error) {
	if d.Host != "" {
		for _, c := range cands {
			if c.ID != d.Host {
				continue
			}
			switch {
			case !c.Available:
				return "", "", api.NewError(api.ErrorCodeHostUnavailable, "host %s is unavailable (missed heartbeats)", c.ID)
			case !c.fits(d):
				return "", "", api.NewError(api.ErrorCodeNoCapacity, "host %s has %d MiB and %d vCPUs free; %d MiB and %d vCPUs are needed",
					c.ID, c.Free.MemoryMib, c.Free.Vcpus, d.MemoryMiB, d.VCPUs)
			}
			return c.ID, reasonExplicit, nil
		}
		return "", "", api.NewError(api.ErrorCodeNotFound, "host %s is not registered", d.Host)
	}
	var fit []candidate
	available := 0
	for _, c := range cands {
		if c.Available {
			available++
			if c.fits(d) {
				fit = append(fit, c)
			}
		}
	}
	if len(fit) == 0 {
		if available == 0 {
			return "", "", api.NewError(api.ErrorCodeNoCapacity, "no available host (%d registered, none heartbeating)", len(cands))
		}
		return "", "", api.NewError(api.ErrorCodeNoCapacity, "no available host has %d MiB and %d vCPUs free (%d available hosts)",
			d.MemoryMiB, d.VCPUs, available)
	}
	sort.Slice(fit, func(i, j int) bool {
		a, b := fit[i], fit[j]
		if a.HasLocal != b.HasLocal {
			return a.HasLocal
		}
		if a.HasCached != b.HasCached {
			return a.HasCached
		}
		if a.Free.MemoryMib != b.Free.MemoryMib {
			return a.Free.MemoryMib > b.Free.MemoryMib
		}
		if a.Free.Vcpus != b.Free.Vcpus {
			return a.Free.Vcpus > b.Free.Vcpus
		}
		return a.ID < b.ID
	})
	best := fit[0]
	switch {
	case best.HasLocal:
		return best.ID, reasonLocal, nil
	case best.HasCached:
		return best.ID, reasonCached, nil
	}
	return best.ID, reasonFree, nil
}

// describe is for logs.
func (d demand) String() string {
	return fmt.Sprintf("%d MiB, %d vCPUs", d.MemoryMiB, d.VCPUs)
}
