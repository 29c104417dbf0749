package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Where a value came from. The other two are "env MIRRORD_…", naming the
// variable, and "flag --…", naming the flag.
const (
	sourceDefault = "default"
	sourceFile    = "file"
)

// envVar is the variable viper reads for key: MIRRORD_CACHE_MAX_SIZE for
// cache.max_size.
func envVar(key string) string {
	return "MIRRORD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// recordSources says for every key viper holds where its value came
// from, in viper's order of precedence; keys already in sources (flags,
// distros) are left alone.
func recordSources(v *viper.Viper, sources map[string]string) {
	for _, key := range v.AllKeys() {
		if _, ok := sources[key]; ok {
			continue
		}
		switch {
		case os.Getenv(envVar(key)) != "": // viper ignores an empty one
			sources[key] = "env " + envVar(key)
		case v.InConfig(key):
			sources[key] = sourceFile
		default:
			sources[key] = sourceDefault
		}
	}
}

// source is where the value at key came from: the entry of key or of the
// nearest section above it ("distros.archlinux.repos" for
// "distros.archlinux.repos.core.mode", "api.tokens" for
// "api.tokens[0].sha256").
func (c *Config) source(key string) string {
	for k := key; ; {
		if s, ok := c.sources[k]; ok {
			return s
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			return sourceDefault
		}
		k = k[:i]
	}
}

// blame adds to each problem (of err, one or joined) with a value from
// the environment or a flag where it came from: the file is named already.
func (c *Config) blame(err error) error {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
		if ke, ok := e.(*keyError); ok {
			if s := c.source(ke.key); s != sourceDefault && s != sourceFile {
				out[i] = fmt.Errorf("%w (%s)", ke, s)
			}
		}
	}
	return errors.Join(out...)
}

// WriteSources prints every effective value, one a line, after its key
// and where it came from (default, file, env MIRRORD_…, flag --…); secrets
// are redacted as in YAML.
func (c *Config) WriteSources(w io.Writer) error {
	var n yaml.Node
	if err := n.Encode(c.Redacted()); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "# file: %s\n", orDefault(c.File, "none")); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var walk func(key string, n *yaml.Node) error
	walk = func(key string, n *yaml.Node) error {
		if n.Kind == yaml.MappingNode && len(n.Content) > 0 {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := walk(joinKey(key, n.Content[i].Value), n.Content[i+1]); err != nil {
					return err
				}
			}
			return nil
		}
		val, err := flowValue(n)
		if err != nil {
			return err
		}
		// The source before the value: a list of mirrors is long.
		_, err = fmt.Fprintf(tw, "%s\t%s\t%s\n", key, c.source(key), val)
		return err
	}
	if err := walk("", &n); err != nil {
		return err
	}
	return tw.Flush()
}

// flowValue renders a value on one line: a scalar as it is (quoted when
// empty or holding a tab or line break), a list or mapping in YAML's
// flow style, [x86_64].
func flowValue(n *yaml.Node) (string, error) {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "" || strings.ContainsAny(n.Value, "\t\r\n") {
			return strconv.Quote(n.Value), nil
		}
		return n.Value, nil
	}
	var flow func(*yaml.Node)
	flow = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
			n.Style = yaml.FlowStyle
		}
		for _, c := range n.Content {
			flow(c)
		}
	}
	flow(n)
	out, err := yaml.Marshal(n)
	return strings.TrimSpace(string(out)), err
}
