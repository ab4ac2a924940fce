package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// hostEntry is one registered host daemon. Guarded by Server.mu.
type hostEntry struct {
	id       string
	address  string
	version  string
	capacity api.Resources
	images   map[string]string
	client   HostClient
	// lastSeen is the server's clock at the last registration or
	// heartbeat; availability is computed from it on every read, so no
	// timer has to flip it.
	lastSeen      time.Time
	lastHeartbeat *time.Time
	hb            *hostapi.Heartbeat
	// uploads are the snapshots whose upload jobs the last heartbeat
	// listed; one that leaves the list has ended (committed or not).
	uploads map[string]bool
}

// hostTimeout is how long a host may stay silent and still be available.
func (s *Server) hostTimeout() time.Duration {
	return time.Duration(s.cfg.Hosts.HeartbeatInterval) * time.Duration(s.cfg.Hosts.MissedHeartbeats)
}

func (s *Server) availableLocked(h *hostEntry) bool {
	return h != nil && s.now().Sub(h.lastSeen) <= s.hostTimeout()
}

func (s *Server) hostStateLocked(h *hostEntry) api.HostState {
	if s.availableLocked(h) {
		return api.HostStateAvailable
	}
	return api.HostStateUnavailable
}

func (s *Server) hostCounts() map[api.HostState]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[api.HostState]int{}
	for _, h := range s.hosts {
		n[s.hostStateLocked(h)]++
	}
	return n
}

// usedLocked is what the instances placed on host id take: those the
// server knows Running or being created, restored or forked there, or what
// the host itself reported allocated, whichever is more (the host may run
// instances the server has not learned about yet).
func (s *Server) usedLocked(h *hostEntry) (used api.Resources, count int32) {
	for _, r := range s.instances {
		if r.inst.Host == nil || *r.inst.Host != h.id {
			continue
		}
		if r.holdsResources() {
			used.MemoryMib += int64(r.inst.MemoryMib)
			used.Vcpus += r.inst.Vcpus
		}
		count++
	}
	if h.hb != nil {
		used.MemoryMib = max(used.MemoryMib, h.hb.Allocated.MemoryMib)
		used.Vcpus = max(used.Vcpus, h.hb.Allocated.Vcpus)
	}
	return used, count
}

func (s *Server) freeLocked(h *hostEntry) api.Resources {
	used, _ := s.usedLocked(h)
	return api.Resources{MemoryMib: max(0, h.capacity.MemoryMib-used.MemoryMib), Vcpus: max(0, h.capacity.Vcpus-used.Vcpus)}
}

// candidatesLocked lists every host for place, with what it holds of
// snapshot sr (nil for a new instance).
func (s *Server) candidatesLocked(sr *snapshotRec) []candidate {
	out := make([]candidate, 0, len(s.hosts))
	for _, h := range s.hosts {
		c := candidate{ID: h.id, Available: s.availableLocked(h), Free: s.freeLocked(h)}
		if sr != nil {
			c.HasLocal = sr.hosts[h.id]
			c.HasCached = sr.cached[h.id] && h.hb != nil && h.hb.Cache.Chunks > 0
		}
		out = append(out, c)
	}
	return out
}

func (s *Server) hostViewLocked(h *hostEntry) api.Host {
	_, count := s.usedLocked(h)
	v := api.Host{
		Id:            h.id,
		Address:       h.address,
		State:         s.hostStateLocked(h),
		Capacity:      h.capacity,
		Free:          s.freeLocked(h),
		Instances:     count,
		LastHeartbeat: h.lastHeartbeat,
	}
	if h.version != "" {
		ver := h.version
		v.Version = &ver
	}
	if h.hb != nil {
		v.CacheBytes = h.hb.Cache.Bytes
		n := h.hb.Cache.Chunks
		v.CacheChunks = &n
	}
	return v
}

