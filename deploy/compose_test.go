package deploy_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const composeFile = "docker-compose.yml"

// composeProject is the part of the Compose specification the checks read.
type composeProject struct {
	Version  *string                   `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]any            `yaml:"networks"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image         string        `yaml:"image"`
	Command       any           `yaml:"command"`
	Entrypoint    any           `yaml:"entrypoint"`
	ContainerName string        `yaml:"container_name"`
	Hostname      string        `yaml:"hostname"`
	Ports         []any         `yaml:"ports"`
	Volumes       []any         `yaml:"volumes"`
	Networks      any           `yaml:"networks"`
	DependsOn     any           `yaml:"depends_on"`
	Scale         *int          `yaml:"scale"`
	Deploy        composeDeploy `yaml:"deploy"`
	ReadOnly      bool          `yaml:"read_only"`
	Tmpfs         any           `yaml:"tmpfs"`
}

type composeDeploy struct {
	Replicas *int `yaml:"replicas"`
}

func loadCompose(t *testing.T) composeProject {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	var p composeProject
	if err := yaml.Unmarshal(b, &p); err != nil { // resolves the x-ringtrain anchor and << merges
		t.Fatalf("%s: %v", composeFile, err)
	}
	return p
}

// interpolate replaces ${VAR:-default} and ${VAR-default} with the default
// and ${VAR} with "", as Compose does when the variables are unset.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

func interpolate(s string) string {
	return interpolation.ReplaceAllString(s, "$2")
}

// stringList reads a Compose field that is a list of strings or one string.
func stringList(t *testing.T, where string, v any) []string {
	t.Helper()
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return strings.Fields(interpolate(v))
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				t.Errorf("%s: %v is not a string", where, e)
			}
			out = append(out, interpolate(s))
		}
		return out
	}
	t.Errorf("%s: %v is neither a string nor a list", where, v)
	return nil
}

