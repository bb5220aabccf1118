package mlsappservice

import (
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeConfig is the part of `docker-compose config` output checked here.
type composeConfig struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		// docker-compose v1 prints the short form, source:target[:mode].
		Volumes []string `yaml:"volumes"`
	} `yaml:"services"`
}

// TestComposeFile validates docker-compose.yml with docker-compose itself
// (no Docker engine needed for `config`) and checks that the stack runs
// the configuration and Synapse version the tests run.
func TestComposeFile(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose is not installed: run ./scripts/test, which installs it (Debian package docker-compose)")
	}
	out, err := exec.Command(bin, "-f", "docker-compose.yml", "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cc composeConfig
	if err := yaml.Unmarshal(out, &cc); err != nil {
		t.Fatalf("parse docker-compose config output: %v", err)
	}
	for _, name := range []string{"postgres", "synapse", "setup", "mls-appservice"} {
		if _, ok := cc.Services[name]; !ok {
			t.Fatalf("service %s missing", name)
		}
	}
	if img := cc.Services["postgres"].Image; !strings.HasPrefix(img, "postgres:15") {
		t.Errorf("postgres image %s, want PostgreSQL 15 as in the tests", img)
	}

	script, err := os.ReadFile("scripts/env.sh")
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`(?m)^SYNAPSE_VERSION=(\S+)$`).FindSubmatch(script)
	if pinned == nil {
		t.Fatal("scripts/env.sh does not pin SYNAPSE_VERSION")
	}
	if want := "matrixdotorg/synapse:v" + string(pinned[1]); cc.Services["synapse"].Image != want {
		t.Errorf("synapse image %s, want %s (the version the tests run)", cc.Services["synapse"].Image, want)
	}
	mountsHomeserver := false
	for _, v := range cc.Services["synapse"].Volumes {
		if strings.Contains(v, "deploy/synapse/homeserver.yaml:"+cc.Services["synapse"].Environment["SYNAPSE_CONFIG_PATH"]) {
			mountsHomeserver = true
		}
	}
	if !mountsHomeserver {
		t.Error("synapse does not run deploy/synapse/homeserver.yaml, the file the tests render their homeserver.yaml from")
	}

	// The service's database URI must match the postgres service.
	cfgData, err := os.ReadFile("deploy/mls-appservice/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Database struct {
			URI string `yaml:"uri"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Database.URI)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	env := cc.Services["postgres"].Environment
	if u.Hostname() != "postgres" || u.User.Username() != env["POSTGRES_USER"] || pw != env["POSTGRES_PASSWORD"] ||
		strings.TrimPrefix(u.Path, "/") != env["POSTGRES_DB"] {
		t.Errorf("deploy/mls-appservice/config.yaml database.uri does not match the postgres service")
	}

	// Synapse runs on the same PostgreSQL service, in a database that the
	// service's init script creates, as the user the service creates.
	hsData, err := os.ReadFile("deploy/synapse/homeserver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var hs struct {
		Database struct {
			Name string            `yaml:"name"`
			Args map[string]string `yaml:"args"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal(hsData, &hs); err != nil {
		t.Fatal(err)
	}
	a := hs.Database.Args
	if hs.Database.Name != "psycopg2" || a["host"] != "postgres" || a["user"] != env["POSTGRES_USER"] ||
		a["password"] != env["POSTGRES_PASSWORD"] {
		t.Errorf("Synapse's database %+v is not the postgres service", hs.Database)
	}
	mountsInit := false
	for _, v := range cc.Services["postgres"].Volumes {
		if strings.Contains(v, "deploy/postgres:/docker-entrypoint-initdb.d") {
			mountsInit = true
		}
	}
	init, err := os.ReadFile("deploy/postgres/10-synapse.sql")
	if err != nil || !mountsInit {
		t.Fatalf("postgres does not run deploy/postgres/10-synapse.sql on first start (%v)", err)
	}
	create := regexp.MustCompile(`CREATE DATABASE (\w+)[^;]*OWNER (\w+)[^;]*LC_COLLATE 'C'[^;]*LC_CTYPE 'C'`).FindSubmatch(init)
	if create == nil || string(create[1]) != a["dbname"] || string(create[2]) != env["POSTGRES_USER"] {
		t.Errorf("deploy/postgres/10-synapse.sql does not create database %s owned by %s with C collation (Synapse refuses others)",
			a["dbname"], env["POSTGRES_USER"])
	}
}

// TestDockerfile checks what cannot be built here (no Docker engine): a
// multi-stage build of a static binary that runs as a non-root user.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("%d stages, want a multi-stage build", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/mls-appservice", "COPY deploy/mls-appservice/config.yaml"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df)
	if user == nil || user[1] == "root" || user[1] == "0" {
		t.Errorf("Dockerfile does not switch to a non-root user")
	}
}