// decodeStrict decodes one JSON value from the request body: unknown
// fields, trailing data and a body over the limit are errors.
func decodeStrict(c *gin.Context, v any) error {
	if c.Request.Body == nil {
		return errors.New("empty body")
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// registerHost serves POST /cluster/v1/hosts.
func (s *Server) registerHost(c *gin.Context) {
	var req hostapi.RegisterRequest
	if err := decodeStrict(c, &req); err != nil {
		requestError(c, err)
		return
	}
	if err := validateRegister(&req); err != nil {
		fail(c, err)
		return
	}
	s.mu.Lock()
	h := s.hosts[req.Id]
	var client HostClient
	if h == nil || h.address != req.Address {
		// Dial outside nothing: dialing builds a client, it does no I/O.
		cl, err := s.dial(req.Id, req.Address)
		if err != nil {
			s.mu.Unlock()
			fail(c, badRequest("address: %v", err))
			return
		}
		client = cl
	}
	if h == nil {
		h = &hostEntry{id: req.Id}
		s.hosts[req.Id] = h
	}
	if client != nil {
		h.client = client
	}
	h.address = req.Address
	h.capacity = req.Capacity
	h.version = ""
	if req.Version != nil {
		h.version = *req.Version
	}
	h.images = nil
	if req.ImageDigests != nil {
		h.images = *req.ImageDigests
	}
	h.lastSeen = s.now()
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("host registered", "host", req.Id, "address", req.Address,
		"memory_mib", req.Capacity.MemoryMib, "vcpus", req.Capacity.Vcpus)
	c.JSON(200, hostapi.RegisterResponse{HeartbeatIntervalSeconds: s.heartbeatSeconds()})
}

func (s *Server) heartbeatSeconds() int32 {
	return int32(time.Duration(s.cfg.Hosts.HeartbeatInterval) / time.Second)
}

func validateRegister(r *hostapi.RegisterRequest) error {
	var fields []api.FieldError
	add := func(f, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: f, Message: fmt.Sprintf(format, args...)})
	}
	if err := api.ValidateID("host", r.Id); err != nil {
		add("id", "%v", err)
	}
	if u, err := url.Parse(r.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(r.Address) > 2048 {
		add("address", "%q is not an http(s) base URL of at most 2048 bytes", truncate(r.Address, 80))
	}
	if r.Capacity.MemoryMib < 0 || r.Capacity.Vcpus < 0 {
		add("capacity", "memory_mib and vcpus must be >= 0")
	}
	if r.Version != nil && len(*r.Version) > 128 {
		add("version", "longer than 128 bytes")
	}
	if r.ImageDigests != nil && len(*r.ImageDigests) > 64 {
		add("image_digests", "%d images, at most 64", len(*r.ImageDigests))
	}
	return fieldsError(fields)
}

// fieldsError is one invalid_request listing every problem, or nil.
func fieldsError(fields []api.FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	msg := ""
	for i, f := range fields {
		if i > 0 {
			msg += "; "
		}
		msg += f.Field + ": " + f.Message
	}
	e := api.NewError(api.ErrorCodeInvalidRequest, "%s", msg)
	e.Fields = &fields
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// heartbeatHost serves PUT /cluster/v1/hosts/{id}/heartbeat.
func (s *Server) heartbeatHost(c *gin.Context) {
	id := c.Param("id")
	if err := api.ValidateID("host", id); err != nil {
		fail(c, err)
		return
	}
	var hb hostapi.Heartbeat
	if err := decodeStrict(c, &hb); err != nil {
		requestError(c, err)
		return
	}
	if err := validateHeartbeat(&hb); err != nil {
		fail(c, err)
		return
	}
	s.mu.Lock()
	h := s.hosts[id]
	if h == nil {
		s.mu.Unlock()
		fail(c, api.NewError(api.ErrorCodeNotFound, "host %s is not registered: register, then heartbeat", id))
		return
	}
	now := s.now()
	h.lastSeen = now
	t := now.UTC()
	h.lastHeartbeat = &t
	h.capacity = hb.Capacity
	h.hb = &hb
	s.applyHeartbeatLocked(h, &hb)
	s.notifyLocked()
	s.mu.Unlock()
	s.kickSync()
	c.JSON(200, hostapi.RegisterResponse{HeartbeatIntervalSeconds: s.heartbeatSeconds()})
}

func validateHeartbeat(hb *hostapi.Heartbeat) error {
	var fields []api.FieldError
	add := func(f, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: f, Message: fmt.Sprintf(format, args...)})
	}
	const maxItems = 10000
	if len(hb.Instances) > maxItems || len(hb.Snapshots) > maxItems || len(hb.Jobs) > maxItems {
		add("instances", "at most %d instances, snapshots and jobs each", maxItems)
	}
	if hb.Capacity.MemoryMib < 0 || hb.Capacity.Vcpus < 0 || hb.Allocated.MemoryMib < 0 || hb.Allocated.Vcpus < 0 {
		add("capacity", "memory_mib and vcpus must be >= 0")
	}
	for i, in := range hb.Instances {
		if api.ValidateID("instance", in.Id) != nil || !in.State.Valid() {
			add(fmt.Sprintf("instances[%d]", i), "bad id or state")
		}
	}
	for i, sn := range hb.Snapshots {
		if api.ValidateID("snapshot", sn.Id) != nil || !sn.State.Valid() {
			add(fmt.Sprintf("snapshots[%d]", i), "bad id or state")
		}
	}
	return fieldsError(fields)
}

// hostsSorted returns the hosts sorted by id.
func (s *Server) hostsSortedLocked() []*hostEntry {
	out := make([]*hostEntry, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