// keysOrList reads networks/depends_on: a list of names or a map by name.
func keysOrList(t *testing.T, where string, v any) []string {
	t.Helper()
	if m, ok := v.(map[string]any); ok {
		return sortedKeys(m)
	}
	return stringList(t, where, v)
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)
	if p.Version != nil {
		t.Errorf("%s: drop the top-level version key (obsolete in Compose v2, and not needed by docker-compose 1.29)", composeFile)
	}
	roles := map[string][]string{} // "etcd", "coordinator", "worker" → services
	etcdHosts := map[string]bool{}
	etcdFS := etcdFlags(t)
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		where := composeFile + " service " + name
		image := interpolate(s.Image)
		repo, _, _ := strings.Cut(image, ":")
		if s.Entrypoint != nil {
			t.Errorf("%s: entrypoint overrides the image's; put the arguments in command", where)
		}
		args := stringList(t, where+" command", s.Command)

		// References: networks, volumes, depends_on.
		nets := keysOrList(t, where+" networks", s.Networks)
		if len(nets) == 0 {
			t.Errorf("%s: attach it to the project's network explicitly", where)
		}
		for _, n := range nets {
			if _, ok := p.Networks[n]; !ok {
				t.Errorf("%s: network %q is not declared under networks:", where, n)
			}
		}
		for _, d := range keysOrList(t, where+" depends_on", s.DependsOn) {
			if _, ok := p.Services[d]; !ok {
				t.Errorf("%s: depends_on %q, which is not a service", where, d)
			}
		}
		mounts := map[string]string{} // target → source
		for _, v := range s.Volumes {
			spec, ok := v.(string)
			if !ok {
				t.Errorf("%s: use the short volume syntax SOURCE:TARGET[:ro], got %v", where, v)
				continue
			}
			parts := strings.Split(interpolate(spec), ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q has no target (anonymous volumes are lost on down)", where, spec)
				continue
			}
			src, target := parts[0], parts[1]
			mounts[target] = src
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("%s: bind mount source %s: %v", where, src, err)
				}
			} else if _, ok := p.Volumes[src]; !ok {
				t.Errorf("%s: volume %q is not declared under volumes:", where, src)
			}
		}

		switch {
		case strings.HasSuffix(repo, "ringtrain-etcd") || strings.HasSuffix(repo, "/etcd"):
			roles["etcd"] = append(roles["etcd"], name)
			ep := checkEtcdArgs(t, where, args, etcdFS)
			checkEtcdSecure(t, where, ep, func(file string) bool { return underMount(file, mounts, certsVolumes(t, p)) })
			fl := ep.Flags
			if fl["name"] == "" || !strings.Contains(fl["initial-cluster"], fl["name"]+"=") {
				t.Errorf("%s: --name %q is not in --initial-cluster %q", where, fl["name"], fl["initial-cluster"])
			}
			if dd := fl["data-dir"]; dd == "" || !underMount(dd, mounts, p.Volumes) {
				t.Errorf("%s: --data-dir %q is not on a named volume: etcd's data would die with the container", where, dd)
			}
			for _, u := range strings.Split(fl["advertise-client-urls"], ",") {
				if pu, err := url.Parse(u); err == nil {
					etcdHosts[pu.Host] = true
				}
			}
		case strings.HasSuffix(repo, "ringtrain"):
			sub, fp := checkRingtrainArgs(t, where, args)
			roles[sub] = append(roles[sub], name)
			checkComposeRingtrain(t, where, name, sub, s, fp, mounts, p)
		default:
			t.Errorf("%s: image %q is neither ringtrain nor ringtrain-etcd (`make images` builds both)", where, image)
		}
	}
	if len(roles["etcd"]) != 1 || len(roles["coordinator"]) != 2 || len(roles["worker"]) != 1 {
		t.Errorf("%s: want one etcd, two coordinators and one worker service, got %v", composeFile, roles)
	}
	// Every --etcd endpoint is an advertised etcd client URL.
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		args := stringList(t, name, s.Command)
		for i, a := range args {
			v, ok := strings.CutPrefix(a, "--etcd=")
			if !ok && a == "--etcd" && i+1 < len(args) {
				v, ok = args[i+1], true
			}
			if !ok {
				continue
			}
			for _, ep := range strings.Split(v, ",") {
				if u, err := url.Parse(ep); err != nil || !etcdHosts[u.Host] {
					t.Errorf("%s service %s: --etcd endpoint %q is not an etcd service's advertised client URL %v", composeFile, name, ep, sortedKeys(etcdHosts))
				}
			}
		}
	}
}

// certsVolumes are the named volumes the one-shot `ringtrain certs`
// service fills: where the run's secrets live.
func certsVolumes(t *testing.T, p composeProject) map[string]any {
	t.Helper()
	out := map[string]any{}
	for name, s := range p.Services {
		if args := stringList(t, name, s.Command); len(args) == 0 || args[0] != "certs" {
			continue
		}
		for _, v := range s.Volumes {
			if spec, ok := v.(string); ok {
				src, _, _ := strings.Cut(spec, ":")
				if _, named := p.Volumes[src]; named {
					out[src] = p.Volumes[src]
				}
			}
		}
	}
	if len(out) == 0 {
		t.Errorf("%s: no service runs `ringtrain certs` into a named volume", composeFile)
	}
	return out
}

// underMount reports whether path lies on a named volume's mount.
func underMount(path string, mounts map[string]string, named map[string]any) bool {
	for target, src := range mounts {
		if _, ok := named[src]; ok && (path == target || strings.HasPrefix(path, strings.TrimSuffix(target, "/")+"/")) {
			return true
		}
	}
	return false
}

