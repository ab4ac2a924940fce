package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hangar-vm/hangar/internal/config"
	"github.com/hangar-vm/hangar/server"
	"github.com/hangar-vm/hangar/vmhost/daemon"
)

// composeFile is the part of the Compose specification compose.yaml uses.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Devices     []string          `yaml:"devices"`
	Privileged  bool              `yaml:"privileged"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// interpolation is Compose's ${VAR:-default} and ${VAR}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// expand resolves interpolations as `docker compose up` would with none
// of the variables set: the defaults apply. A variable without a default
// would be empty, which compose.yaml must not rely on.
func expand(t *testing.T, where, s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		sub := interpolation.FindStringSubmatch(m)
		if !strings.Contains(m, "-") {
			t.Errorf("%s: %s has no default: compose up without it would pass an empty value", where, m)
		}
		return sub[2]
	})
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for name, svc := range c.Services {
		for k, v := range svc.Environment {
			svc.Environment[k] = expand(t, name+": "+k, v)
		}
		c.Services[name] = svc
	}
	return c
}

// dockerfile is what the Dockerfile's final stage makes: the binaries it
// builds (go build -o OUT PKG), what it copies from the build stage, its
// ENTRYPOINT, and the packages it installs.
type dockerfile struct {
	goVersion  string            // FROM golang:<version>
	builds     map[string]string // output path -> package
	copies     map[string]string // runtime path -> build-stage path
	entrypoint []string
	apt        []string
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Join continuation lines into instructions.
	var instrs []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	d := dockerfile{builds: map[string]string{}, copies: map[string]string{}}
	goBuild := regexp.MustCompile(`go build [^&]*?-o (\S+) (\./\S+)`)
	aptInstall := regexp.MustCompile(`apt-get install [^&]*`)
	final := false
	for _, in := range instrs {
		op, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(op) {
		case "FROM":
			if v, ok := strings.CutPrefix(strings.Fields(rest)[0], "golang:"); ok {
				d.goVersion = strings.SplitN(v, "-", 2)[0]
			}
			final = !strings.Contains(strings.ToLower(rest), " as ")
		case "RUN":
			for _, m := range goBuild.FindAllStringSubmatch(rest, -1) {
				d.builds[m[1]] = m[2]
			}
			if final {
				for _, m := range aptInstall.FindAllString(rest, -1) {
					for _, w := range strings.Fields(m)[2:] {
						if !strings.HasPrefix(w, "-") {
							d.apt = append(d.apt, w)
						}
					}
				}
			}
		case "COPY":
			if final && strings.HasPrefix(rest, "--from=") {
				f := strings.Fields(rest)
				d.copies[f[2]] = f[1]
			}
		case "ENTRYPOINT":
			if final {
				if err := yaml.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
					t.Fatalf("Dockerfile ENTRYPOINT %s: %v", rest, err)
				}
			}
		}
	}
	return d
}

// envNames is the set of environment variables a daemon reads: one per
// key of its Config (internal/config's schema, the loader the commands
// use) plus the daemon flags' HANGAR_CONFIG and HANGAR_LOG_LEVEL.
func envNames(t *testing.T, cfg any) map[string]bool {
	t.Helper()
	sc, err := config.NewSchema(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"HANGAR_CONFIG": true, "HANGAR_LOG_LEVEL": true}
	for _, k := range sc.Keys() {
		names[k.Env] = true
	}
	return names
}

// TestCompose checks compose.yaml and the Dockerfile against the binaries
// without a Docker engine: the services exist and are wired to each other
// (ports, URLs, tokens, credentials, volumes), every HANGAR_* variable is
// a configuration key the daemon accepts and the configuration it makes
// loads and validates, and the image builds and ships what the services
// run.
func TestCompose(t *testing.T) {
	timed(t)
	c := loadCompose(t)
	d := loadDockerfile(t)
	serverEnv, hostEnv := envNames(t, &server.Config{}), envNames(t, &daemon.Config{})

	// The services and what they run.
	var servers, hosts []string
	for name, svc := range c.Services {
		if svc.Image != "hangar:dev" {
			continue
		}
		argv := append(append([]string{}, d.entrypoint...), svc.Command...)
		switch {
		case slices.Equal(argv, []string{"hangar", "server"}):
			servers = append(servers, name)
		case slices.Equal(argv, []string{"hangar", "host"}):
			hosts = append(hosts, name)
		default:
			t.Errorf("service %s runs %q: want hangar server or hangar host", name, argv)
		}
	}
	slices.Sort(hosts)
	if len(servers) != 1 || len(hosts) < 2 {
		t.Fatalf("want one hangar server and at least two hangar host services, have servers %v, hosts %v", servers, hosts)
	}
	srvName := servers[0]
	srv := c.Services[srvName]
	if srv.Build == nil {
		t.Errorf("service %s has no build: the image hangar:dev is built from the Dockerfile", srvName)
	}
	minio, ok := c.Services["minio"]
	if !ok {
		t.Fatal("no minio service")
	}
	if minio.Healthcheck == nil || len(minio.Healthcheck.Test) == 0 {
		t.Error("minio has no health check")
	}

	// Every variable is a key; the configuration each service gets loads
	// and validates like the command would load it.
	loadEnv := func(name string, env map[string]string, known map[string]bool, dst any) {
		t.Helper()
		for k := range env {
			if !known[k] {
				t.Errorf("service %s: %s is not a configuration key of its daemon", name, k)
			}
		}
		sc, err := config.NewSchema(dst)
		if err != nil {
			t.Fatal(err)
		}
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		if err := sc.Load(dst, config.Sources{LookupEnv: lookup}); err != nil {
			t.Errorf("service %s: its environment does not make a valid configuration: %v", name, err)
		}
	}
	scfg := server.Config{}.WithDefaults()
	loadEnv(srvName, srv.Environment, serverEnv, &scfg)
	scfg = scfg.WithDefaults()
	if err := scfg.Validate(); err != nil {
		t.Errorf("service %s: %v", srvName, err)
	}
	hcfgs := map[string]daemon.Config{}
	for _, name := range hosts {
		h := daemon.Config{}.WithDefaults()
		loadEnv(name, c.Services[name].Environment, hostEnv, &h)
		hcfgs[name] = h.WithDefaults()
	}

	// The API is published on the port the server listens on.
	_, srvPort, _ := net.SplitHostPort(scfg.Listen)
	if !publishes(srv.Ports, srvPort) {
		t.Errorf("service %s listens on %s but publishes %v", srvName, scfg.Listen, srv.Ports)
	}
	checkVolume(t, c, srvName, scfg.StateDir)

	// MinIO, its credentials and the bucket.
	user, pass := expand(t, "minio", minio.Environment["MINIO_ROOT_USER"]), expand(t, "minio", minio.Environment["MINIO_ROOT_PASSWORD"])
	checkStore := func(name string, endpoint, bucket, access, secret string) {
		t.Helper()
		host, port, err := net.SplitHostPort(endpoint)
		if err != nil || host != "minio" || !slices.Contains(minio.Command, ":"+port) {
			t.Errorf("service %s: store endpoint %q is not the minio service (command %v)", name, endpoint, minio.Command)
		}
		if access != user || secret != pass {
			t.Errorf("service %s: store credentials are not MinIO's root credentials", name)
		}
		init := c.Services["minio-init"]
		mb := regexp.MustCompile(`mc mb --ignore-existing local/` + regexp.QuoteMeta(bucket) + `(\s|$)`)
		if !mb.MatchString(strings.Join(init.Command, " ")) {
			t.Errorf("service %s: bucket %q is not created by minio-init (%v)", name, bucket, init.Command)
		}
		if _, ok := srv.DependsOn["minio-init"]; name == srvName && !ok {
			t.Errorf("service %s does not wait for minio-init", name)
		}
	}
	checkStore(srvName, scfg.Store.S3.Endpoint, scfg.Store.S3.Bucket, scfg.Store.S3.AccessKey, scfg.Store.S3.SecretKey.Reveal())
	checkVolume(t, c, "minio", "/data")

	dataVolumes := map[string]string{}
	for _, name := range hosts {
		svc, h := c.Services[name], hcfgs[name]
		if err := h.Validate(); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		if !svc.Privileged || !slices.Contains(svc.Devices, "/dev/kvm:/dev/kvm") {
			t.Errorf("service %s: want privileged with /dev/kvm, have privileged %v devices %v", name, svc.Privileged, svc.Devices)
		}
		if h.ClusterToken != scfg.Auth.ClusterToken {
			t.Errorf("service %s: cluster_token differs from the server's", name)
		}
		u, err := url.Parse(h.ServerURL)
		if err != nil || u.Hostname() != srvName || u.Port() != srvPort {
			t.Errorf("service %s: server_url %q is not the %s service's port %s", name, h.ServerURL, srvName, srvPort)
		}
		_, port, _ := net.SplitHostPort(h.Listen)
		if a, err := url.Parse(h.AdvertiseAddress); err != nil || a.Hostname() != name || a.Port() != port {
			t.Errorf("service %s: advertise_address %q is not http://%s:%s (listen %s)", name, h.AdvertiseAddress, name, port, h.Listen)
		}
		if other, dup := dataVolumes[checkVolume(t, c, name, h.DataDir)]; dup {
			t.Errorf("services %s and %s share their data volume", name, other)
		}
		dataVolumes[checkVolume(t, c, name, h.DataDir)] = name
		checkStore(name, h.Store.S3.Endpoint, h.Store.S3.Bucket, h.Store.S3.AccessKey, h.Store.S3.SecretKey.Reveal())
		if from, ok := d.copies[h.Image.Dir]; !ok || !strings.Contains(from, "image") {
			t.Errorf("service %s: image.dir %s is not where the Dockerfile puts the guest image (copies %v)", name, h.Image.Dir, d.copies)
		}
	}
	ids := map[string]bool{}
	for _, h := range hcfgs {
		if ids[h.HostID] {
			t.Errorf("host_id %s used twice", h.HostID)
		}
		ids[h.HostID] = true
	}

	// The Dockerfile builds the binary the services run, from packages
	// that exist, with the module's Go version, and ships QEMU.
	if d.entrypoint == nil || len(d.entrypoint) == 0 {
		t.Fatal("Dockerfile: no ENTRYPOINT in the final stage")
	}
	bin := "/usr/local/bin/" + d.entrypoint[0]
	from, ok := d.copies[bin]
	if !ok {
		t.Errorf("Dockerfile: the final stage does not put %s in place (copies %v)", bin, d.copies)
	} else if pkg := d.builds[from]; pkg != "./cmd/hangar" {
		t.Errorf("Dockerfile: %s comes from %s, built from %q, want ./cmd/hangar (builds %v)", bin, from, pkg, d.builds)
	}
	for out, pkg := range d.builds {
		if st, err := os.Stat(filepath.Join("..", pkg)); err != nil || !st.IsDir() {
			t.Errorf("Dockerfile builds %s from %s, which is not a package directory", out, pkg)
		}
	}
	if !slices.Contains(d.apt, "qemu-system-x86") {
		t.Errorf("Dockerfile: the runtime stage does not install qemu-system-x86 (installs %v)", d.apt)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil || d.goVersion != string(m[1]) {
		t.Errorf("Dockerfile builds with golang:%s, go.mod says go %s", d.goVersion, m[1])
	}
	t.Logf("compose: %s, %v; %d server keys, %d host keys known", srvName, hosts, len(serverEnv), len(hostEnv))
}

// publishes reports whether ports (Compose short syntax,
// [ip:]host:container) publish the container port.
func publishes(ports []string, container string) bool {
	for _, p := range ports {
		f := strings.Split(strings.SplitN(p, "/", 2)[0], ":")
		if f[len(f)-1] == container {
			return true
		}
	}
	return false
}

// checkVolume requires a named volume, declared at the top level, mounted
// at dir in service name, and returns its name.
func checkVolume(t *testing.T, c composeFile, name, dir string) string {
	t.Helper()
	for _, v := range c.Services[name].Volumes {
		src, dst, ok := strings.Cut(v, ":")
		if !ok || strings.SplitN(dst, ":", 2)[0] != dir {
			continue
		}
		if _, declared := c.Volumes[src]; !declared {
			t.Errorf("service %s mounts %q at %s, which is not a declared named volume", name, src, dir)
		}
		return src
	}
	t.Errorf("service %s keeps %s on no volume (volumes %v)", name, dir, c.Services[name].Volumes)
	return fmt.Sprintf("(none for %s)", name)
}