func checkComposeRingtrain(t *testing.T, where, name, sub string, s composeService, fp parsedArgs, mounts map[string]string, p composeProject) {
	t.Helper()
	if cfg := fp.Flags["config"]; cfg != "" {
		src, ok := mounts[cfg]
		if !ok {
			t.Errorf("%s: --config %s is not mounted", where, cfg)
		} else if b, err := os.ReadFile(filepath.Join(repoRoot, src)); err != nil {
			t.Errorf("%s: --config source %s: %v", where, src, err)
		} else {
			checkRunFile(t, where+" "+src, b)
		}
	}
	if !s.ReadOnly {
		t.Errorf("%s: set read_only: true, as on Kubernetes (readOnlyRootFilesystem)", where)
	}
	if sub == "coordinator" {
		checkProvisioner(t, where, fp)
	}
	if sub != "worker" {
		// A coordinator's --checkpoint-dir only shows the workers'
		// checkpoints on its dashboard: it must be their volume.
		if dir, ok := fp.Flags["checkpoint-dir"]; ok {
			if src := mounts[dir]; src == "" {
				t.Errorf("%s: --checkpoint-dir %q is not mounted; give it only with the checkpoints volume", where, dir)
			} else if _, ok := p.Volumes[src]; !ok {
				t.Errorf("%s: --checkpoint-dir %s should be the workers' shared named volume, not %s", where, dir, src)
			}
		}
		return
	}
	// Workers must scale: nothing fixed per container.
	if s.ContainerName != "" || s.Hostname != "" {
		t.Errorf("%s: container_name/hostname prevent `--scale %s=N`", where, name)
	}
	for _, port := range s.Ports {
		if ps, ok := port.(string); !ok || strings.Contains(ps, ":") {
			t.Errorf("%s: port %v publishes a fixed host port; replicas would collide", where, port)
		}
	}
	for _, f := range []string{"id", "advertise", "gossip-advertise"} {
		if _, ok := fp.Flags[f]; ok {
			t.Errorf("%s: --%s is fixed, but every replica needs its own; leave it to default from the hostname", where, f)
		}
	}
	n := 0
	if s.Deploy.Replicas != nil {
		n = *s.Deploy.Replicas
	}
	if s.Scale != nil {
		if n != 0 && n != *s.Scale {
			t.Errorf("%s: scale %d and deploy.replicas %d differ (Compose v2 refuses that)", where, *s.Scale, n)
		}
		n = *s.Scale
	}
	if n != 3 {
		t.Errorf("%s: want 3 replicas (deploy.replicas), got %d", where, n)
	}
	dir := fp.Flags["checkpoint-dir"]
	if src := mounts[dir]; dir == "" || src == "" {
		t.Errorf("%s: --checkpoint-dir %q is not a mounted volume", where, dir)
	} else if _, ok := p.Volumes[src]; !ok {
		t.Errorf("%s: --checkpoint-dir %s should be the shared named volume, not %s", where, dir, src)
	}
}

// TestComposeConfig has the Compose tool itself validate the file
// (`docker compose` or docker-compose; neither needs the engine). Without
// one it is skipped, except in CI ($CI set), where it fails.
func TestComposeConfig(t *testing.T) {
	tools := composeTools()
	if len(tools) == 0 {
		missingTool(t, "no Compose tool (docker compose, docker-compose) is installed to validate "+composeFile, installCompose)
	}
	for _, tool := range tools {
		cmd := exec.Command(tool[0], append(tool[1:], "-f", composeFile, "config", "-q")...)
		cmd.Dir = repoRoot
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
		}
		// The worker service must come up with three replicas.
		cmd = exec.Command(tool[0], append(tool[1:], "-f", composeFile, "config")...)
		cmd.Dir = repoRoot
		b, err := cmd.Output()
		if err != nil {
			t.Errorf("%s: %v", strings.Join(cmd.Args, " "), err)
			continue
		}
		var resolved composeProject
		if err := yaml.Unmarshal(b, &resolved); err != nil {
			t.Errorf("%s: %v", strings.Join(cmd.Args, " "), err)
			continue
		}
		w := resolved.Services["worker"]
		if w.Deploy.Replicas == nil && w.Scale == nil {
			t.Errorf("%s: the worker service lost its replica count: %s", strings.Join(cmd.Args, " "), fmt.Sprint(w))
		}
	}
}
